//! Reading `usage` out of an SSE stream on its way to the client.
//!
//! AIBrix parses each chunk on its own, so an SSE line split across two chunks is lost or
//! fails the stream; here partial lines carry over to the next chunk, and a line that does not
//! parse is only a missed count, never an error on a stream that already returned 200.
//!
//! Besides OpenAI's `usage` (`prompt_tokens`, `completion_tokens`) it reads Anthropic's and
//! the Responses API's (`input_tokens`, `output_tokens`, also nested in `message` or
//! `response`), and recognises their ends of stream (`message_stop`, `response.completed`,
//! `response.incomplete`, `response.failed`) besides `data: [DONE]`.
//!
//! Memory is bounded: a line (pass-through) or event (strip mode) longer than the cap is an
//! error ([`EventTooLarge`]); the relay then ends the stream and drops the engine connection.
//!
//! Two modes. Pass-through forwards every chunk unchanged, the moment it arrives, and scans a
//! copy. Strip mode (the gateway injected `include_usage` the client did not ask for) forwards
//! whole events and drops the one usage-only chunk the client would not have received.

use bytes::{Bytes, BytesMut};
use memchr::memmem;
use serde::Deserialize;

/// Token counts an engine reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
}

/// A usage object as any of the APIs spell it; absent fields stay absent.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
struct PartialUsage {
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: Option<u64>,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: Option<u64>,
}

impl PartialUsage {
    /// `old` updated with the fields this report carries (Anthropic reports input tokens at
    /// the start of a stream and output tokens at its end).
    fn over(self, old: Option<Usage>) -> Usage {
        let old = old.unwrap_or_default();
        Usage {
            prompt_tokens: self.prompt_tokens.unwrap_or(old.prompt_tokens),
            completion_tokens: self.completion_tokens.unwrap_or(old.completion_tokens),
        }
    }
}

#[derive(Deserialize)]
struct Nested {
    usage: Option<PartialUsage>,
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<PartialUsage>,
    message: Option<Nested>,
    response: Option<Nested>,
}

impl WithUsage {
    fn usage(self) -> Option<PartialUsage> {
        self.usage
            .or(self.message.and_then(|m| m.usage))
            .or(self.response.and_then(|r| r.usage))
    }
}

/// The `usage` of a whole (non-streaming) response body, if it has one.
pub fn usage_of(body: &[u8]) -> Option<Usage> {
    let u = serde_json::from_slice::<WithUsage>(body).ok()?.usage()?;
    Some(u.over(None))
}

/// An engine sent an SSE line or event longer than the cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the engine sent an event stream line or event over {0} bytes")]
pub struct EventTooLarge(pub usize);

/// End-of-stream events of the Anthropic and Responses APIs (vLLM writes compact JSON).
const TERMINATORS: [&[u8]; 4] = [
    b"\"type\":\"message_stop\"",
    b"\"type\":\"response.completed\"",
    b"\"type\":\"response.incomplete\"",
    b"\"type\":\"response.failed\"",
];

fn is_terminator(data: &[u8]) -> bool {
    data == b"[DONE]" || TERMINATORS.iter().any(|t| memmem::find(data, t).is_some())
}

/// Watches an SSE stream for `usage` and content, optionally dropping the usage-only event.
#[derive(Debug)]
pub struct SseTap {
    strip: bool,
    max_event: usize,
    /// Pass-through: the unfinished last line. Strip: the unfinished last event.
    pending: BytesMut,
    /// The last usage seen.
    pub usage: Option<Usage>,
    /// Whether the `data: [DONE]` terminator went by: a stream that ends without it was cut.
    pub done: bool,
    /// Strip mode: a content chunk carried usage although the gateway asked for none per
    /// chunk, so the engine forces usage (vLLM's `--enable-force-include-usage`) and would
    /// have sent the final usage chunk to this client too: it is kept.
    forced: bool,
}

const USAGE: &[u8] = b"\"usage\"";

