//! The load itself: header, then a window of chunk reads consumed in order into the sink.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use xxhash_rust::xxh64::Xxh64;

use crate::header::{self, Header};
use crate::reader::Reader;
use crate::{LoadError, LoadOptions, LoadReport, Sink, Source, TensorDigest};

/// Wait before the first retry of a chunk; doubles on each further one.
const RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// First read of a remote file: the 8-byte length and (usually) the whole JSON header.
const PROBE_BYTES: usize = 1 << 20;

/// Streams `source` into `sink`: header first, then the data section in `chunk_bytes`
/// ranges, `concurrency` at a time, holding at most `max_buffered_bytes` of fetched data.
/// A chunk whose read fails with a retryable error (network, timeout, 5xx, 408, 429) is read
/// again up to `retries` times; any other error (bad header, a response that does not match
/// the request, ignored `Range`, sink failure), or the last retry's, stops the load and
/// cancels the reads in flight.
pub async fn load(
    source: &Source,
    sink: &mut dyn Sink,
    opts: &LoadOptions,
) -> Result<LoadReport, LoadError> {
    let started = Instant::now();
    if opts.chunk_bytes == 0 || opts.concurrency == 0 || opts.max_buffered_bytes == 0 {
        return Err(LoadError::Options(
            "chunk_bytes, concurrency and max_buffered_bytes must be at least 1".into(),
        ));
    }
    let reader = Arc::new(Reader::open(source, opts).await?);
    let header = read_header(&reader, opts).await?;
    sink.begin(&header).map_err(LoadError::Sink)?;

    let chunk = opts.chunk_bytes.min(opts.max_buffered_bytes);
    let window = (opts.max_buffered_bytes / chunk).max(1);
    let permits = Arc::new(Semaphore::new(opts.concurrency));
    let gauge = Arc::new(Gauge::default());
    let pool: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let mut ranges = (0..header.data_len).step_by(chunk).map(|off| {
        (
            header.data_start + off,
            (header.data_len - off).min(chunk as u64) as usize,
        )
    });
    let mut inflight = Tasks(VecDeque::with_capacity(window));
    let mut copy = Copier::new(&header, opts.digest);
    let mut chunks = 0;
    loop {
        while inflight.0.len() < window
            && let Some((start, len)) = ranges.next()
        {
            let retries = opts.retries;
            let (reader, permits, gauge, pool) = (
                Arc::clone(&reader),
                Arc::clone(&permits),
                Arc::clone(&gauge),
                Arc::clone(&pool),
            );
            inflight.0.push_back(tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                let buf = pool
                    .lock()
                    .map(|mut p| p.pop())
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                gauge.add(len);
                let mut buf = Some(buf);
                let out = retry(retries, || {
                    reader.read_exact(start, len, buf.take().unwrap_or_default())
                })
                .await;
                if out.is_err() {
                    gauge.sub(len);
                }
                out
            }));
        }
        let Some(task) = inflight.0.pop_front() else {
            break;
        };
        let buf = task.await.map_err(|e| LoadError::Io {
            src: reader.shown().to_owned(),
            what: "read task".into(),
            err: std::io::Error::other(e),
        })??;
        chunks += 1;
        let held = buf.len();
        copy.push(sink, &buf)?;
        gauge.sub(held);
        if let Ok(mut p) = pool.lock() {
            p.push(buf);
        }
    }
    let digests = copy.finish(sink)?;
    sink.finish().map_err(LoadError::Sink)?;
    Ok(LoadReport {
        tensors: header.tensors.len(),
        bytes: header.data_len,
        header_bytes: header.data_start,
        chunks,
        elapsed: started.elapsed(),
        peak_buffered_bytes: gauge.peak.load(Ordering::Relaxed),
        digests,
    })
}

