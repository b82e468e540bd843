//! Client-side codec shared by the blocking and async clients: request frames and reply-body
//! decoding (pure; the clients only move bytes).

use std::io;

use bytes::Bytes;

use crate::BlockKey;
use crate::proto::{self, BodyError, Op, PutStatus, Reader, Status};

/// A frame for `op` with `body`.
pub(crate) fn frame(op: Op, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(proto::HEADER_LEN + body.len());
    f.extend_from_slice(&proto::request_header(op, body.len()));
    f.extend_from_slice(body);
    f
}

/// The PUT frames for `items`, each at most `max_frame` bytes of body (a value that alone does
/// not fit is the caller's to refuse first).
pub(crate) fn put_frames(items: &[(BlockKey, &[u8])], max_frame: u64) -> Vec<(Vec<u8>, usize)> {
    let mut frames = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let start = i;
        let mut size = 4u64;
        while i < items.len()
            && i - start < proto::MAX_BATCH
            && (i == start || size + 24 + items[i].1.len() as u64 <= max_frame)
        {
            size += 24 + items[i].1.len() as u64;
            i += 1;
        }
        let mut body = Vec::with_capacity(size as usize);
        body.extend_from_slice(&((i - start) as u32).to_le_bytes());
        for (k, v) in &items[start..i] {
            body.extend_from_slice(&k.to_bytes());
            body.extend_from_slice(&(v.len() as u64).to_le_bytes());
            body.extend_from_slice(v);
        }
        frames.push((frame(Op::Put, &body), i - start));
    }
    frames
}

/// An error for a non-OK reply or a malformed body.
pub(crate) fn reply_error(status: Status, body: &[u8]) -> io::Error {
    let msg = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
    let kind = match status {
        Status::Unauthorized => io::ErrorKind::PermissionDenied,
        Status::Unsupported => io::ErrorKind::Unsupported,
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, format!("kvcache server: {status:?}: {msg}"))
}

pub(crate) fn invalid(e: BodyError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("kvcache reply: {e}"))
}

pub(crate) fn decode_u32(body: &[u8]) -> io::Result<u32> {
    let mut r = Reader::new(body);
    let n = r.u32().map_err(invalid)?;
    r.end().map_err(invalid)?;
    Ok(n)
}

pub(crate) fn decode_statuses(body: &[u8]) -> io::Result<Vec<PutStatus>> {
    let mut r = Reader::new(body);
    let n = r.count(1).map_err(invalid)?;
    let s = r
        .bytes(n)
        .map_err(invalid)?
        .iter()
        .map(|&b| PutStatus::from_u8(b))
        .collect();
    r.end().map_err(invalid)?;
    Ok(s)
}

/// GET reply → values, sliced out of the one body buffer (no copy per value).
pub(crate) fn decode_get(body: Bytes, expect: usize) -> io::Result<Vec<Option<Bytes>>> {
    let mut r = Reader::new(&body);
    let n = r.count(1).map_err(invalid)?;
    if n != expect {
        return Err(invalid(BodyError("reply count differs from the request")));
    }
    let mut spans = Vec::with_capacity(n);
    for _ in 0..n {
        if r.u8().map_err(invalid)? == 0 {
            spans.push(None);
            continue;
        }
        let len =
            usize::try_from(r.u64().map_err(invalid)?).map_err(|_| invalid(BodyError("len")))?;
        let at = body.len() - r.remaining();
        r.bytes(len).map_err(invalid)?;
        spans.push(Some((at, len)));
    }
    r.end().map_err(invalid)?;
    Ok(spans
        .into_iter()
        .map(|s| s.map(|(at, len)| body.slice(at..at + len)))
        .collect())
}

/// GET_SHM reply → (offset, len, lease) per key.
pub(crate) fn decode_leases(
    body: &[u8],
    expect: usize,
) -> io::Result<Vec<Option<(u64, u64, u64)>>> {
    let mut r = Reader::new(body);
    let n = r.count(25).map_err(invalid)?;
    if n != expect {
        return Err(invalid(BodyError("reply count differs from the request")));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let present = r.u8().map_err(invalid)? != 0;
        let (off, len, id) = (
            r.u64().map_err(invalid)?,
            r.u64().map_err(invalid)?,
            r.u64().map_err(invalid)?,
        );
        out.push(present.then_some((off, len, id)));
    }
    r.end().map_err(invalid)?;
    Ok(out)
}

/// PUT_ALLOC body for `(key, len)` items.
pub(crate) fn alloc_body(items: &[(BlockKey, u64)]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + 24 * items.len());
    b.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for (k, len) in items {
        b.extend_from_slice(&k.to_bytes());
        b.extend_from_slice(&len.to_le_bytes());
    }
    b
}

/// PUT_ALLOC reply → (status, offset, lease) per item.
pub(crate) fn decode_alloc(body: &[u8], expect: usize) -> io::Result<Vec<(PutStatus, u64, u64)>> {
    let mut r = Reader::new(body);
    let n = r.count(17).map_err(invalid)?;
    if n != expect {
        return Err(invalid(BodyError("reply count differs from the request")));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let s = PutStatus::from_u8(r.u8().map_err(invalid)?);
        out.push((s, r.u64().map_err(invalid)?, r.u64().map_err(invalid)?));
    }
    r.end().map_err(invalid)?;
    Ok(out)
}
