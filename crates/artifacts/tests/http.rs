//! `http(s)://` and `huggingface://` artifacts against a real HTTP server on 127.0.0.1:0:
//! download once, revalidate cheaply, verify, bound size and time, share concurrent fetches.

mod common;

use std::collections::BTreeMap;

use brix_artifacts::{ArtifactError, Credentials, Expect, Limits, Store};
use common::{FileServer, Reply, Scratch, adapter, quick_limits, stalled_server};

fn creds(pairs: &[(&str, &str)]) -> Credentials {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Credentials::from_map(&map)
}

/// Nothing but these digest directories (and the index): no temp dirs, no partial artifacts.
fn cache_holds(scratch: &Scratch, digests: &[&str]) {
    let got: Vec<String> = scratch
        .entries("cache")
        .into_iter()
        .filter(|n| n != "index.json")
        .collect();
    let mut want: Vec<String> = digests.iter().map(|d| d.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "cache directory contents");
}

#[tokio::test]
async fn http_downloads_once_revalidates_and_refetches_on_change() {
    let scratch = Scratch::new("http-once");
    let server = FileServer::start().await;
    let v1 = adapter(8, "org/Tiny-Llama");
    server.put_files("/a", &v1, "v1");
    let store = Store::open(scratch.path().join("cache"), Limits::default()).expect("open");
    let expect = Expect {
        base_models: vec!["/models/tiny-llama".into()],
        max_rank: Some(16),
    };
    let url = server.url("/a/");

    let first = store
        .fetch(&url, &Credentials::default(), &expect)
        .await
        .expect("first fetch");
    assert_eq!(
        (first.rank, first.base_model.as_deref()),
        (8, Some("org/Tiny-Llama"))
    );
    assert_eq!(first.dir, scratch.path().join("cache").join(&first.digest));
    assert_eq!(
        first.bytes,
        v1.iter().map(|(_, b)| b.len() as u64).sum::<u64>()
    );
    for (name, bytes) in &v1 {
        assert_eq!(
            &std::fs::read(first.dir.join(name)).expect("file"),
            bytes,
            "{name}"
        );
    }

    let second = store
        .fetch(&url, &Credentials::default(), &expect)
        .await
        .expect("second fetch");
    assert_eq!(second, first);
    assert_eq!(
        server.count("GET /a/adapter_model.safetensors"),
        1,
        "{:?}",
        server.log()
    );
    assert_eq!(
        server.count("HEAD /a/adapter_model.safetensors"),
        1,
        "revalidated with a HEAD"
    );

    // The same files from a local directory have the same digest (content addressed).
    let local_dir = scratch.write("local", &v1);
    let local = store
        .fetch(
            local_dir.to_str().expect("utf8"),
            &Credentials::default(),
            &expect,
        )
        .await
        .expect("local");
    assert_eq!(local.digest, first.digest);
    assert_eq!(
        local.dir,
        std::fs::canonicalize(&local_dir).expect("canonical"),
        "verified in place"
    );

    // New content (new ETag): downloaded again, a new digest; retain drops the old one.
    let v2 = adapter(4, "org/Tiny-Llama");
    server.put_files("/a", &v2, "v2");
    let third = store
        .fetch(&url, &Credentials::default(), &expect)
        .await
        .expect("third");
    assert_ne!(third.digest, first.digest);
    assert_eq!(third.rank, 4);
    assert_eq!(server.count("GET /a/adapter_model.safetensors"), 2);
    assert_eq!(store.retain(&[third.digest.as_str()]).expect("retain"), 1);
    cache_holds(&scratch, &[&third.digest]);

    // A fresh Store on the same directory remembers the URL (index.json).
    let reopened = Store::open(scratch.path().join("cache"), Limits::default()).expect("reopen");
    let again = reopened
        .fetch(&url, &Credentials::default(), &expect)
        .await
        .expect("reopened");
    assert_eq!(again.digest, third.digest);
    assert_eq!(
        server.count("GET /a/adapter_model.safetensors"),
        2,
        "no download after reopen"
    );
}

#[tokio::test]
async fn concurrent_fetches_of_one_url_share_one_download() {
    let scratch = Scratch::new("http-concurrent");
    let server = FileServer::start().await;
    server.put_files("/c", &adapter(8, ""), "v1");
    let store = Store::open(scratch.path().join("cache"), Limits::default()).expect("open");
    let url = server.url("/c");
    let none = Credentials::default();
    let expect = Expect::default();
    let other = store.clone();
    let (a, b, c) = tokio::join!(
        store.fetch(&url, &none, &expect),
        other.fetch(&url, &none, &expect),
        store.fetch(&url, &none, &expect),
    );
    let (a, b, c) = (a.expect("a"), b.expect("b"), c.expect("c"));
    assert!(a == b && b == c);
    assert_eq!(
        server.count("GET /c/adapter_model.safetensors"),
        1,
        "{:?}",
        server.log()
    );
}