impl SseTap {
    /// A tap; `strip` drops the usage-only event (`"choices":[]` with `usage`); lines or
    /// events over `max_event` bytes are an error.
    pub fn new(strip: bool, max_event: usize) -> Self {
        Self {
            strip,
            max_event,
            pending: BytesMut::new(),
            usage: None,
            done: false,
            forced: false,
        }
    }

    /// Takes one upstream chunk and returns the bytes to send on (possibly empty).
    pub fn on_chunk(&mut self, chunk: Bytes) -> Result<Bytes, EventTooLarge> {
        if !self.strip {
            self.scan_lines(&chunk);
            return self.check().map(|()| chunk);
        }
        self.pending.extend_from_slice(&chunk);
        let mut out = BytesMut::new();
        while let Some(end) = event_end(&self.pending) {
            let event = self.pending.split_to(end);
            if !self.is_usage_only(&event) {
                out.extend_from_slice(&event);
            }
        }
        self.check().map(|()| out.freeze())
    }

    fn check(&self) -> Result<(), EventTooLarge> {
        match self.pending.len() > self.max_event {
            true => Err(EventTooLarge(self.max_event)),
            false => Ok(()),
        }
    }

    /// The stream ended: whatever is left unterminated goes on as it was.
    pub fn finish(&mut self) -> Bytes {
        let rest = self.pending.split().freeze();
        if !self.strip {
            self.scan_line(&rest);
            return Bytes::new();
        }
        rest
    }

    fn scan_lines(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let (line, tail) = rest.split_at(nl + 1);
            if self.pending.is_empty() {
                self.scan_line(line);
            } else {
                self.pending.extend_from_slice(line);
                let whole = self.pending.split();
                self.scan_line(&whole);
            }
            rest = tail;
        }
        if !rest.is_empty() {
            self.pending.extend_from_slice(rest);
        }
    }

    fn scan_line(&mut self, line: &[u8]) {
        let Some(data) = data_of(line) else {
            return;
        };
        if is_terminator(data) {
            self.done = true;
        }
        if memmem::find(data, USAGE).is_none() {
            return;
        }
        if let Some(u) = serde_json::from_slice::<WithUsage>(data)
            .ok()
            .and_then(WithUsage::usage)
        {
            self.usage = Some(u.over(self.usage));
        }
    }

    fn is_usage_only(&mut self, event: &[u8]) -> bool {
        #[derive(Deserialize)]
        struct Chunk<'a> {
            #[serde(borrow)]
            choices: Option<Vec<&'a serde_json::value::RawValue>>,
            usage: Option<PartialUsage>,
        }
        let Some(data) = event.split(|&b| b == b'\n').find_map(data_of) else {
            return false;
        };
        if is_terminator(data) {
            self.done = true;
        }
        if memmem::find(data, USAGE).is_none() {
            return false;
        }
        match serde_json::from_slice::<Chunk<'_>>(data) {
            Ok(c) => {
                if let Some(u) = c.usage {
                    self.usage = Some(u.over(self.usage));
                }
                let content = c.choices.is_some_and(|ch| !ch.is_empty());
                self.forced |= c.usage.is_some() && content;
                c.usage.is_some() && !content && !self.forced
            }
            Err(_) => false,
        }
    }
}

/// The payload of a `data:` line, without the line ending.
fn data_of(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"data:")?;
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let end = rest
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    Some(&rest[..end])
}

