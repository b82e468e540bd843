//! Where tensor bytes go. The loader calls a [`Sink`] with each tensor's bytes in file order;
//! [`HostSink`] keeps them in one host-memory arena, [`DiscardSink`] only counts them.
//!
//! The GPU seam: a CUDA sink (through a CUDA crate such as `cudarc`, where a GPU exists)
//! allocates device memory per tensor (or one block) in [`Sink::begin`] and copies each slice
//! in [`Sink::write`] with `cudaMemcpyAsync` from a pinned staging buffer at `offset`; it
//! synchronises its stream in [`Sink::finish`]. Nothing else in the loader changes.

use std::io;

use crate::header::{Header, TensorMeta};

/// A destination for tensor bytes. Calls come in order: `begin` once, then `write` for
/// consecutive slices of consecutive tensors (`offset` is within the tensor and grows from 0),
/// then `finish` once after the last byte. An error stops the load.
pub trait Sink: Send {
    /// The validated header, before any data: allocate here (fail early when it will not fit).
    fn begin(&mut self, header: &Header) -> io::Result<()>;
    /// Bytes `offset..offset + data.len()` of tensor `index` (into `header.tensors`).
    fn write(&mut self, index: usize, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Every byte was written.
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// All tensors in host memory, in one allocation (the data section as in the file), reserved
/// up front with `try_reserve` so a model too big for memory fails cleanly instead of aborting.
#[derive(Debug, Default)]
pub struct HostSink {
    header: Option<Header>,
    arena: Vec<u8>,
}

impl HostSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The header of the loaded file (after `begin`).
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// The bytes of tensor `name`, once loaded.
    pub fn tensor(&self, name: &str) -> Option<&[u8]> {
        let t = self.meta()?.iter().find(|t| t.name == name)?;
        self.bytes_of(t)
    }

    /// Every tensor with its bytes, in file order (loaded ones only).
    pub fn tensors(&self) -> impl Iterator<Item = (&TensorMeta, &[u8])> {
        self.meta()
            .unwrap_or_default()
            .iter()
            .filter_map(|t| Some((t, self.bytes_of(t)?)))
    }

    /// The whole data section as loaded.
    pub fn data(&self) -> &[u8] {
        &self.arena
    }

    fn meta(&self) -> Option<&[TensorMeta]> {
        self.header.as_ref().map(|h| h.tensors.as_slice())
    }

    fn bytes_of(&self, t: &TensorMeta) -> Option<&[u8]> {
        let begin = usize::try_from(t.begin).ok()?;
        let end = usize::try_from(t.end).ok()?;
        self.arena.get(begin..end)
    }
}

impl Sink for HostSink {
    fn begin(&mut self, header: &Header) -> io::Result<()> {
        let len = usize::try_from(header.data_len)
            .map_err(|_| io::Error::other("data section larger than the address space"))?;
        self.arena = Vec::new();
        self.arena.try_reserve_exact(len).map_err(|e| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("reserving {len} bytes: {e}"),
            )
        })?;
        self.header = Some(header.clone());
        Ok(())
    }

    fn write(&mut self, index: usize, offset: u64, data: &[u8]) -> io::Result<()> {
        // Writes arrive in file order, so appending places them; check it anyway.
        let expected = self
            .meta()
            .and_then(|m| m.get(index))
            .map(|t| t.begin + offset);
        if expected != Some(self.arena.len() as u64) {
            return Err(io::Error::other(format!(
                "out-of-order write: tensor {index} offset {offset}"
            )));
        }
        self.arena.extend_from_slice(data);
        Ok(())
    }
}

/// Counts bytes and drops them: measures transport alone.
#[derive(Debug, Default)]
pub struct DiscardSink {
    /// Bytes written so far.
    pub bytes: u64,
}

impl Sink for DiscardSink {
    fn begin(&mut self, _header: &Header) -> io::Result<()> {
        self.bytes = 0;
        Ok(())
    }

    fn write(&mut self, _index: usize, _offset: u64, data: &[u8]) -> io::Result<()> {
        self.bytes += data.len() as u64;
        Ok(())
    }
}
