//! RESP framing: an incremental, bounded request parser and the reply encoder.
//!
//! Requests are RESP arrays of bulk strings (`*<n>\r\n` then `n` × `$<len>\r\n<bytes>\r\n`), the
//! only form Redis clients send. Inline commands (plain text lines) are refused. Every length is
//! checked before anything is buffered: the element count against [`Limits::max_args`], each bulk
//! against [`Limits::max_bulk`], and the command's bulks together against
//! [`Limits::max_command`], so one connection never holds more than one command's bytes plus
//! one read.

use bytes::{BufMut, Bytes, BytesMut};

/// Longest header line (`*<n>` or `$<len>`) accepted, CRLF included.
const MAX_HEADER: usize = 32;

/// Bounds on one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most elements in one command (the name included).
    pub max_args: usize,
    /// Largest bulk string (a value).
    pub max_bulk: usize,
    /// Largest sum of a command's bulk lengths.
    pub max_command: usize,
}

/// What [`parse`] found at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole command of `len` bytes; its arguments are the bulks in order.
    Command {
        /// Bytes the command takes in the buffer.
        len: usize,
        /// Where each argument lies: (start, end) offsets into the buffer.
        args: Vec<(usize, usize)>,
    },
    /// More bytes are needed; the command needs at least `need` bytes in all.
    Incomplete {
        /// Lower bound on the buffer length that could complete the command.
        need: usize,
    },
}

/// Why a request cannot be served. The connection is closed after the reply: the stream cannot be
/// resynchronised once framing is lost or a length is refused unread.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first byte is not `*`: a plain-text inline command.
    #[error("Protocol error: inline commands are not supported, send RESP arrays")]
    Inline,
    /// A header is malformed (not a number, no CRLF, negative, too long).
    #[error("Protocol error: {0}")]
    Malformed(&'static str),
    /// A length is over a configured bound.
    #[error("Protocol error: {what} {got} is over the limit of {limit}")]
    TooLarge {
        /// Which length.
        what: &'static str,
        /// The length the client sent.
        got: u64,
        /// The bound.
        limit: usize,
    },
}

/// Parses the command at the start of `buf`; looks only at headers, so a partly received value
/// costs one pass over the (few) headers per read, not over its bytes.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Frame, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(Frame::Incomplete { need: 1 });
    };
    if first != b'*' {
        return Err(FrameError::Inline);
    }
    let Some((count, mut pos)) = header(buf, 0, b'*')? else {
        return Ok(Frame::Incomplete {
            need: buf.len() + 1,
        });
    };
    if count == 0 {
        return Err(FrameError::Malformed("empty command"));
    }
    if count > limits.max_args as u64 {
        return Err(FrameError::TooLarge {
            what: "argument count",
            got: count,
            limit: limits.max_args,
        });
    }
    let mut args = Vec::with_capacity(count as usize);
    let mut total = 0usize;
    for _ in 0..count {
        if pos >= buf.len() {
            return Ok(Frame::Incomplete { need: pos + 1 });
        }
        if buf[pos] != b'$' {
            return Err(FrameError::Malformed("expected '$', got something else"));
        }
        let Some((len, start)) = header(buf, pos, b'$')? else {
            return Ok(Frame::Incomplete {
                need: buf.len() + 1,
            });
        };
        if len > limits.max_bulk as u64 {
            return Err(FrameError::TooLarge {
                what: "bulk length",
                got: len,
                limit: limits.max_bulk,
            });
        }
        // `len` ≤ max_bulk, a usize, so the casts and sums below cannot overflow usize.
        total += len as usize;
        if total > limits.max_command {
            return Err(FrameError::TooLarge {
                what: "command size",
                got: total as u64,
                limit: limits.max_command,
            });
        }
        let end = start + len as usize;
        if buf.len() < end + 2 {
            return Ok(Frame::Incomplete { need: end + 2 });
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(FrameError::Malformed("bulk string not terminated by CRLF"));
        }
        args.push((start, end));
        pos = end + 2;
    }
    Ok(Frame::Command { len: pos, args })
}

