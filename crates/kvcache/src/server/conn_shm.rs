//! Bodies of the shared-memory ops (GET_SHM, RELEASE, PUT_ALLOC, PUT_COMMIT) for a connection
//! that got the arena in HELLO; leases belong to the connection (`owner`).

use crate::proto::{BodyError, PutStatus, Reader};
use crate::store::Store;

pub(super) fn get_shm(store: &Store, r: &mut Reader<'_>, owner: u64) -> Result<Vec<u8>, BodyError> {
    let keys = r.keys()?;
    r.end()?;
    let mut out = Vec::with_capacity(4 + 25 * keys.len());
    out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    for k in keys {
        let l = store.lease_read(k, owner);
        out.push(u8::from(l.is_some()));
        let (off, len, id) = l.map_or((0, 0, 0), |l| (l.offset, l.len, l.id));
        for v in [off, len, id] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
}

pub(super) fn release(store: &Store, r: &mut Reader<'_>, owner: u64) -> Result<Vec<u8>, BodyError> {
    let ids = r.u64s()?;
    r.end()?;
    let n = ids
        .into_iter()
        .filter(|&id| store.release(id, owner))
        .count() as u32;
    Ok(n.to_le_bytes().to_vec())
}

pub(super) fn alloc(store: &Store, r: &mut Reader<'_>, owner: u64) -> Result<Vec<u8>, BodyError> {
    let n = r.count(24)?;
    let mut out = Vec::with_capacity(4 + 17 * n);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for _ in 0..n {
        let key = r.key()?;
        let len = r.u64()?;
        let (status, lease) = store.reserve(key, len, owner);
        debug_assert!(lease.is_some() == (status == PutStatus::Stored));
        out.push(status as u8);
        let (off, id) = lease.map_or((0, 0), |l| (l.offset, l.id));
        out.extend_from_slice(&off.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    r.end()?;
    Ok(out)
}

pub(super) fn commit(store: &Store, r: &mut Reader<'_>, owner: u64) -> Result<Vec<u8>, BodyError> {
    let ids = r.u64s()?;
    r.end()?;
    let mut out = Vec::with_capacity(4 + ids.len());
    out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    out.extend(ids.into_iter().map(|id| u8::from(!store.commit(id, owner))));
    Ok(out)
}
