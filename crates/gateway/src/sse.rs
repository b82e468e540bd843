//! Reading `usage` out of an SSE stream on its way to the client.
//!
//! AIBrix parses each chunk on its own, so an SSE line split across two chunks is lost or
//! fails the stream; here partial lines carry over to the next chunk, and a line that does not
//! parse is only a missed count, never an error on a stream that already returned 200.
//!
//! Two modes. Pass-through forwards every chunk unchanged, the moment it arrives, and scans a
//! copy. Strip mode (the gateway injected `include_usage` the client did not ask for) forwards
//! whole events and drops the one usage-only chunk the client would not have received.

use bytes::{Bytes, BytesMut};
use memchr::memmem;
use serde::Deserialize;

/// Token counts an engine reported.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Generated tokens.
    #[serde(default)]
    pub completion_tokens: u64,
}

/// The `usage` of a whole (non-streaming) OpenAI response body, if it has one.
pub fn usage_of(body: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct WithUsage {
        usage: Option<Usage>,
    }
    serde_json::from_slice::<WithUsage>(body).ok()?.usage
}

/// Watches an SSE stream for `usage` and content, optionally dropping the usage-only event.
#[derive(Debug)]
pub struct SseTap {
    strip: bool,
    /// Pass-through: the unfinished last line. Strip: the unfinished last event.
    pending: BytesMut,
    /// The last usage seen.
    pub usage: Option<Usage>,
    /// Whether the `data: [DONE]` terminator went by: a stream that ends without it was cut.
    pub done: bool,
}

const USAGE: &[u8] = b"\"usage\"";

impl SseTap {
    /// A tap; `strip` drops the usage-only event (`"choices":[]` with `usage`).
    pub fn new(strip: bool) -> Self {
        Self {
            strip,
            pending: BytesMut::new(),
            usage: None,
            done: false,
        }
    }

    /// Takes one upstream chunk and returns the bytes to send on (possibly empty).
    pub fn on_chunk(&mut self, chunk: Bytes) -> Bytes {
        if !self.strip {
            self.scan_lines(&chunk);
            return chunk;
        }
        self.pending.extend_from_slice(&chunk);
        let mut out = BytesMut::new();
        while let Some(end) = event_end(&self.pending) {
            let event = self.pending.split_to(end);
            if !self.is_usage_only(&event) {
                out.extend_from_slice(&event);
            }
        }
        out.freeze()
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
        if data_of(line) == Some(b"[DONE]") {
            self.done = true;
            return;
        }
        if memmem::find(line, USAGE).is_none() {
            return;
        }
        if let Some(u) = data_of(line).and_then(usage_of) {
            self.usage = Some(u);
        }
    }

    fn is_usage_only(&mut self, event: &[u8]) -> bool {
        #[derive(Deserialize)]
        struct Chunk<'a> {
            #[serde(borrow)]
            choices: Option<Vec<&'a serde_json::value::RawValue>>,
            usage: Option<Usage>,
        }
        let Some(data) = event.split(|&b| b == b'\n').find_map(data_of) else {
            return false;
        };
        if data == b"[DONE]" {
            self.done = true;
        }
        if memmem::find(data, USAGE).is_none() {
            return false;
        }
        match serde_json::from_slice::<Chunk<'_>>(data) {
            Ok(c) => {
                if c.usage.is_some() {
                    self.usage = c.usage;
                }
                c.usage.is_some() && c.choices.is_some_and(|ch| ch.is_empty())
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
                let mut tap = SseTap::new(strip);
                let mut out = Vec::new();
                out.extend_from_slice(&tap.on_chunk(Bytes::copy_from_slice(&s.as_bytes()[..cut])));
                out.extend_from_slice(&tap.on_chunk(Bytes::copy_from_slice(&s.as_bytes()[cut..])));
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
        let mut tap = SseTap::new(false);
        let chunk = Bytes::from_static(b"data: {\"usage\": oops\n\n");
        assert_eq!(tap.on_chunk(chunk.clone()), chunk);
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
}
