//! The pool's binary protocol: length-prefixed, versioned frames; one request, one reply, in
//! order (clients may pipeline). Pure codec: building and parsing bodies, no I/O.
//!
//! ```text
//! request header (8 bytes):  magic 0xB7 | version | op     | flags=0 | body_len u32 LE
//! reply header   (8 bytes):  magic 0xB7 | version | status | op      | body_len u32 LE
//! ```
//! The magic is not `*`, so one port also serves RESP (Redis) clients: the server sniffs the
//! first byte. Integers are little endian; a key is 16 bytes ([`BlockKey::to_bytes`]). Bodies:
//!
//! | op | request body | reply body |
//! |---|---|---|
//! | HELLO | u16 token len, token, u32 capabilities | u32 caps, u64 capacity, u64 max_value, u64 max_frame, u64 arena len (0: no shm), u64 lease ms; on a Unix socket with `CAP_SHM` the arena memfd rides along (`SCM_RIGHTS`) |
//! | EXISTS_PREFIX | keys | u32 longest present prefix |
//! | EXISTS | keys | u32 n, ⌈n/8⌉ bytes bitmap (bit i = key i present) |
//! | GET | keys | u32 n, then per key u8 present and, if present, u64 len and the bytes |
//! | PUT | u32 n, then per item key, u64 len, bytes | u32 n, n × u8 [`PutStatus`] |
//! | DELETE | keys | u32 deleted |
//! | STATS | — | u32 n, n × u64 ([`Stats`] in field order) |
//! | GET_SHM | keys | u32 n, per key u8 present, u64 offset, u64 len, u64 lease |
//! | RELEASE | u32 n, n × u64 lease | u32 released |
//! | PUT_ALLOC | u32 n, per item key, u64 len | u32 n, per item u8 [`PutStatus`], u64 offset, u64 lease |
//! | PUT_COMMIT | u32 n, n × u64 lease | u32 n, n × u8 (0 committed, 1 unknown or lapsed lease) |
//!
//! "keys" is u32 n then n × 16 bytes. A reply whose status is not OK carries a UTF-8 message;
//! after `BadRequest`, `TooLarge`, `Unauthorized` and `Version` the server closes the connection.

use crate::BlockKey;

/// First byte of every binary frame (not `*`, which starts a RESP request).
pub const MAGIC: u8 = 0xB7;
/// Protocol version spoken by this build.
pub const VERSION: u8 = 1;
/// Bytes of a frame header.
pub const HEADER_LEN: usize = 8;
/// Most keys in one batched request (bounds per-request work and reply metadata).
pub const MAX_BATCH: usize = 1 << 16;
/// Capability bit: the client wants the arena memfd (Unix sockets only).
pub const CAP_SHM: u32 = 1;
/// Longest accepted auth token.
pub const MAX_TOKEN: usize = 1024;