/// Offset just past the first complete event (blank-line terminated) in `buf`.
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = memmem::find(buf, b"\n\n").map(|i| i + 2);
    let crlf = memmem::find(buf, b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USAGE_EVENT: &str = "data: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\n";
    const TOKEN_EVENT: &str =
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"text\":\"hi\"}],\"usage\":null}\n\n";

    fn stream() -> String {
        format!("{TOKEN_EVENT}{TOKEN_EVENT}{USAGE_EVENT}data: [DONE]\n\n")
    }

    /// Every way of cutting the stream in two gives the same result.
    #[test]
    fn usage_survives_any_chunk_boundary() {
        let s = stream();
        for strip in [false, true] {
            for cut in 0..=s.len() {
                let mut tap = SseTap::new(strip, 1 << 20);
                let mut out = Vec::new();
                for part in [&s.as_bytes()[..cut], &s.as_bytes()[cut..]] {
                    let sent = tap.on_chunk(Bytes::copy_from_slice(part)).expect("small");
                    out.extend_from_slice(&sent);
                }
                out.extend_from_slice(&tap.finish());
                assert!(tap.done, "strip {strip} cut {cut}");
                assert_eq!(
                    tap.usage,
                    Some(Usage {
                        prompt_tokens: 7,
                        completion_tokens: 3
                    }),
                    "strip {strip} cut {cut}"
                );
                let want = if strip {
                    format!("{TOKEN_EVENT}{TOKEN_EVENT}data: [DONE]\n\n")
                } else {
                    s.clone()
                };
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    want,
                    "strip {strip} cut {cut}"
                );
            }
        }
    }

    #[test]
    fn broken_lines_are_ignored_not_fatal() {
        let mut tap = SseTap::new(false, 1 << 20);
        let chunk = Bytes::from_static(b"data: {\"usage\": oops\n\n");
        assert_eq!(tap.on_chunk(chunk.clone()), Ok(chunk));
        assert_eq!(tap.usage, None);
        assert_eq!(
            usage_of(br#"{"usage":{"prompt_tokens":2,"completion_tokens":1}}"#),
            Some(Usage {
                prompt_tokens: 2,
                completion_tokens: 1
            })
        );
        assert_eq!(usage_of(b"{}"), None);
    }

    /// An engine that never ends its line or event cannot grow the gateway's buffer.
    #[test]
    fn a_line_without_end_is_capped() {
        for strip in [false, true] {
            let mut tap = SseTap::new(strip, 64);
            assert!(
                tap.on_chunk(Bytes::from_static(b"data: {\"a\":1}\n\n"))
                    .is_ok()
            );
            let long = Bytes::from(vec![b'x'; 40]);
            assert!(tap.on_chunk(long.clone()).is_ok(), "strip {strip}");
            assert_eq!(tap.on_chunk(long), Err(EventTooLarge(64)), "strip {strip}");
        }
    }

    #[test]
    fn anthropic_and_responses_usage_and_ends() {
        let anthropic = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":5,\"output_tokens\":0}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":4}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let mut tap = SseTap::new(false, 1 << 20);
        tap.on_chunk(Bytes::from(anthropic)).expect("small");
        assert!(tap.done);
        assert_eq!(
            tap.usage,
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 4
            })
        );
        let responses = "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":2,\"total_tokens\":5}}}\n\n";
        let mut tap = SseTap::new(false, 1 << 20);
        tap.on_chunk(Bytes::from(responses)).expect("small");
        assert!(tap.done);
        assert_eq!(tap.usage.map(|u| u.completion_tokens), Some(2));
        assert_eq!(
            usage_of(br#"{"type":"message","usage":{"input_tokens":7,"output_tokens":1}}"#),
            Some(Usage {
                prompt_tokens: 7,
                completion_tokens: 1
            })
        );
    }

    /// An engine that forces usage on every chunk would have sent the final usage chunk to a
    /// direct client too: strip mode keeps it then.
    #[test]
    fn forced_usage_is_not_stripped() {
        let with_usage = "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"text\":\"hi\"}],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":1}}\n\n";
        let s = format!("{with_usage}{USAGE_EVENT}data: [DONE]\n\n");
        let mut tap = SseTap::new(true, 1 << 20);
        let out = tap.on_chunk(Bytes::from(s.clone())).expect("small");
        assert_eq!(String::from_utf8_lossy(&out), s);
        assert_eq!(tap.usage.map(|u| u.completion_tokens), Some(3));
    }
}