#[tokio::test]
async fn http_falls_back_to_the_bin_weights_and_names_failures() {
    let scratch = Scratch::new("http-bin");
    let server = FileServer::start().await;
    let mut files = adapter(16, "base");
    files[1] = ("adapter_model.bin".into(), b"pickled tensors".to_vec());
    server.put_files("/bin", &files, "v1");
    let store = Store::open(scratch.path().join("cache"), Limits::default()).expect("open");
    let none = Credentials::default();
    let got = store
        .fetch(&server.url("/bin/"), &none, &Expect::default())
        .await
        .expect("bin");
    assert!(got.dir.join("adapter_model.bin").is_file());

    // Rank above the engines' limit: refused, not retryable, nothing cached for it.
    let tight = Expect {
        base_models: vec![],
        max_rank: Some(8),
    };
    let err = store
        .fetch(&server.url("/bin/"), &none, &tight)
        .await
        .expect_err("rank");
    assert!(!err.is_retryable());
    assert!(
        err.to_string()
            .contains("rank 16 exceeds the engines' max_rank 8"),
        "{err}"
    );

    // 404 on the config: not retryable; the message names the URL without its query string.
    let err = store
        .fetch(
            &server.url("/missing/?X-Amz-Signature=s3cr3t"),
            &none,
            &Expect::default(),
        )
        .await
        .expect_err("404");
    let text = err.to_string();
    assert!(!err.is_retryable(), "{text}");
    assert!(
        text.contains("/missing/: GET adapter_config.json: HTTP 404 Not Found"),
        "{text}"
    );
    assert!(!text.contains("s3cr3t") && !text.contains('\n'), "{text}");

    // 503: retryable.
    server.set("/down/adapter_config.json", Reply::Status(503));
    let err = store
        .fetch(&server.url("/down/"), &none, &Expect::default())
        .await
        .expect_err("503");
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(err, ArtifactError::Status { status: 503, .. }),
        "{err}"
    );

    let err = store
        .fetch("gcs://bucket/lora", &none, &Expect::default())
        .await
        .expect_err("gcs");
    assert!(!err.is_retryable());
    assert_eq!(err.reason(), "Unsupported");
    assert!(
        err.to_string()
            .contains("gcs:// artifacts are not supported yet"),
        "{err}"
    );
    cache_holds(&scratch, &[&got.digest]);
}

#[tokio::test]
async fn oversize_and_truncated_downloads_fail_cleanly() {
    let scratch = Scratch::new("http-limits");
    let server = FileServer::start().await;
    let limits = quick_limits(); // 1 MiB
    let big = common::safetensors(&[("t", 2 << 20)]);
    let config = adapter(8, "").remove(0);
    // Announced size over the limit (Content-Length) and streamed without one.
    server.put_files(
        "/big",
        &[
            config.clone(),
            ("adapter_model.safetensors".into(), big.clone()),
        ],
        "v1",
    );
    server.put_files("/stream", std::slice::from_ref(&config), "v1");
    server.set("/stream/adapter_model.safetensors", Reply::Chunked(big));
    let store = Store::open(scratch.path().join("cache"), limits).expect("open");
    let none = Credentials::default();
    for path in ["/big/", "/stream/"] {
        let err = store
            .fetch(&server.url(path), &none, &Expect::default())
            .await
            .expect_err(path);
        assert!(
            matches!(err, ArtifactError::TooLarge { limit, .. } if limit == 1 << 20),
            "{err}"
        );
        assert!(!err.is_retryable());
        assert!(
            err.to_string()
                .contains("larger than the limit of 1048576 bytes"),
            "{err}"
        );
    }
    // Weights cut short (the header names more bytes than arrived): invalid, nothing cached.
    let mut cut = common::safetensors(&[("t", 4096)]);
    cut.truncate(cut.len() - 100);
    server.put_files(
        "/cut",
        &[config, ("adapter_model.safetensors".into(), cut)],
        "v1",
    );
    let err = store
        .fetch(&server.url("/cut/"), &none, &Expect::default())
        .await
        .expect_err("cut");
    assert!(err.to_string().contains("(truncated?)"), "{err}");
    cache_holds(&scratch, &[]);
}