/// Reads `<tag><decimal>\r\n` at `at`; `None` if the line is not complete yet.
fn header(buf: &[u8], at: usize, tag: u8) -> Result<Option<(u64, usize)>, FrameError> {
    debug_assert_eq!(buf.get(at), Some(&tag));
    let rest = &buf[at + 1..buf.len().min(at + MAX_HEADER)];
    let Some(cr) = rest.iter().position(|&b| b == b'\r') else {
        if buf.len() >= at + MAX_HEADER {
            return Err(FrameError::Malformed("header line too long"));
        }
        return Ok(None);
    };
    if at + 1 + cr + 1 >= buf.len() {
        return Ok(None);
    }
    if buf[at + 1 + cr + 1] != b'\n' {
        return Err(FrameError::Malformed("header not terminated by CRLF"));
    }
    let digits = &rest[..cr];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        let what = if tag == b'*' {
            "invalid multibulk length"
        } else {
            "invalid bulk length"
        };
        return Err(FrameError::Malformed(what));
    }
    let mut n: u64 = 0;
    for &d in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(FrameError::Malformed("length overflows"))?;
    }
    Ok(Some((n, at + 1 + cr + 2)))
}

/// Splits a parsed command off the front of `buf` and returns its arguments (no copy).
pub fn take_command(buf: &mut BytesMut, len: usize, args: &[(usize, usize)]) -> Vec<Bytes> {
    let frame = buf.split_to(len).freeze();
    args.iter().map(|&(s, e)| frame.slice(s..e)).collect()
}

/// Protocol version the connection replies in (`HELLO 2|3`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Proto {
    /// RESP2 (the default until `HELLO 3`).
    #[default]
    Resp2,
    /// RESP3: nulls are `_`, maps are `%`.
    Resp3,
}

/// Reply encoder over an output buffer.
#[derive(Debug)]
pub struct Out<'a> {
    /// Where replies go.
    pub buf: &'a mut BytesMut,
    /// Which RESP version to speak.
    pub proto: Proto,
}

impl Out<'_> {
    /// `+OK` and other status lines (`s` must not contain CR or LF).
    pub fn simple(&mut self, s: &str) {
        self.line(b'+', s.as_bytes());
    }

    /// `-ERR ...`: `msg` starts with the error code (`ERR`, `NOAUTH`, `WRONGPASS`, ...).
    pub fn error(&mut self, msg: &str) {
        // Error lines must stay one line whatever a message carries.
        let clean: Vec<u8> = msg
            .bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b })
            .collect();
        self.line(b'-', &clean);
    }

    /// `:<n>`.
    pub fn int(&mut self, n: i64) {
        self.line(b':', n.to_string().as_bytes());
    }

    /// The header of a bulk string of `len` bytes (the caller writes the bytes and CRLF).
    pub fn bulk_header(&mut self, len: usize) {
        self.line(b'$', len.to_string().as_bytes());
    }

    /// A whole bulk string.
    pub fn bulk(&mut self, data: &[u8]) {
        self.bulk_header(data.len());
        self.buf.put_slice(data);
        self.buf.put_slice(b"\r\n");
    }

    /// The null reply: `$-1` in RESP2, `_` in RESP3.
    pub fn null(&mut self) {
        match self.proto {
            Proto::Resp2 => self.buf.put_slice(b"$-1\r\n"),
            Proto::Resp3 => self.buf.put_slice(b"_\r\n"),
        }
    }

    /// The header of an array of `n` elements.
    pub fn array(&mut self, n: usize) {
        self.line(b'*', n.to_string().as_bytes());
    }

    /// The header of a map of `n` pairs (an array of `2n` elements in RESP2).
    pub fn map(&mut self, n: usize) {
        match self.proto {
            Proto::Resp2 => self.array(2 * n),
            Proto::Resp3 => self.line(b'%', n.to_string().as_bytes()),
        }
    }

    fn line(&mut self, tag: u8, body: &[u8]) {
        self.buf.reserve(body.len() + 3);
        self.buf.put_u8(tag);
        self.buf.put_slice(body);
        self.buf.put_slice(b"\r\n");
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
