//! The shared arena: one memfd that the server maps and hands to same-host clients over a Unix
//! socket (`SCM_RIGHTS`), so a value moves with one memcpy in the reader's process and no socket.
//!
//! This is the crate's only unsafe code: mapping a file and copying through raw pointers. No Rust
//! reference ever points into the mapping (other processes may write it at any time), so the
//! copies are plain `ptr::copy_nonoverlapping` between the mapping and private buffers, bounds
//! checked against the mapping's length. Which bytes belong to whom is the allocator's business
//! (`arena.rs`); a buggy or hostile client that writes outside its allocation corrupts cached
//! values, never the server's own memory (see the trust model in docs/kvcache.md).

use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use memmap2::{MmapOptions, MmapRaw};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// A memfd-backed region mapped shared; the server creates it, clients map the fd they receive.
#[derive(Debug)]
pub struct SharedRegion {
    file: File,
    map: MmapRaw,
}

impl SharedRegion {
    /// Creates a sparse memfd of `len` bytes and maps it: pages are only allocated when written,
    /// so memory use follows what is stored, bounded by `len`.
    pub fn create(name: &str, len: u64) -> io::Result<Self> {
        let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)?;
        let file = File::from(fd);
        file.set_len(len.max(1))?;
        Self::map(file)
    }

    /// Maps a region received from a server (its length is the file's).
    pub fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        Self::map(File::from(fd))
    }

    fn map(file: File) -> io::Result<Self> {
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::other("region larger than the address space"))?;
        let map = MmapOptions::new().len(len).map_raw(&file)?;
        Ok(Self { file, map })
    }

    /// The memfd, to pass to clients.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Length of the region in bytes.
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Whether the region has no bytes (never, for a created one).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    fn check(&self, offset: u64, len: usize) -> io::Result<usize> {
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        match start.checked_add(len) {
            Some(end) if end <= self.map.len() => Ok(start),
            _ => Err(out_of_range()),
        }
    }

    /// Copies `out.len()` bytes at `offset` out of the region.
    pub fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let start = self.check(offset, out.len())?;
        #[expect(
            unsafe_code,
            reason = "copy out of the shared mapping, bounds checked above"
        )]
        // SAFETY: `start..start + out.len()` lies inside the live mapping (checked), `out` is a
        // private buffer so the ranges cannot overlap, and no reference into the mapping exists.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(start),
                out.as_mut_ptr(),
                out.len(),
            );
        }
        Ok(())
    }

    /// Copies `data` into the region at `offset`.
    pub fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let start = self.check(offset, data.len())?;
        #[expect(
            unsafe_code,
            reason = "copy into the shared mapping, bounds checked above"
        )]
        // SAFETY: as in `read`; the mapping is MAP_SHARED and writable (`map_raw` on a file opened
        // read-write by memfd_create), and `data` is a private buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.map.as_mut_ptr().add(start),
                data.len(),
            );
        }
        Ok(())
    }

    /// Returns the pages of `offset..offset+len` to the kernel (the range reads as zeros after),
    /// so a region freed by eviction stops counting against the host's memory.
    pub fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        use rustix::fs::FallocateFlags;
        let mode = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        rustix::fs::fallocate(&self.file, mode, offset, len)?;
        Ok(())
    }
}

fn out_of_range() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "range outside the shared region",
    )
}

/// Sends `data` on a Unix stream socket with `fd` attached to its first byte; returns the bytes
/// sent (the caller writes the rest normally). Non-blocking sockets may return `WouldBlock`.
pub fn send_with_fd(sock: BorrowedFd<'_>, data: &[u8], fd: BorrowedFd<'_>) -> io::Result<usize> {
    let fds = [fd];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("control buffer too small for one fd"));
    }
    Ok(rustix::net::sendmsg(
        sock,
        &[IoSlice::new(data)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?)
}

/// Receives into `buf` from a Unix stream socket and returns the bytes read and the first fd that
/// came with them, if any (extra fds are closed). Non-blocking sockets may return `WouldBlock`.
pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut got = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            for fd in fds {
                got.get_or_insert(fd);
            }
        }
    }
    Ok((msg.bytes, got))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_written_are_read_back_and_bounds_are_checked() {
        let r = SharedRegion::create("t", 1 << 16).expect("memfd");
        r.write(4096, b"hello").expect("write");
        let mut out = [0u8; 5];
        r.read(4096, &mut out).expect("read");
        assert_eq!(&out, b"hello");
        assert!(r.read(1 << 16, &mut out).is_err());
        assert!(r.write(u64::MAX, b"x").is_err());
        r.discard(0, 8192).expect("punch");
        r.read(4096, &mut out).expect("read");
        assert_eq!(out, [0; 5]);
    }

    #[test]
    fn a_second_mapping_of_the_passed_fd_sees_the_same_bytes() {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
        let r = SharedRegion::create("t", 8192).expect("memfd");
        r.write(100, b"shared").expect("write");
        assert_eq!(send_with_fd(a.as_fd(), b"hi", r.fd()).expect("send"), 2);
        let mut buf = [0u8; 8];
        let (n, fd) = recv_with_fd(b.as_fd(), &mut buf).expect("recv");
        assert_eq!(&buf[..n], b"hi");
        let other = SharedRegion::from_fd(fd.expect("an fd came along")).expect("map");
        let mut out = [0u8; 6];
        other.read(100, &mut out).expect("read");
        assert_eq!(&out, b"shared");
        other.write(200, b"back").expect("write");
        let mut out = [0u8; 4];
        r.read(200, &mut out).expect("read");
        assert_eq!(&out, b"back");
    }
}
