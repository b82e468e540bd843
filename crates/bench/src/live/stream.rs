//! Reading an OpenAI completion stream as it arrives: bytes → `data:` payloads → what each
//! chunk means for timing (a token arrived, usage, the end, an error). Pure; no I/O.
//!
//! The bytes are split by [`crate::sse::SseSplitter`], the crate's one SSE reader, which is
//! incremental: the live client needs each event at the moment its bytes arrive.

use brix_api::openai::ErrorEnvelope;
use serde::Deserialize;

pub(crate) use crate::sse::SseSplitter;

/// What one `data:` payload says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// `[DONE]`: the stream is complete.
    Done,
    /// A chunk: whether it carried generated text, and usage when it had some.
    Chunk {
        /// Some choice had non-empty `text` (completions) or `delta.content` (chat).
        text: bool,
        /// `usage.prompt_tokens` and `usage.completion_tokens`.
        usage: Option<(u32, u32)>,
    },
    /// An `{"error": ...}` object in the stream (vLLM sends one when generation fails).
    Error(String),
}

#[derive(Deserialize)]
struct RawChunk {
    #[serde(default)]
    choices: Vec<RawChoice>,
    usage: Option<RawUsage>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawChoice {
    text: Option<String>,
    delta: Option<RawDelta>,
}

#[derive(Deserialize)]
struct RawDelta {
    content: Option<String>,
}

#[derive(Deserialize)]
struct RawUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
}

/// Interprets one payload; a payload that is not JSON is an error for the caller to record.
pub(crate) fn parse(payload: &[u8]) -> Result<Event, serde_json::Error> {
    if payload == b"[DONE]" {
        return Ok(Event::Done);
    }
    let raw: RawChunk = serde_json::from_slice(payload)?;
    if let Some(e) = raw.error {
        let message =
            ErrorEnvelope::parse(payload).map_or_else(|| e.to_string(), |env| env.message);
        return Ok(Event::Error(message));
    }
    let text = raw.choices.iter().any(|c| {
        c.text.as_deref().is_some_and(|t| !t.is_empty())
            || c.delta
                .as_ref()
                .and_then(|d| d.content.as_deref())
                .is_some_and(|t| !t.is_empty())
    });
    Ok(Event::Chunk {
        text,
        usage: raw.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pieces: &[&[u8]]) -> Vec<String> {
        let mut s = SseSplitter::default();
        let mut out = Vec::new();
        for p in pieces {
            s.push(p, |d| out.push(String::from_utf8_lossy(d).into_owned()));
        }
        out
    }

    #[test]
    fn live_splitter_joins_lines_across_reads() {
        let whole: &[u8] = b"data: {\"a\":1}\n\n: ping\n\ndata:[DONE]\r\n\r\n";
        let want = vec!["{\"a\":1}".to_string(), "[DONE]".to_string()];
        assert_eq!(split(&[whole]), want);
        // Every split point gives the same payloads.
        for i in 0..whole.len() {
            let (a, b) = whole.split_at(i);
            assert_eq!(split(&[a, b]), want, "split at {i}");
        }
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(split(&bytes), want);
        // A line without its newline is not handed out yet.
        assert!(split(&[b"data: {}"]).is_empty());
    }

    #[test]
    fn live_chunks_are_classified() {
        let cases: &[(&str, Event)] = &[
            ("[DONE]", Event::Done),
            (
                r#"{"choices":[{"index":0,"text":" the"}]}"#,
                Event::Chunk {
                    text: true,
                    usage: None,
                },
            ),
            (
                r#"{"choices":[{"index":0,"text":"","finish_reason":"length"}]}"#,
                Event::Chunk {
                    text: false,
                    usage: None,
                },
            ),
            (
                r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
                Event::Chunk {
                    text: false,
                    usage: None,
                },
            ),
            (
                r#"{"choices":[{"delta":{"content":"hi"}}]}"#,
                Event::Chunk {
                    text: true,
                    usage: None,
                },
            ),
            (
                r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#,
                Event::Chunk {
                    text: false,
                    usage: Some((7, 3)),
                },
            ),
            (
                r#"{"error":{"message":"boom","type":"x"}}"#,
                Event::Error("boom".into()),
            ),
        ];
        for (payload, want) in cases {
            assert_eq!(
                &parse(payload.as_bytes()).expect(payload),
                want,
                "{payload}"
            );
        }
        assert!(parse(b"not json").is_err());
    }
}