/// The header, validated, and checked against the file's total size when known.
async fn read_header(reader: &Arc<Reader>, opts: &LoadOptions) -> Result<Header, LoadError> {
    let bad = |why: String| LoadError::Header {
        src: reader.shown().to_owned(),
        why,
    };
    let probe = usize::try_from(opts.max_header_bytes.saturating_add(8))
        .unwrap_or(usize::MAX)
        .min(PROBE_BYTES);
    let (mut bytes, total) = retry(opts.retries, || reader.read_prefix(probe)).await?;
    let total = reader.known_len().or(total);
    let prefix: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            bad(format!(
                "file of {} bytes has no 8-byte length",
                bytes.len()
            ))
        })?;
    let json_len = header::json_len(&prefix, opts.max_header_bytes).map_err(bad)?;
    let end = 8 + json_len;
    if let Some(t) = total
        && t < end
    {
        return Err(bad(format!(
            "header says {json_len} bytes of JSON but the file has {t} bytes"
        )));
    }
    let end = usize::try_from(end).map_err(|_| bad("header too large".into()))?;
    if bytes.len() < end {
        let (at, len) = (bytes.len() as u64, end - bytes.len());
        let rest = retry(opts.retries, || reader.read_exact(at, len, Vec::new())).await?;
        bytes.extend_from_slice(&rest);
    }
    let header = header::parse(&bytes[8..end], opts.max_data_bytes).map_err(bad)?;
    if let Some(t) = total
        && t != header.data_start + header.data_len
    {
        return Err(bad(format!(
            "file has {t} bytes but the header describes {}",
            header.data_start + header.data_len
        )));
    }
    Ok(header)
}

/// `read()`, again up to `retries` times while it fails with a retryable error, with a
/// doubling backoff.
async fn retry<T, F, Fut>(retries: u32, mut read: F) -> Result<T, LoadError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, LoadError>>,
{
    let mut backoff = RETRY_BACKOFF;
    let mut out = read().await;
    for _ in 0..retries {
        match &out {
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                out = read().await;
            }
            _ => break,
        }
    }
    out
}

/// Bytes held in chunk buffers now and at most.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    fn add(&self, n: usize) {
        let now = self.now.fetch_add(n, Ordering::Relaxed) + n;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.now.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Chunk tasks in file order; aborted when the load ends early.
struct Tasks(VecDeque<JoinHandle<Result<Vec<u8>, LoadError>>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Cuts the data stream at tensor boundaries into the sink, hashing each tensor.
struct Copier<'h> {
    header: &'h Header,
    index: usize,
    offset: u64,
    hash: Option<Xxh64>,
    digests: Vec<TensorDigest>,
}

impl<'h> Copier<'h> {
    fn new(header: &'h Header, digest: bool) -> Self {
        Self {
            header,
            index: 0,
            offset: 0,
            hash: digest.then(|| Xxh64::new(0)),
            digests: Vec::with_capacity(if digest { header.tensors.len() } else { 0 }),
        }
    }

    fn push(&mut self, sink: &mut dyn Sink, mut data: &[u8]) -> Result<(), LoadError> {
        while !data.is_empty() {
            self.close_full();
            let t = &self.header.tensors[self.index];
            let take = data.len().min((t.len() - self.offset) as usize);
            sink.write(self.index, self.offset, &data[..take])
                .map_err(LoadError::Sink)?;
            if let Some(h) = &mut self.hash {
                h.update(&data[..take]);
            }
            self.offset += take as u64;
            data = &data[take..];
        }
        Ok(())
    }

    /// Moves past every tensor whose bytes are all written (zero-sized ones included).
    fn close_full(&mut self) {
        while let Some(t) = self.header.tensors.get(self.index)
            && self.offset == t.len()
        {
            if let Some(h) = &mut self.hash {
                self.digests.push(TensorDigest {
                    name: t.name.clone(),
                    bytes: t.len(),
                    xxh64: h.digest(),
                });
                h.reset(0);
            }
            self.index += 1;
            self.offset = 0;
        }
    }

    fn finish(mut self, _sink: &mut dyn Sink) -> Result<Vec<TensorDigest>, LoadError> {
        self.close_full();
        if self.index != self.header.tensors.len() {
            return Err(LoadError::Sink(std::io::Error::other(format!(
                "stream ended inside tensor {} of {}",
                self.index,
                self.header.tensors.len()
            ))));
        }
        Ok(self.digests)
    }
}