/// Declares a `#[repr(u8)]` wire enum with `from_repr` (the variant of a byte, if any), so each
/// variant's byte is written once.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $byte:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        $vis enum $name {
            $($(#[$vmeta])* $variant = $byte,)+
        }

        impl $name {
            /// The variant whose wire byte is `b`.
            fn from_repr(b: u8) -> Option<Self> {
                match b {
                    $($byte => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

wire_enum! {
    /// Operations.
    pub enum Op {
        /// Version check, authentication, limits, shm handover.
        Hello = 1,
        /// Longest present prefix of a key list, in one round trip.
        ExistsPrefix = 2,
        /// Presence of each key (bitmap).
        Exists = 3,
        /// Values of keys (misses marked).
        Get = 4,
        /// Stores values.
        Put = 5,
        /// Forgets keys.
        Delete = 6,
        /// Counters and gauges.
        Stats = 7,
        /// Leases values in place in the shared arena.
        GetShm = 8,
        /// Ends read leases.
        Release = 9,
        /// Reserves arena space for values the client then writes in place.
        PutAlloc = 10,
        /// Publishes reserved values.
        PutCommit = 11,
    }
}

impl Op {
    /// The op of a wire byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Self::from_repr(b)
    }
}

wire_enum! {
    /// Reply status.
    pub enum Status {
        /// Success; the body is the op's reply.
        Ok = 0,
        /// Malformed frame or body (connection closes).
        BadRequest = 1,
        /// Frame over the limit (connection closes).
        TooLarge = 2,
        /// Missing or wrong token, or an op before HELLO (connection closes).
        Unauthorized = 3,
        /// Unsupported protocol version (connection closes).
        Version = 4,
        /// The op is not available here (e.g. shm over TCP).
        Unsupported = 5,
    }
}

impl Status {
    /// The status of a wire byte (unknown bytes read as `BadRequest`).
    pub fn from_u8(b: u8) -> Self {
        Self::from_repr(b).unwrap_or(Self::BadRequest)
    }
}

wire_enum! {
    /// Outcome of storing one value.
    pub enum PutStatus {
        /// Stored (or reserved, for PUT_ALLOC).
        Stored = 0,
        /// Already present: keys are content addresses, so nothing was written.
        Exists = 1,
        /// Larger than `max_value`.
        TooLarge = 2,
        /// No room: everything evictable is pinned or leased.
        NoSpace = 3,
    }
}

impl PutStatus {
    /// The status of a wire byte.
    pub fn from_u8(b: u8) -> Self {
        Self::from_repr(b).unwrap_or(Self::NoSpace)
    }

    /// Whether the value is in the pool after the call.
    pub fn is_ok(self) -> bool {
        matches!(self, Self::Stored | Self::Exists)
    }
}

/// What a frame header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Op byte (requests) or echoed op (replies).
    pub op: u8,
    /// Status byte (replies; 0 in requests).
    pub status: u8,
    /// Body bytes that follow.
    pub len: u32,
}

/// Why a header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// First byte is not [`MAGIC`].
    #[error("bad magic byte 0x{0:02x}")]
    Magic(u8),
    /// Version other than [`VERSION`].
    #[error("unsupported protocol version {0} (this server speaks {VERSION})")]
    Version(u8),
    /// Body longer than allowed.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced body length.
        len: u32,
        /// The limit.
        max: u64,
    },
}

/// Encodes a request header.
pub fn request_header(op: Op, len: usize) -> [u8; HEADER_LEN] {
    header(op as u8, 0, len)
}

/// Encodes a reply header.
pub fn reply_header(op: u8, status: Status, len: usize) -> [u8; HEADER_LEN] {
    header(status as u8, op, len)
}

fn header(third: u8, fourth: u8, len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes();
    [
        MAGIC, VERSION, third, fourth, len[0], len[1], len[2], len[3],
    ]
}

/// Parses a request header, bounding the body by `max_frame`.
pub fn parse_request_header(b: &[u8; HEADER_LEN], max_frame: u64) -> Result<Header, HeaderError> {
    let h = parse(b, max_frame)?;
    Ok(Header {
        op: b[2],
        status: 0,
        len: h,
    })
}

/// Parses a reply header, bounding the body by `max_frame`.
pub fn parse_reply_header(b: &[u8; HEADER_LEN], max_frame: u64) -> Result<Header, HeaderError> {
    let h = parse(b, max_frame)?;
    Ok(Header {
        op: b[3],
        status: b[2],
        len: h,
    })
}

fn parse(b: &[u8; HEADER_LEN], max_frame: u64) -> Result<u32, HeaderError> {
    if b[0] != MAGIC {
        return Err(HeaderError::Magic(b[0]));
    }
    if b[1] != VERSION {
        return Err(HeaderError::Version(b[1]));
    }
    let len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    if u64::from(len) > max_frame {
        return Err(HeaderError::TooLarge {
            len,
            max: max_frame,
        });
    }
    Ok(len)
}

/// A malformed body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed body: {0}")]
pub struct BodyError(pub &'static str);

/// Reads a body front to back; every read is bounds checked.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], BodyError> {
        if self.buf.len() < n {
            return Err(BodyError("truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// A u8.
    pub fn u8(&mut self) -> Result<u8, BodyError> {
        Ok(self.bytes(1)?[0])
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> Result<u16, BodyError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> Result<u32, BodyError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> Result<u64, BodyError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A key.
    pub fn key(&mut self) -> Result<BlockKey, BodyError> {
        Ok(BlockKey::from_bytes(self.array()?))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], BodyError> {
        let b = self.bytes(N)?;
        let mut a = [0; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    /// A count, bounded by [`MAX_BATCH`] and by what is left at `item_len` bytes each (so a
    /// lying count cannot make the reader allocate).
    pub fn count(&mut self, item_len: usize) -> Result<usize, BodyError> {
        let n = self.u32()? as usize;
        if n > MAX_BATCH {
            return Err(BodyError("batch larger than 65536 items"));
        }
        if n.saturating_mul(item_len) > self.buf.len() {
            return Err(BodyError("count exceeds the body"));
        }
        Ok(n)
    }

    /// A key list (u32 n, n keys).
    pub fn keys(&mut self) -> Result<Vec<BlockKey>, BodyError> {
        let n = self.count(16)?;
        (0..n).map(|_| self.key()).collect()
    }

    /// A list of u64 (u32 n, n values).
    pub fn u64s(&mut self) -> Result<Vec<u64>, BodyError> {
        let n = self.count(8)?;
        (0..n).map(|_| self.u64()).collect()
    }

    /// Fails unless the body was consumed exactly.
    pub fn end(&self) -> Result<(), BodyError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(BodyError("trailing bytes"))
        }
    }
}

/// Encodes a key list body.
pub fn keys_body(keys: &[BlockKey]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + 16 * keys.len());
    b.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    for k in keys {
        b.extend_from_slice(&k.to_bytes());
    }
    b
}

/// Encodes a u64 list body.
pub fn u64s_body(values: &[u64]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + 8 * values.len());
    b.extend_from_slice(&(values.len() as u32).to_le_bytes());
    for v in values {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

/// Encodes a HELLO body.
pub fn hello_body(token: Option<&str>, caps: u32) -> Vec<u8> {
    let token = token.unwrap_or("").as_bytes();
    let mut b = Vec::with_capacity(6 + token.len());
    b.extend_from_slice(&(token.len().min(MAX_TOKEN) as u16).to_le_bytes());
    b.extend_from_slice(&token[..token.len().min(MAX_TOKEN)]);
    b.extend_from_slice(&caps.to_le_bytes());
    b
}

/// What the server says in its HELLO reply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerInfo {
    /// Capabilities granted (e.g. [`CAP_SHM`]).
    pub caps: u32,
    /// Arena capacity in bytes.
    pub capacity: u64,
    /// Largest value accepted.
    pub max_value: u64,
    /// Largest frame body accepted.
    pub max_frame: u64,
    /// Length of the shared arena (0 when no memfd came along).
    pub arena_len: u64,
    /// How long shm leases last.
    pub lease_ms: u64,
}

impl ServerInfo {
    /// Encodes the HELLO reply body.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(44);
        b.extend_from_slice(&self.caps.to_le_bytes());
        for v in [
            self.capacity,
            self.max_value,
            self.max_frame,
            self.arena_len,
            self.lease_ms,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Parses the HELLO reply body.
    pub fn decode(body: &[u8]) -> Result<Self, BodyError> {
        let mut r = Reader::new(body);
        let info = Self {
            caps: r.u32()?,
            capacity: r.u64()?,
            max_value: r.u64()?,
            max_frame: r.u64()?,
            arena_len: r.u64()?,
            lease_ms: r.u64()?,
        };
        r.end()?;
        Ok(info)
    }
}

/// Server counters and gauges (STATS reply, in this field order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Arena bytes.
    pub capacity_bytes: u64,
    /// Arena bytes allocated to values (page rounded), pending writes included.
    pub used_bytes: u64,
    /// Values stored.
    pub entries: u64,
    /// Values stored since start (new keys only).
    pub puts: u64,
    /// Keys found by GET / GET_SHM / EXISTS_PREFIX.
    pub hits: u64,
    /// Keys not found by GET / GET_SHM (and prefix lookups that stopped short).
    pub misses: u64,
    /// Values evicted to make room.
    pub evictions: u64,
    /// Puts refused for lack of room or size.
    pub rejected: u64,
    /// Live shm leases (reads and reserved writes).
    pub leases: u64,
    /// Open connections.
    pub connections: u64,
}

impl Stats {
    /// The fields in wire order.
    pub fn to_vec(&self) -> Vec<u64> {
        vec![
            self.capacity_bytes,
            self.used_bytes,
            self.entries,
            self.puts,
            self.hits,
            self.misses,
            self.evictions,
            self.rejected,
            self.leases,
            self.connections,
        ]
    }

    /// Reads fields in wire order (missing trailing fields are zero, extra ones ignored, so
    /// newer servers can add fields).
    pub fn from_slice(v: &[u64]) -> Self {
        let f = |i: usize| v.get(i).copied().unwrap_or(0);
        Self {
            capacity_bytes: f(0),
            used_bytes: f(1),
            entries: f(2),
            puts: f(3),
            hits: f(4),
            misses: f(5),
            evictions: f(6),
            rejected: f(7),
            leases: f(8),
            connections: f(9),
        }
    }
}

/// Encodes the EXISTS bitmap reply.
pub fn bitmap_body(bits: &[bool]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + bits.len().div_ceil(8));
    b.extend_from_slice(&(bits.len() as u32).to_le_bytes());
    let mut bytes = vec![0u8; bits.len().div_ceil(8)];
    for (i, &bit) in bits.iter().enumerate() {
        if bit {
            bytes[i / 8] |= 1 << (i % 8);
        }
    }
    b.extend_from_slice(&bytes);
    b
}

/// Parses the EXISTS bitmap reply.
pub fn parse_bitmap(body: &[u8]) -> Result<Vec<bool>, BodyError> {
    let mut r = Reader::new(body);
    let n = r.count(0)?;
    let bytes = r.bytes(n.div_ceil(8))?;
    r.end()?;
    Ok((0..n).map(|i| bytes[i / 8] & (1 << (i % 8)) != 0).collect())
}

#[cfg(test)]
#[path = "proto_tests.rs"]
mod tests;
