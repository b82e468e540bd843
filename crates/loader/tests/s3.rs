//! `s3://` loads against a real S3-compatible server: moto with IAM checks on, so every ranged
//! GET must carry a valid SigV4 signature (brix-artifacts' signer).
//!
//! moto is found at `$BRIX_MOTO_SERVER`, else `.venv/bin/moto_server` at the repository root,
//! else on `PATH`. Without it the tests fail when `CI` is set and print a loud skip otherwise.

mod common;

use brix_loader::{Credentials, HostSink, LoadError, LoadOptions, Source, load};
use brix_testkit::moto::Moto;
use common::{Scratch, assert_same_as_file, write_model};

/// A user allowed `s3:*`, bucket `models` holding `file` at `m/model.safetensors`, then IAM
/// checks on. Returns the user's key id and secret.
async fn seeded(moto: &Moto, file: Vec<u8>) -> (String, String) {
    let (id, secret) = moto.user().await;
    moto.put("/models", Vec::new()).await;
    moto.put("/models/m/model.safetensors", file).await;
    moto.require_auth().await;
    (id, secret)
}

fn creds(moto: &Moto, id: &str, secret: &str) -> Credentials {
    Credentials::from_map(&moto.env(id, secret))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_signed_ranged_reads_load_the_file() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let scratch = Scratch::new("s3");
    let path = scratch.path().join("m.safetensors");
    write_model(&path, 4);
    let (id, secret) = seeded(&moto, std::fs::read(&path).expect("read")).await;
    let opts = LoadOptions {
        chunk_bytes: 4096,
        concurrency: 4,
        max_buffered_bytes: 16384,
        ..LoadOptions::default()
    };
    let source = Source::S3 {
        url: "s3://models/m/model.safetensors".into(),
        credentials: creds(&moto, &id, &secret),
    };
    let mut sink = HostSink::new();
    let report = load(&source, &mut sink, &opts).await.expect("load");
    assert_same_as_file(&path, &sink, &report);
    assert!(report.peak_buffered_bytes <= opts.max_buffered_bytes);
    assert!(report.chunks > 4, "{} chunks", report.chunks);

    let wrong = Source::S3 {
        url: "s3://models/m/model.safetensors".into(),
        credentials: creds(&moto, &id, "not-the-secret"),
    };
    let err = load(&wrong, &mut HostSink::new(), &opts)
        .await
        .expect_err("wrong secret");
    assert!(matches!(err, LoadError::Remote(_)), "{err}");
    assert!(err.to_string().contains("403"), "{err}");
    assert!(!err.to_string().contains("not-the-secret"), "{err}");
}
