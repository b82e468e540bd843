//! Checking that a Server-Sent Events body is a complete OpenAI stream: at least one `data:`
//! event with a payload, ending in `data: [DONE]`. Pure; no I/O.
//!
//! The load generator runs this over every streamed reply, so a router that truncates or
//! mangles streams shows up as errors instead of as suspiciously low latency.

/// What one SSE body held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SseSummary {
    /// `data:` events other than the `[DONE]` sentinel.
    pub data_events: usize,
    /// Whether the last `data:` event was `[DONE]`.
    pub done: bool,
}

impl SseSummary {
    /// A stream a client would accept: some payload, then `[DONE]` last.
    pub fn is_complete(&self) -> bool {
        self.done && self.data_events > 0
    }
}

/// Scans `body` line by line (LF or CRLF) with [`SseSplitter`]; comments, `event:`/`id:`
/// fields and blank lines are skipped. A `data:` event after `[DONE]` clears `done`, since
/// clients stop reading there.
pub fn summarize(body: &[u8]) -> SseSummary {
    let mut summary = SseSummary::default();
    let mut on_data = |payload: &[u8]| {
        if payload == b"[DONE]" {
            summary.done = true;
        } else {
            summary.data_events += 1;
            summary.done = false;
        }
    };
    let mut s = SseSplitter::default();
    s.push(body, &mut on_data);
    s.finish(&mut on_data);
    summary
}

/// Splits SSE bytes into `data:` payloads, keeping a partial line between pushes: the one SSE
/// reader of this crate (whole bodies here, network reads in the live client).
#[derive(Debug, Default)]
pub struct SseSplitter {
    partial: Vec<u8>,
}

impl SseSplitter {
    /// Feeds bytes; calls `on_data` with each complete `data:` payload (LF or CRLF line ends;
    /// other fields, comments and blank lines are skipped).
    pub fn push(&mut self, bytes: &[u8], mut on_data: impl FnMut(&[u8])) {
        let mut rest = bytes;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let (head, tail) = rest.split_at(nl);
            rest = &tail[1..];
            if self.partial.is_empty() {
                emit(head, &mut on_data);
            } else {
                self.partial.extend_from_slice(head);
                let line = std::mem::take(&mut self.partial);
                emit(&line, &mut on_data);
            }
        }
        self.partial.extend_from_slice(rest);
    }

    /// The body ended: a last line without its line end still counts.
    pub fn finish(&mut self, mut on_data: impl FnMut(&[u8])) {
        let line = std::mem::take(&mut self.partial);
        emit(&line, &mut on_data);
    }
}

fn emit(line: &[u8], on_data: &mut impl FnMut(&[u8])) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(payload) = line.strip_prefix(b"data:") {
        on_data(payload.strip_prefix(b" ").unwrap_or(payload));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&[u8], usize, bool, bool)] = &[
            (b"", 0, false, false),
            (b"data: [DONE]\n\n", 0, true, false),
            (b"data: {\"a\":1}\n\ndata: [DONE]\n\n", 1, true, true),
            (b"data:{\"a\":1}\r\n\r\ndata:[DONE]\r\n\r\n", 1, true, true),
            (
                b": keep-alive\n\nevent: x\ndata: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
                2,
                true,
                true,
            ),
            (b"data: {}\n\ndata: {}\n\n", 2, false, false),
            (b"data: {}\n\ndata: [DONE]\n\ndata: {}\n\n", 2, false, false),
            (b"{\"not\":\"sse\"}", 0, false, false),
        ];
        for &(body, events, done, complete) in cases {
            let s = summarize(body);
            let shown = String::from_utf8_lossy(body);
            assert_eq!(s.data_events, events, "{shown}");
            assert_eq!(s.done, done, "{shown}");
            assert_eq!(s.is_complete(), complete, "{shown}");
        }
    }
}
