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

/// Splits `items` into PUT batches whose bodies are at most `max_frame` bytes (a value that
/// alone does not fit gets a batch of its own; the caller refuses those first).
pub(crate) fn put_batches(
    items: &[(BlockKey, &[u8])],
    max_frame: u64,
) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
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
        out.push(start..i);
    }
    out
}

/// A PUT split for the wire: `refused[i]` is `Some(TooLarge)` for an item over `max_value`
/// (never sent), and `send` holds the other items in order.
pub(crate) struct PutPlan<'a> {
    refused: Vec<Option<PutStatus>>,
    /// The items to send, in order.
    pub(crate) send: Vec<(BlockKey, &'a [u8])>,
}

impl<'a> PutPlan<'a> {
    /// Refuses the items over `max_value` locally; the rest are to be sent.
    pub(crate) fn new(items: &[(BlockKey, &'a [u8])], max_value: u64) -> Self {
        let refused: Vec<Option<PutStatus>> = items
            .iter()
            .map(|(_, v)| (v.len() as u64 > max_value).then_some(PutStatus::TooLarge))
            .collect();
        let send = items
            .iter()
            .zip(&refused)
            .filter(|(_, r)| r.is_none())
            .map(|(i, _)| *i)
            .collect();
        Self { refused, send }
    }

    /// A status per original item: the refusals, and the server's statuses (`got`, one per
    /// sent item, in order) in between.
    pub(crate) fn merge(self, got: Vec<PutStatus>) -> Vec<PutStatus> {
        let mut got = got.into_iter();
        self.refused
            .into_iter()
            .map(|r| r.or_else(|| got.next()).unwrap_or(PutStatus::NoSpace))
            .collect()
    }
}

/// A PUT reply → statuses, which must be one per item of the `n`-item batch.
pub(crate) fn put_statuses(body: &[u8], n: usize) -> io::Result<Vec<PutStatus>> {
    let s = decode_statuses(body)?;
    if s.len() != n {
        return Err(invalid(BodyError("status count")));
    }
    Ok(s)
}

/// The frame header + count and the per-item headers of a PUT batch; the values go between
/// the item headers by vectored writes, uncopied.
pub(crate) fn put_heads(items: &[(BlockKey, &[u8])]) -> (Vec<u8>, Vec<[u8; 24]>) {
    let body: usize = 4 + items.iter().map(|(_, v)| 24 + v.len()).sum::<usize>();
    let mut head = proto::request_header(Op::Put, body).to_vec();
    head.extend_from_slice(&(items.len() as u32).to_le_bytes());
    let items = items
        .iter()
        .map(|(k, v)| {
            let mut h = [0u8; 24];
            h[..16].copy_from_slice(&k.to_bytes());
            h[16..].copy_from_slice(&(v.len() as u64).to_le_bytes());
            h
        })
        .collect();
    (head, items)
}

/// Writes a PUT batch with vectored writes (values are not copied into a frame buffer).
pub(crate) fn write_put(
    w: &mut impl std::io::Write,
    items: &[(BlockKey, &[u8])],
) -> io::Result<()> {
    use std::io::IoSlice;
    let (head, heads) = put_heads(items);
    let mut slices = Vec::with_capacity(1 + 2 * items.len());
    slices.push(IoSlice::new(&head));
    for (h, (_, v)) in heads.iter().zip(items) {
        slices.push(IoSlice::new(h));
        slices.push(IoSlice::new(v));
    }
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = w.write_vectored(rest)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// A reply header checked against `max` body bytes.
pub(crate) fn reply_header(hdr: &[u8; proto::HEADER_LEN], max: u64) -> io::Result<proto::Header> {
    proto::parse_reply_header(hdr, max)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// The body of an OK reply, or the error a non-OK `status` byte stands for.
pub(crate) fn reply_body(status: u8, body: Vec<u8>) -> io::Result<Vec<u8>> {
    match Status::from_u8(status) {
        Status::Ok => Ok(body),
        s => Err(reply_error(s, &body)),
    }
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

/// A reply of `u32 n` then `n` items of at least `item_len` bytes, each read by `item`; `n`
/// must be `expect` (one per requested key) and nothing may follow.
fn decode_items<T>(
    body: &[u8],
    item_len: usize,
    expect: usize,
    mut item: impl FnMut(&mut Reader) -> Result<T, BodyError>,
) -> io::Result<Vec<T>> {
    let mut r = Reader::new(body);
    let n = r.count(item_len).map_err(invalid)?;
    if n != expect {
        return Err(invalid(BodyError("reply count differs from the request")));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(item(&mut r).map_err(invalid)?);
    }
    r.end().map_err(invalid)?;
    Ok(out)
}

/// GET reply → values, sliced out of the one body buffer (no copy per value).
pub(crate) fn decode_get(body: Bytes, expect: usize) -> io::Result<Vec<Option<Bytes>>> {
    let spans = decode_items(&body, 1, expect, |r| {
        if r.u8()? == 0 {
            return Ok(None);
        }
        let len = usize::try_from(r.u64()?).map_err(|_| BodyError("len"))?;
        let at = body.len() - r.remaining();
        r.bytes(len)?;
        Ok(Some((at, len)))
    })?;
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
    decode_items(body, 25, expect, |r| {
        let present = r.u8()? != 0;
        let (off, len, id) = (r.u64()?, r.u64()?, r.u64()?);
        Ok(present.then_some((off, len, id)))
    })
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
    decode_items(body, 17, expect, |r| {
        Ok((PutStatus::from_u8(r.u8()?), r.u64()?, r.u64()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GET reply: key 0 missing, key 1 = `abc`.
    fn get_reply() -> Vec<u8> {
        let mut b = 2u32.to_le_bytes().to_vec();
        b.push(0);
        b.push(1);
        b.extend_from_slice(&3u64.to_le_bytes());
        b.extend_from_slice(b"abc");
        b
    }

    #[test]
    fn replies_are_checked_for_count_length_and_trailing_bytes() {
        let got = decode_get(Bytes::from(get_reply()), 2).expect("well formed");
        assert_eq!(got, vec![None, Some(Bytes::from_static(b"abc"))]);
        assert!(decode_get(Bytes::from(get_reply()), 3).is_err(), "count");
        let mut trailing = get_reply();
        trailing.push(0);
        assert!(decode_get(Bytes::from(trailing), 2).is_err(), "trailing");
        let cut = get_reply()[..15].to_vec();
        assert!(decode_get(Bytes::from(cut), 2).is_err(), "cut value");

        let mut alloc = 1u32.to_le_bytes().to_vec();
        alloc.push(PutStatus::Exists as u8);
        alloc.extend_from_slice(&7u64.to_le_bytes());
        alloc.extend_from_slice(&9u64.to_le_bytes());
        let got = decode_alloc(&alloc, 1).expect("well formed");
        assert_eq!(got, vec![(PutStatus::Exists, 7, 9)]);
        assert!(decode_alloc(&alloc, 2).is_err(), "count");
        assert!(decode_leases(&alloc, 1).is_err(), "too short for a lease");
    }
}
