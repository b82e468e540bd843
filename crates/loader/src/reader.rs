//! Byte ranges of one source: positioned reads of a local file (on the blocking pool), or
//! ranged GETs of an HTTP(S) or S3 object, each checked against what was asked.

use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;

use brix_artifacts::object::{RemoteObject, client, ensure_success, network_error};
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::{Client, Method, StatusCode};

use crate::{LoadError, LoadOptions, Source};

/// An open source, shared by the chunk tasks.
pub(crate) enum Reader {
    File {
        shown: String,
        file: Arc<std::fs::File>,
        len: u64,
    },
    Remote {
        client: Client,
        object: Box<RemoteObject>,
    },
}

impl Reader {
    pub(crate) async fn open(source: &Source, opts: &LoadOptions) -> Result<Self, LoadError> {
        match source {
            Source::File(path) => open_file(path).await,
            Source::Http(url) => remote(url, &brix_artifacts::Credentials::default(), opts),
            Source::S3 { url, credentials } => remote(url, credentials, opts),
        }
    }

    pub(crate) fn shown(&self) -> &str {
        match self {
            Self::File { shown, .. } => shown,
            Self::Remote { object, .. } => object.shown(),
        }
    }

    /// The file's total size when known before reading (local files).
    pub(crate) fn known_len(&self) -> Option<u64> {
        match self {
            Self::File { len, .. } => Some(*len),
            Self::Remote { .. } => None,
        }
    }

    /// Exactly `len` bytes at `start` into `buf` (cleared first; its allocation is reused).
    pub(crate) async fn read_exact(
        self: &Arc<Self>,
        start: u64,
        len: usize,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>, LoadError> {
        match &**self {
            Self::File { shown, file, .. } => {
                let file = Arc::clone(file);
                let shown = shown.clone();
                tokio::task::spawn_blocking(move || {
                    // Contents are overwritten by the read: a reused buffer is not refilled,
                    // a new one comes zeroed from the allocator (lazily, by the kernel).
                    if buf.capacity() < len {
                        buf = vec![0; len];
                    } else {
                        buf.resize(len, 0);
                    }
                    file.read_exact_at(&mut buf, start)
                        .map(|()| buf)
                        .map_err(|err| LoadError::Io {
                            src: shown,
                            what: format!("reading bytes {start}..{}", start + len as u64),
                            err,
                        })
                })
                .await
                .map_err(|e| LoadError::Io {
                    src: self.shown().to_owned(),
                    what: "read task".into(),
                    err: std::io::Error::other(e),
                })?
            }
            Self::Remote { client, object } => {
                let (buf, _) = get_range(client, object, start, len, true, buf).await?;
                Ok(buf)
            }
        }
    }

    /// Up to `len` bytes at 0 (fewer if the file is shorter) and the total size when the source
    /// says it (`Content-Range: bytes 0-N/TOTAL`).
    pub(crate) async fn read_prefix(
        self: &Arc<Self>,
        len: usize,
    ) -> Result<(Vec<u8>, Option<u64>), LoadError> {
        match &**self {
            Self::File { len: total, .. } => {
                let take = len.min(usize::try_from(*total).unwrap_or(usize::MAX));
                let buf = self.read_exact(0, take, Vec::new()).await?;
                Ok((buf, Some(*total)))
            }
            Self::Remote { client, object } => {
                get_range(client, object, 0, len, false, Vec::new()).await
            }
        }
    }
}

async fn open_file(path: &Path) -> Result<Reader, LoadError> {
    let shown = path.display().to_string();
    let io = |what: &str, err| LoadError::Io {
        src: shown.clone(),
        what: what.to_owned(),
        err,
    };
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| io("opening", e))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| io("reading metadata", e))?
        .len();
    Ok(Reader::File {
        shown,
        file: Arc::new(file.into_std().await),
        len,
    })
}

fn remote(
    url: &str,
    creds: &brix_artifacts::Credentials,
    opts: &LoadOptions,
) -> Result<Reader, LoadError> {
    let object = RemoteObject::new(url, creds)?;
    let client = client(&opts.limits).map_err(|err| LoadError::Io {
        src: object.shown().to_owned(),
        what: "building the HTTP client".into(),
        err,
    })?;
    Ok(Reader::Remote {
        client,
        object: Box::new(object),
    })
}

/// GET `bytes=start-(start+len-1)`: the server must answer 206 with a matching
/// `Content-Range` and `Content-Length` and exactly that many bytes; when `exact` is false
/// (the header probe) a shorter range clamped at the end of the file is accepted. Returns the
/// bytes and the total size from `Content-Range`.
async fn get_range(
    client: &Client,
    object: &RemoteObject,
    start: u64,
    len: usize,
    exact: bool,
    mut buf: Vec<u8>,
) -> Result<(Vec<u8>, Option<u64>), LoadError> {
    let shown = object.shown();
    let last = start + len as u64 - 1;
    let what = format!("GET bytes={start}-{last}");
    let bad = |why: String| LoadError::Protocol {
        src: shown.to_owned(),
        what: what.clone(),
        why,
    };
    let resp = object
        .request(client, Method::GET)
        .header(RANGE, format!("bytes={start}-{last}"))
        .send()
        .await
        .map_err(|e| network_error(shown, &what, e))?;
    let mut resp = ensure_success(shown, &what, resp).await?;
    if resp.status() != StatusCode::PARTIAL_CONTENT {
        return Err(bad(format!(
            "server ignored Range (HTTP {}); streaming needs ranged GETs",
            resp.status().as_u16()
        )));
    }
    let range = resp
        .headers()
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_content_range)
        .ok_or_else(|| bad("206 without a valid Content-Range".into()))?;
    let (got_start, got_last, total) = range;
    let ok_end = if exact {
        got_last == last
    } else {
        got_last <= last && total.is_none_or(|t| got_last + 1 == t.min(last + 1))
    };
    if got_start != start || !ok_end {
        return Err(bad(format!(
            "Content-Range bytes {got_start}-{got_last} does not match the request"
        )));
    }
    let want = got_last - got_start + 1;
    if let Some(n) = resp.content_length()
        && n != want
    {
        return Err(bad(format!(
            "Content-Length {n} for a range of {want} bytes"
        )));
    }
    let want = usize::try_from(want).map_err(|_| bad("range too large".into()))?;
    buf.clear();
    buf.reserve_exact(want);
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| network_error(shown, &what, e))?
    {
        if buf.len() + chunk.len() > want {
            return Err(bad(format!("server sent more than the {want} bytes asked")));
        }
        buf.extend_from_slice(&chunk);
    }
    if buf.len() != want {
        return Err(bad(format!(
            "short read: the body ended after {} of {want} bytes",
            buf.len()
        )));
    }
    Ok((buf, total))
}

/// `bytes A-B/TOTAL` (TOTAL may be `*`) → (A, B, TOTAL).
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    (a <= b && total.is_none_or(|t| b < t)).then_some((a, b, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses_and_refuses_nonsense() {
        assert_eq!(
            parse_content_range("bytes 0-9/100"),
            Some((0, 9, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        assert_eq!(parse_content_range("bytes 9-5/100"), None);
        assert_eq!(parse_content_range("bytes 0-100/100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
