//! `s3://` artifacts against a real S3-compatible server: moto's server with IAM checks on, so
//! every request must carry a valid SigV4 signature from a key moto issued.
//!
//! moto is found at `$BRIX_MOTO_SERVER`, else `.venv/bin/moto_server` at the repository root,
//! else on `PATH` (`pip install 'moto[server]'`; `scripts/test` installs it). Without it the
//! tests fail when `CI` is set and print a loud skip otherwise.

mod common;

use brix_artifacts::{ArtifactError, Credentials, Expect, Limits, Store};
use brix_testkit::moto::Moto;
use common::{Scratch, adapter};

/// A user, a bucket with an adapter under `lora-r8/` (plus a README) and one under
/// `lora-r8x/`; then IAM checks on. Returns the user's key id and secret.
async fn seeded(moto: &Moto) -> (String, String) {
    let (id, secret) = moto.user().await;
    moto.put("/models", Vec::new()).await;
    let mut files = adapter(8, "Qwen/Qwen2.5-0.5B");
    files.push(("README.md".into(), b"# r8".to_vec()));
    for (name, bytes) in files {
        moto.put(&format!("/models/lora-r8/{name}"), bytes).await;
    }
    moto.put("/models/lora-r8x/adapter_config.json", b"{}".to_vec())
        .await;
    moto.require_auth().await;
    (id, secret)
}

fn creds(moto: &Moto, id: &str, secret: &str) -> Credentials {
    Credentials::from_map(&moto.env(id, secret))
}

fn expect() -> Expect {
    Expect {
        base_models: vec!["qwen2.5-0.5b".into()],
        max_rank: Some(64),
    }
}

#[tokio::test]
async fn s3_right_credentials_fetch_and_verify() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let (id, secret) = seeded(&moto).await;
    let creds = creds(&moto, &id, &secret);
    let scratch = Scratch::new("s3-ok");
    let store = Store::open(scratch.path().join("cache"), Limits::default()).expect("open");
    let got = store
        .fetch("s3://models/lora-r8", &creds, &expect())
        .await
        .expect("fetch");
    assert_eq!(
        (got.rank, got.base_model.as_deref()),
        (8, Some("Qwen/Qwen2.5-0.5B"))
    );
    let mut names = scratch.entries(&format!("cache/{}", got.digest));
    names.sort();
    assert_eq!(
        names,
        [
            "README.md",
            "adapter_config.json",
            "adapter_model.safetensors"
        ],
        "not lora-r8x/"
    );
    // Unchanged listing: served from the cache, same digest.
    let again = store
        .fetch("s3://models/lora-r8/", &creds, &expect())
        .await
        .expect("again");
    assert_eq!(again, got);
}

#[tokio::test]
async fn s3_lists_every_page() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let (id, secret) = seeded(&moto).await;
    let creds = creds(&moto, &id, &secret);
    let scratch = Scratch::new("s3-pages");
    let store = Store::open(scratch.path().join("cache"), Limits::default())
        .expect("open")
        .with_s3_page_size(1);
    let got = store
        .fetch("s3://models/lora-r8", &creds, &expect())
        .await
        .expect("fetch");
    assert_eq!(
        scratch.entries(&format!("cache/{}", got.digest)).len(),
        3,
        "three pages of one key"
    );
}

#[tokio::test]
async fn s3_wrong_secret_is_a_403_that_is_not_retried() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let (id, _) = seeded(&moto).await;
    let wrong = creds(&moto, &id, "not-the-secret");
    let scratch = Scratch::new("s3-403");
    let store = Store::open(scratch.path().join("cache"), Limits::default()).expect("open");
    let err = store
        .fetch("s3://models/lora-r8", &wrong, &expect())
        .await
        .expect_err("403");
    let text = err.to_string();
    assert!(
        matches!(err, ArtifactError::Status { status: 403, .. }),
        "{text}"
    );
    assert!(!err.is_retryable(), "{text}");
    assert!(
        text.starts_with("s3://models/lora-r8: ListObjectsV2: HTTP 403 Forbidden"),
        "{text}"
    );
    assert!(!text.contains("not-the-secret"), "{text}");
}

#[tokio::test]
async fn s3_missing_prefix_has_no_objects() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let (id, secret) = seeded(&moto).await;
    let creds = creds(&moto, &id, &secret);
    let scratch = Scratch::new("s3-missing");
    let store = Store::open(scratch.path().join("cache"), Limits::default()).expect("open");
    let err = store
        .fetch("s3://models/nope", &creds, &expect())
        .await
        .expect_err("none");
    assert!(matches!(err, ArtifactError::NoObjects { .. }), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(
        err.to_string(),
        "s3://models/nope: no objects under this prefix"
    );
}
