//! The few msgpack forms vLLM's batches use, written in their shortest encoding (as msgspec
//! writes them) and read from untrusted bytes without trusting any declared length.

use crate::wire::DecodeError;

/// Deepest nesting [`Reader::skip`] follows in an unknown field.
const MAX_DEPTH: u32 = 32;

#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn head(&mut self, fix: Option<(u8, usize)>, m16: u8, m32: u8, n: usize) {
        match fix {
            Some((base, max)) if n <= max => self.buf.push(base | n as u8),
            _ if n <= 0xffff => {
                self.buf.push(m16);
                self.buf.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ => {
                self.buf.push(m32);
                self.buf.extend_from_slice(&(n as u32).to_be_bytes());
            }
        }
    }

    pub(crate) fn array(&mut self, n: usize) {
        self.head(Some((0x90, 15)), 0xdc, 0xdd, n);
    }

    pub(crate) fn map(&mut self, n: usize) {
        self.head(Some((0x80, 15)), 0xde, 0xdf, n);
    }

    pub(crate) fn str(&mut self, s: &str) {
        let n = s.len();
        if n <= 31 {
            self.buf.push(0xa0 | n as u8);
        } else if n <= 0xff {
            self.buf.extend_from_slice(&[0xd9, n as u8]);
        } else {
            self.head(None, 0xda, 0xdb, n);
        }
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn nil(&mut self) {
        self.buf.push(0xc0);
    }

    pub(crate) fn f64(&mut self, v: f64) {
        self.buf.push(0xcb);
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn uint(&mut self, v: u64) {
        if v < 128 {
            self.buf.push(v as u8);
        } else if v <= 0xff {
            self.buf.extend_from_slice(&[0xcc, v as u8]);
        } else if v <= 0xffff {
            self.buf.push(0xcd);
            self.buf.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v <= 0xffff_ffff {
            self.buf.push(0xce);
            self.buf.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            self.buf.push(0xcf);
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
    }

    pub(crate) fn int(&mut self, v: i64) {
        if v >= 0 {
            return self.uint(v as u64);
        }
        if v >= -32 {
            self.buf.push(v as u8);
        } else if v >= i64::from(i8::MIN) {
            self.buf.extend_from_slice(&[0xd0, v as u8]);
        } else if v >= i64::from(i16::MIN) {
            self.buf.push(0xd1);
            self.buf.extend_from_slice(&(v as i16).to_be_bytes());
        } else if v >= i64::from(i32::MIN) {
            self.buf.push(0xd2);
            self.buf.extend_from_slice(&(v as i32).to_be_bytes());
        } else {
            self.buf.push(0xd3);
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
    }

    pub(crate) fn opt_uint(&mut self, v: Option<u64>) {
        match v {
            Some(v) => self.uint(v),
            None => self.nil(),
        }
    }

    pub(crate) fn opt_int(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.int(v),
            None => self.nil(),
        }
    }

    pub(crate) fn opt_str(&mut self, v: Option<&str>) {
        match v {
            Some(v) => self.str(v),
            None => self.nil(),
        }
    }
}

/// A cursor over one payload; every read checks the bytes are there.
#[derive(Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

type R<T> = Result<T, DecodeError>;

fn bad(what: &'static str) -> DecodeError {
    DecodeError::Malformed(what)
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        if n > self.remaining() {
            return Err(bad("truncated"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn byte(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }

    fn peek(&self) -> R<u8> {
        self.buf.get(self.pos).copied().ok_or(bad("truncated"))
    }

    fn be(&mut self, n: usize) -> R<u64> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    pub(crate) fn try_nil(&mut self) -> bool {
        if self.peek() == Ok(0xc0) {
            self.pos += 1;
            return true;
        }
        false
    }

    pub(crate) fn array(&mut self) -> R<usize> {
        match self.byte()? {
            b @ 0x90..=0x9f => Ok(usize::from(b & 0x0f)),
            0xdc => Ok(self.be(2)? as usize),
            0xdd => Ok(self.be(4)? as usize),
            _ => Err(bad("expected an array")),
        }
    }

    pub(crate) fn map(&mut self) -> R<usize> {
        match self.byte()? {
            b @ 0x80..=0x8f => Ok(usize::from(b & 0x0f)),
            0xde => Ok(self.be(2)? as usize),
            0xdf => Ok(self.be(4)? as usize),
            _ => Err(bad("expected a map")),
        }
    }

    pub(crate) fn str(&mut self) -> R<&'a str> {
        let n = match self.byte()? {
            b @ 0xa0..=0xbf => usize::from(b & 0x1f),
            0xd9 => self.be(1)? as usize,
            0xda => self.be(2)? as usize,
            0xdb => self.be(4)? as usize,
            _ => return Err(bad("expected a string")),
        };
        std::str::from_utf8(self.take(n)?).map_err(|_| bad("invalid utf-8"))
    }

    pub(crate) fn opt_str(&mut self) -> R<Option<&'a str>> {
        if self.try_nil() {
            return Ok(None);
        }
        self.str().map(Some)
    }

    /// Any integer as i128 (covers u64 and i64).
    fn integer(&mut self) -> R<i128> {
        let b = self.byte()?;
        Ok(match b {
            0x00..=0x7f => i128::from(b),
            0xe0..=0xff => i128::from(b as i8),
            0xcc => i128::from(self.be(1)?),
            0xcd => i128::from(self.be(2)?),
            0xce => i128::from(self.be(4)?),
            0xcf => i128::from(self.be(8)?),
            0xd0 => i128::from(self.be(1)? as u8 as i8),
            0xd1 => i128::from(self.be(2)? as u16 as i16),
            0xd2 => i128::from(self.be(4)? as u32 as i32),
            0xd3 => i128::from(self.be(8)? as i64),
            _ => return Err(bad("expected an integer")),
        })
    }

    pub(crate) fn uint(&mut self) -> R<u64> {
        u64::try_from(self.integer()?).map_err(|_| bad("negative where unsigned expected"))
    }

    pub(crate) fn opt_int(&mut self) -> R<Option<i64>> {
        if self.try_nil() {
            return Ok(None);
        }
        let v = self.integer()?;
        i64::try_from(v)
            .map(Some)
            .map_err(|_| bad("integer out of range"))
    }

    /// A float, or an integer read as one (msgspec accepts both for `float`).
    pub(crate) fn number(&mut self) -> R<f64> {
        match self.peek()? {
            0xcb => {
                self.pos += 1;
                Ok(f64::from_bits(self.be(8)?))
            }
            0xca => {
                self.pos += 1;
                Ok(f64::from(f32::from_bits(self.be(4)? as u32)))
            }
            _ => Ok(self.integer()? as f64),
        }
    }

    /// A block hash: an integer (vLLM's default) or bytes folded to their last 8, big-endian.
    pub(crate) fn hash(&mut self) -> R<u64> {
        let n = match self.peek()? {
            0xc4 => 1,
            0xc5 => 2,
            0xc6 => 4,
            _ => {
                let v = self.integer()?;
                // vLLM masks to 64 bits; a negative value keeps its two's complement bits.
                return Ok(v as u64);
            }
        };
        self.pos += 1;
        let len = self.be(n)? as usize;
        let b = self.take(len)?;
        let tail = &b[b.len().saturating_sub(8)..];
        Ok(tail.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    pub(crate) fn opt_hash(&mut self) -> R<Option<u64>> {
        if self.try_nil() {
            return Ok(None);
        }
        self.hash().map(Some)
    }

    /// Skips one value of any type.
    pub(crate) fn skip(&mut self) -> R<()> {
        self.skip_at(0)
    }

    fn skip_at(&mut self, depth: u32) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(bad("nested too deep"));
        }
        let b = self.byte()?;
        let (data, items) = match b {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * usize::from(b & 0x0f)),
            0x90..=0x9f => (0, usize::from(b & 0x0f)),
            0xa0..=0xbf => (usize::from(b & 0x1f), 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 | 0xca => (4, 0),
            0xcf | 0xd3 | 0xcb => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xc4 | 0xd9 => (self.be(1)? as usize, 0),
            0xc5 | 0xda => (self.be(2)? as usize, 0),
            0xc6 | 0xdb => (self.be(4)? as usize, 0),
            0xc7 => (self.be(1)? as usize + 1, 0),
            0xc8 => (self.be(2)? as usize + 1, 0),
            0xc9 => (self.be(4)? as usize + 1, 0),
            0xdc => (0, self.be(2)? as usize),
            0xdd => (0, self.be(4)? as usize),
            0xde => (0, 2 * self.be(2)? as usize),
            0xdf => (0, 2 * self.be(4)? as usize),
            _ => return Err(bad("invalid msgpack marker")),
        };
        self.take(data)?;
        for _ in 0..items {
            self.skip_at(depth + 1)?;
        }
        Ok(())
    }
}
