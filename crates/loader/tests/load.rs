//! Loads from a local file and a real HTTP server on 127.0.0.1, checked against the
//! safetensors crate; bounded memory; every broken-server case is a clear error.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use brix_loader::{DiscardSink, HostSink, LoadError, LoadOptions, Source, load};
use common::server::{Mode, serve_file};
use common::{Scratch, assert_same_as_file, write_model};

fn small_chunks() -> LoadOptions {
    LoadOptions {
        chunk_bytes: 1000, // cuts tensors across chunks
        concurrency: 4,
        max_buffered_bytes: 8000,
        ..LoadOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_load_equals_the_safetensors_crate() {
    let scratch = Scratch::new("file");
    let path = scratch.path().join("m.safetensors");
    write_model(&path, 3);
    for opts in [LoadOptions::default(), small_chunks()] {
        let mut sink = HostSink::new();
        let report = load(&Source::File(path.clone()), &mut sink, &opts)
            .await
            .expect("load");
        assert_same_as_file(&path, &sink, &report);
        assert!(report.peak_buffered_bytes <= opts.max_buffered_bytes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_streams_in_bounded_memory() {
    let scratch = Scratch::new("http");
    let path = scratch.path().join("m.safetensors");
    write_model(&path, 8);
    let server = serve_file(path.clone(), Mode::Ranges).await;
    let opts = small_chunks();
    let mut sink = HostSink::new();
    let report = load(&Source::Http(server.url.clone()), &mut sink, &opts)
        .await
        .expect("load");
    assert_same_as_file(&path, &sink, &report);
    let data_len = report.bytes as usize;
    assert!(
        report.peak_buffered_bytes <= opts.max_buffered_bytes,
        "peak {} over the bound",
        report.peak_buffered_bytes
    );
    assert!(report.peak_buffered_bytes > 0);
    assert!(
        data_len > 10 * opts.max_buffered_bytes,
        "the file ({data_len} B) is far larger than the bound"
    );
    assert_eq!(report.chunks, data_len.div_ceil(opts.chunk_bytes));
    // One probe for the header, then one ranged GET per chunk.
    assert_eq!(server.requests.load(Ordering::Relaxed), report.chunks + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_longer_than_the_first_read_is_read_in_two() {
    let scratch = Scratch::new("big-header");
    let path = scratch.path().join("m.safetensors");
    let data = common::bytes(4096, 9);
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![4096], &data)
        .expect("view");
    // 1.5 MB of metadata: more than the 1 MiB first read.
    let meta = [("notes".to_owned(), "x".repeat(1_500_000))]
        .into_iter()
        .collect();
    safetensors::serialize_to_file([("w", view)], Some(meta), &path).expect("write");
    let server = serve_file(path.clone(), Mode::Ranges).await;
    let mut sink = HostSink::new();
    let report = load(
        &Source::Http(server.url.clone()),
        &mut sink,
        &LoadOptions::default(),
    )
    .await
    .expect("load");
    assert_same_as_file(&path, &sink, &report);
    assert!(report.header_bytes > 1 << 20);
    assert_eq!(
        sink.header().map(|h| h.metadata["notes"].len()),
        Some(1_500_000)
    );
    // The probe, the rest of the header, one chunk.
    assert_eq!(server.requests.load(Ordering::Relaxed), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_below_the_chunk_size_cuts_the_chunks() {
    let scratch = Scratch::new("tiny-bound");
    let path = scratch.path().join("m.safetensors");
    write_model(&path, 1);
    let server = serve_file(path.clone(), Mode::Ranges).await;
    let opts = LoadOptions {
        chunk_bytes: 1 << 20,
        max_buffered_bytes: 777,
        ..LoadOptions::default()
    };
    let mut sink = HostSink::new();
    let report = load(&Source::Http(server.url.clone()), &mut sink, &opts)
        .await
        .expect("load");
    assert_same_as_file(&path, &sink, &report);
    assert!(report.peak_buffered_bytes <= 777);
    assert_eq!(report.chunks, (report.bytes as usize).div_ceil(777));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_range_is_refused() {
    let scratch = Scratch::new("norange");
    let path = scratch.path().join("m.safetensors");
    write_model(&path, 1);
    let server = serve_file(path, Mode::IgnoreRange).await;
    let err = load(
        &Source::Http(server.url.clone()),
        &mut DiscardSink::default(),
        &LoadOptions::default(),
    )
    .await
    .expect_err("must fail");
    assert!(matches!(err, LoadError::Protocol { .. }), "{err}");
    assert!(err.to_string().contains("ignored Range"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_is_an_error() {
    let scratch = Scratch::new("truncate");
    let path = scratch.path().join("m.safetensors");
    write_model(&path, 4);
    let server = serve_file(path, Mode::Truncate).await;
    let err = load(
        &Source::Http(server.url.clone()),
        &mut DiscardSink::default(),
        &small_chunks(),
    )
    .await
    .expect_err("must fail");
    assert!(
        matches!(err, LoadError::Remote(_) | LoadError::Protocol { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_errors_are_retried_and_then_reported() {
    let scratch = Scratch::new("flaky");
    let path = scratch.path().join("m.safetensors");
    write_model(&path, 2);
    let server = serve_file(path.clone(), Mode::Flaky).await;
    let opts = LoadOptions {
        concurrency: 1, // so every chunk meets a 503 first
        ..small_chunks()
    };
    let mut sink = HostSink::new();
    let report = load(&Source::Http(server.url.clone()), &mut sink, &opts)
        .await
        .expect("retried");
    assert_same_as_file(&path, &sink, &report);
    assert!(server.requests.load(Ordering::Relaxed) > 2 * report.chunks);
    let no_retry = LoadOptions { retries: 0, ..opts };
    let err = load(
        &Source::Http(server.url.clone()),
        &mut DiscardSink::default(),
        &no_retry,
    )
    .await
    .expect_err("a 503 without retries");
    assert!(
        err.is_retryable() && err.to_string().contains("503"),
        "{err}"
    );
}

#[tokio::test]
async fn a_truncated_file_fails_before_loading() {
    let scratch = Scratch::new("short-file");
    let path = scratch.path().join("m.safetensors");
    write_model(&path, 1);
    let full = std::fs::read(&path).expect("read");
    std::fs::write(&path, &full[..full.len() - 10]).expect("truncate");
    let mut sink = DiscardSink::default();
    let err = load(&Source::File(path), &mut sink, &LoadOptions::default())
        .await
        .expect_err("must fail");
    assert!(matches!(err, LoadError::Header { .. }), "{err}");
    assert!(err.to_string().contains("header describes"), "{err}");
    assert_eq!(sink.bytes, 0, "nothing loaded");
}

#[tokio::test]
async fn oversized_or_malformed_headers_are_refused() {
    let scratch = Scratch::new("bad-header");
    let path = scratch.path().join("m.safetensors");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        ((1u64 << 40).to_le_bytes().to_vec(), "over the limit"),
        (vec![1, 2, 3], "no 8-byte length"),
        (
            [&(20u64).to_le_bytes()[..], b"{\"a\":1}"].concat(),
            "the file has",
        ),
        (
            [&(7u64).to_le_bytes()[..], b"{\"a\":1}"].concat(),
            "tensor 'a'",
        ),
    ];
    for (bytes, why) in cases {
        std::fs::write(&path, &bytes).expect("write");
        let err = load(
            &Source::File(path.clone()),
            &mut DiscardSink::default(),
            &LoadOptions::default(),
        )
        .await
        .expect_err(why);
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
    let opts = LoadOptions {
        max_data_bytes: 100,
        ..LoadOptions::default()
    };
    write_model(&path, 1);
    let err = load(&Source::File(path), &mut DiscardSink::default(), &opts)
        .await
        .expect_err("data limit");
    assert!(err.to_string().contains("over the limit"), "{err}");
}

/// A raw TCP server that answers every request with `respond(request)` and then behaves as
/// `after` says.
async fn raw_server(
    head: String,
    body: Vec<u8>,
    stall: bool,
) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/m.safetensors",
        listener.local_addr().expect("addr")
    );
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut req = vec![0; 4096];
            let _ = conn.read(&mut req).await;
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(&body).await;
            if stall {
                held.push(conn); // keep it open, send nothing more
            }
        }
    });
    (url, task)
}

fn model_bytes(scratch: &Scratch) -> Vec<u8> {
    let path = scratch.path().join("m.safetensors");
    write_model(&path, 1);
    std::fs::read(path).expect("read")
}

#[tokio::test]
async fn a_server_that_lies_about_content_length_is_an_error() {
    let scratch = Scratch::new("liar");
    let file = model_bytes(&scratch);
    let n = file.len();
    // Claims the whole file but sends half, then closes.
    let head = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-{}/{n}\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n",
        n - 1
    );
    let (url, task) = raw_server(head, file[..n / 2].to_vec(), false).await;
    let err = load(
        &Source::Http(url),
        &mut DiscardSink::default(),
        &LoadOptions::default(),
    )
    .await
    .expect_err("must fail");
    assert!(matches!(err, LoadError::Remote(_)), "{err}");
    task.abort();
    // A Content-Length that disagrees with the Content-Range.
    let head = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-{}/{n}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        n - 1,
        n + 5
    );
    let (url, task) = raw_server(head, file.clone(), false).await;
    let err = load(
        &Source::Http(url),
        &mut DiscardSink::default(),
        &LoadOptions::default(),
    )
    .await
    .expect_err("must fail");
    assert!(err.to_string().contains("Content-Length"), "{err}");
    task.abort();
    // No Content-Length, more bytes than the range.
    let head = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-{}/{n}\r\nConnection: close\r\n\r\n",
        n - 1
    );
    let mut more = file.clone();
    more.extend_from_slice(b"trailing garbage");
    let (url, task) = raw_server(head, more, false).await;
    let err = load(
        &Source::Http(url),
        &mut DiscardSink::default(),
        &LoadOptions::default(),
    )
    .await
    .expect_err("must fail");
    assert!(err.to_string().contains("more than"), "{err}");
    task.abort();
}

#[tokio::test]
async fn a_stalled_server_times_out() {
    let scratch = Scratch::new("stall");
    let file = model_bytes(&scratch);
    let n = file.len();
    let head = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-{}/{n}\r\nContent-Length: {n}\r\n\r\n",
        n - 1
    );
    let (url, task) = raw_server(head, file[..100].to_vec(), true).await;
    let mut opts = LoadOptions::default();
    opts.limits.read_idle_timeout = Duration::from_millis(300);
    let err = load(&Source::Http(url), &mut DiscardSink::default(), &opts)
        .await
        .expect_err("must fail");
    assert!(matches!(err, LoadError::Remote(_)), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    task.abort();
}