#[tokio::test]
async fn a_stalled_server_hits_the_read_timeout() {
    let scratch = Scratch::new("http-stall");
    let addr = stalled_server().await;
    let store = Store::open(scratch.path().join("cache"), quick_limits()).expect("open");
    let url = format!("http://{addr}/stuck/");
    let err = store
        .fetch(&url, &Credentials::default(), &Expect::default())
        .await
        .expect_err("stall");
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.reason(), "NetworkError");
    let text = err.to_string();
    assert!(
        text.contains("GET adapter_config.json") && text.contains("timed out"),
        "{text}"
    );
    cache_holds(&scratch, &[]);
}

#[tokio::test]
async fn huggingface_layout_with_revision_and_bearer_token() {
    let scratch = Scratch::new("hf");
    let server = FileServer::start().await;
    server.require_bearer("hf_secret");
    let files = adapter(8, "meta-llama/Llama-3.2-1B");
    let mut siblings: Vec<serde_json::Value> = files
        .iter()
        .map(|(n, _)| serde_json::json!({"rfilename": n}))
        .collect();
    siblings.push(serde_json::json!({"rfilename": "docs/README.md"}));
    for (rev, sha) in [("v1", "abc123"), ("main", "def456")] {
        let info = serde_json::json!({"id": "org/repo", "sha": sha, "siblings": siblings});
        let info = serde_json::to_vec(&info).expect("json");
        server.set(
            &format!("/api/models/org/repo/revision/{rev}"),
            Reply::File(info, "\"i\"".into()),
        );
        server.put_files(&format!("/org/repo/resolve/{rev}"), &files, rev);
        server.set(
            &format!("/org/repo/resolve/{rev}/docs/README.md"),
            Reply::File(b"# hi".to_vec(), "\"r\"".into()),
        );
    }
    // Like the hub's large files: the weights answer with a redirect (to its CDN).
    server.set(
        "/org/repo/resolve/v1/adapter_model.safetensors",
        Reply::Redirect("/cdn/abc123/weights".into()),
    );
    server.set(
        "/cdn/abc123/weights",
        Reply::File(files[1].1.clone(), "\"w\"".into()),
    );
    let store = Store::open(scratch.path().join("cache"), Limits::default()).expect("open");
    let hub = creds(&[("HF_ENDPOINT", &server.url("")), ("HF_TOKEN", "hf_secret")]);
    let expect = Expect {
        base_models: vec!["Llama-3.2-1B".into()],
        max_rank: None,
    };

    let got = store
        .fetch("huggingface://org/repo@v1", &hub, &expect)
        .await
        .expect("hf v1");
    assert_eq!(got.rank, 8);
    assert_eq!(
        std::fs::read(got.dir.join("docs/README.md")).expect("nested"),
        b"# hi"
    );
    assert_eq!(
        server.count("GET /org/repo/resolve/v1/adapter_model.safetensors"),
        1
    );
    assert_eq!(
        server.count("GET /cdn/abc123/weights"),
        1,
        "followed the redirect"
    );
    // Same commit on the second fetch: one API call, no download.
    let again = store
        .fetch("huggingface://org/repo@v1", &hub, &expect)
        .await
        .expect("again");
    assert_eq!(again, got);
    assert_eq!(server.count("GET /api/models/org/repo/revision/v1"), 2);
    assert_eq!(
        server.count("GET /org/repo/resolve/v1/adapter_model.safetensors"),
        1
    );
    // Without @revision: HF_REVISION, else main.
    let main = store
        .fetch("huggingface://org/repo", &hub, &expect)
        .await
        .expect("main");
    assert_eq!(main.digest, got.digest, "same files, same digest");
    assert_eq!(server.count("GET /api/models/org/repo/revision/main"), 1);

    // A wrong token: 401, not retryable, and the token is not in the message.
    let wrong = creds(&[("HF_ENDPOINT", &server.url("")), ("HF_TOKEN", "hf_wrong")]);
    let err = store
        .fetch("huggingface://org/repo@v1", &wrong, &expect)
        .await;
    // The cached copy is served only when the source is unreachable, never past a refusal.
    let err = err.expect_err("401");
    assert!(
        !err.is_retryable() && err.to_string().contains("HTTP 401"),
        "{err}"
    );
    assert!(!err.to_string().contains("hf_wrong"), "{err}");

    // A repository listing a file that would escape the directory is refused.
    let evil = serde_json::json!({"sha": "e", "siblings": [{"rfilename": "../../etc/x"}]});
    server.set(
        "/api/models/org/evil/revision/main",
        Reply::File(serde_json::to_vec(&evil).expect("json"), "\"e\"".into()),
    );
    let err = store
        .fetch("huggingface://org/evil", &hub, &expect)
        .await
        .expect_err("evil");
    assert!(
        err.to_string().contains("unsafe file name '../../etc/x'"),
        "{err}"
    );
}
