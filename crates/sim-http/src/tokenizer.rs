//! Text to token ids and back with tiktoken's `cl100k_base` (built in, works offline), the chat
//! template, and the filler text generated answers are made of.
//!
//! Token ids only need to be stable, not the simulated model's own: equal prompts give equal
//! ids, so the engine's prefix cache hits exactly where vLLM's would.

use std::fmt;
use std::sync::{Arc, OnceLock};

use tiktoken_rs::CoreBPE;

use crate::config::SimError;

/// What simulated answers say, cycled token by token from a seeded offset.
const FILLER: &str = "The simulated engine answers every request with this paragraph, one token at a \
    time, at the speed a real GPU would. It schedules requests the way vLLM does, keeps their \
    key-value blocks in a paged cache with prefix sharing, and charges each step what the \
    roofline model says it costs. Nothing here is a real model; the words only make the \
    stream look like text while the timing, the batching and the metrics stay faithful. ";

/// The tables are large and immutable; every server in a process shares one copy.
static CL100K: OnceLock<Arc<CoreBPE>> = OnceLock::new();

/// A cheap handle to the shared `cl100k_base` tables.
#[derive(Clone)]
pub(crate) struct Tokenizer {
    bpe: Arc<CoreBPE>,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tokenizer(cl100k_base)")
    }
}

impl Tokenizer {
    /// Loads (once per process) the `cl100k_base` tables.
    pub(crate) fn cl100k() -> Result<Self, SimError> {
        if let Some(bpe) = CL100K.get() {
            return Ok(Self { bpe: bpe.clone() });
        }
        let bpe =
            Arc::new(tiktoken_rs::cl100k_base().map_err(|e| SimError::Tokenizer(e.to_string()))?);
        Ok(Self {
            bpe: CL100K.get_or_init(|| bpe).clone(),
        })
    }

    /// Token ids of `text`; special-token spellings are treated as plain text.
    pub(crate) fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_ordinary(text)
    }

    /// The text of `tokens` (invalid UTF-8 replaced), or the first id the vocabulary lacks.
    pub(crate) fn decode(&self, tokens: &[u32]) -> Result<String, u32> {
        match self.bpe.decode_bytes(tokens) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) => Err(e.token),
        }
    }

    /// The text of one generated token (the filler only holds known ids).
    pub(crate) fn decode_one(&self, token: u32) -> String {
        self.decode(&[token]).unwrap_or_default()
    }

    /// Token ids of the filler paragraph, for [`brix_sim::Engine::with_filler`].
    pub(crate) fn filler(&self) -> Vec<u32> {
        self.encode(FILLER)
    }

    /// Renders a conversation with a fixed template, `<|role|>\ncontent\n` per message, then
    /// the assistant header when a reply is wanted; equal conversations render equally.
    pub(crate) fn render_chat<'a>(
        &self,
        messages: impl IntoIterator<Item = (&'a str, String)>,
        add_generation_prompt: bool,
    ) -> String {
        let mut out = String::new();
        for (role, content) in messages {
            out.push_str("<|");
            out.push_str(role);
            out.push_str("|>\n");
            out.push_str(&content);
            out.push('\n');
        }
        if add_generation_prompt {
            out.push_str("<|assistant|>\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> Tokenizer {
        Tokenizer::cl100k().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn text_round_trips_and_filler_decodes_to_words() {
        let t = tok();
        let ids = t.encode("Hello, world! <|endoftext|>");
        assert_eq!(
            t.decode(&ids),
            Ok("Hello, world! <|endoftext|>".to_string())
        );
        let filler = t.filler();
        assert!(filler.len() > 50);
        let words: String = filler.iter().map(|&id| t.decode_one(id)).collect();
        assert_eq!(words, FILLER);
        assert_eq!(t.decode(&[u32::MAX]), Err(u32::MAX));
    }

    #[test]
    fn chat_template_is_fixed() {
        let t = tok();
        let msgs = || {
            vec![
                ("system", "Be brief.".to_string()),
                ("user", "Hi".to_string()),
            ]
        };
        let text = t.render_chat(msgs(), true);
        assert_eq!(text, "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n");
        assert_eq!(t.encode(&text), t.encode(&t.render_chat(msgs(), true)));
        assert!(!t.render_chat(msgs(), false).ends_with("<|assistant|>\n"));
    }
}
