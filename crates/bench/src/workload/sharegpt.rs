//! ShareGPT-format conversations (a JSON array of `{"conversations": [{"from", "value"}]}`)
//! turned into requests. Pure: the caller reads the file.
//!
//! Text becomes vocabulary words by hashing: each whitespace-separated word gives one id, plus
//! one more for every further 6 characters (close to cl100k's count for English prose), each
//! id a hash of the word and its position in it. Equal text gives equal ids, so conversations
//! that share an opening share a prompt prefix, as they would in the original.

use std::path::PathBuf;

use serde::Deserialize;

use super::error::{FileError, JsonError, LineError};
use super::seed::{Stream, exponential, mix, rng};
use super::vocab::VOCAB_LEN;
use super::{Turn, WorkRequest, Workload};

/// `sharegpt:PATH` or `sharegpt:path=PATH,conversations=N,turns=first|all,think=S`.
#[derive(Clone, Debug, PartialEq)]
pub struct ShareGpt {
    /// The JSON file.
    pub path: PathBuf,
    /// Use only the first N usable conversations (all when `None`).
    pub conversations: Option<u32>,
    /// `turns=all`: each conversation becomes a session, one request per user turn, with the
    /// history resent; `turns=first` (default): one request per conversation, its first
    /// user message, as vLLM's ShareGPT benchmark does.
    pub all_turns: bool,
    /// Mean think time between turns with `turns=all`, seconds.
    pub think: f64,
}

#[derive(Deserialize)]
struct Conversation {
    #[serde(alias = "messages")]
    conversations: Vec<Message>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(alias = "role")]
    from: String,
    #[serde(alias = "content", default)]
    value: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    System,
    User,
    Assistant,
}

fn role(from: &str) -> Role {
    match from {
        "system" => Role::System,
        "gpt" | "assistant" | "chatgpt" | "bard" | "bing" | "model" => Role::Assistant,
        _ => Role::User,
    }
}

/// Appends the ids that stand for `text`: one per word, plus one per further 6 characters.
pub fn push_text(text: &str, seed: u64, out: &mut Vec<u32>) {
    let salt = mix(seed ^ Stream::Word as u64);
    for word in text.split_whitespace() {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in word.as_bytes() {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let pieces = 1 + (word.chars().count().saturating_sub(1)) / 6;
        for piece in 0..pieces as u64 {
            out.push((mix(hash ^ salt ^ piece) % u64::from(VOCAB_LEN)) as u32);
        }
    }
}

impl ShareGpt {
    /// The requests from the file's text. Conversations without a user message answered by
    /// an assistant are left out (they have nothing to replay); with `turns=all` a session
    /// ends at the first message that breaks the user → assistant alternation.
    pub fn build(&self, text: &str, seed: u64) -> Result<Workload, FileError> {
        let conversations: Vec<Conversation> =
            serde_json::from_str(text).map_err(|error| FileError::Line {
                line: error.line(),
                kind: LineError::Json {
                    format: "ShareGPT",
                    error: JsonError(error),
                },
            })?;
        let limit = self.conversations.map_or(usize::MAX, |n| n as usize);
        let mut requests = Vec::new();
        let mut used = 0;
        for conversation in &conversations {
            if used == limit {
                break;
            }
            let session = used as u64;
            if self.session(&conversation.conversations, session, seed, &mut requests) {
                used += 1;
            }
        }
        if requests.is_empty() {
            return Err(FileError::Empty);
        }
        Ok(Workload { requests })
    }

    /// Appends one conversation's requests; false when it has none.
    fn session(
        &self,
        messages: &[Message],
        session: u64,
        seed: u64,
        requests: &mut Vec<WorkRequest>,
    ) -> bool {
        let mut history = Vec::new();
        let mut turn = 0u32;
        let mut asked = false;
        for message in messages {
            let text = message.value.as_deref().unwrap_or("");
            match role(&message.from) {
                Role::System if turn == 0 && !asked => push_text(text, seed, &mut history),
                Role::User => {
                    push_text(text, seed, &mut history);
                    asked = true;
                }
                Role::Assistant if asked => {
                    let mut reply = Vec::new();
                    push_text(text, seed, &mut reply);
                    let think_s = if turn == 0 {
                        0.0
                    } else {
                        let mut r = rng(seed, Stream::Think, &[session, turn.into()]);
                        exponential(&mut r, self.think)
                    };
                    requests.push(WorkRequest {
                        id: requests.len() as u64,
                        at_s: 0.0,
                        session: self.all_turns.then_some(Turn {
                            session,
                            turn,
                            think_s,
                        }),
                        prompt: history.clone(),
                        output_tokens: (reply.len() as u32).max(1),
                    });
                    if !self.all_turns || reply.is_empty() {
                        return true;
                    }
                    history.extend_from_slice(&reply);
                    turn += 1;
                    asked = false;
                }
                _ => break,
            }
        }
        turn > 0
    }
}
