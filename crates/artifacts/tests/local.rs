//! Local-path artifacts (verified in place) and the cache directory's housekeeping.

mod common;

use brix_artifacts::{ArtifactError, Credentials, Expect, Limits, Store};
use common::{Scratch, adapter};

#[tokio::test]
async fn local_artifacts_are_verified_in_place_and_rehashed_only_on_change() {
    let scratch = Scratch::new("local");
    let dir = scratch.write("a", &adapter(8, "org/base"));
    let store = Store::open(scratch.path().join("cache"), Limits::default()).expect("open");
    let none = Credentials::default();
    let url = dir.to_str().expect("utf8");
    let first = store
        .fetch(url, &none, &Expect::default())
        .await
        .expect("local");
    assert_eq!(first.dir, std::fs::canonicalize(&dir).expect("canonical"));
    assert_eq!(scratch.entries("cache"), ["index.json"], "nothing copied");
    assert_eq!(
        store
            .fetch(url, &none, &Expect::default())
            .await
            .expect("again"),
        first
    );

    // Changed contents (a new size): a new digest.
    std::fs::write(dir.join("README.md"), "# more").expect("write");
    let second = store
        .fetch(url, &none, &Expect::default())
        .await
        .expect("changed");
    assert_ne!(second.digest, first.digest);
    assert!(second.bytes > first.bytes);

    let missing = scratch.path().join("nope");
    let err = store
        .fetch(missing.to_str().expect("utf8"), &none, &Expect::default())
        .await
        .expect_err("missing");
    assert!(
        !err.is_retryable() && err.to_string().contains("cannot open the directory"),
        "{err}"
    );

    let small = Store::open(
        scratch.path().join("cache"),
        Limits {
            max_bytes: 100,
            ..Limits::default()
        },
    )
    .expect("open");
    let err = small
        .fetch(url, &none, &Expect::default())
        .await
        .expect_err("too large");
    assert!(
        matches!(err, ArtifactError::TooLarge { limit: 100, .. }),
        "{err}"
    );
}

#[test]
fn open_removes_what_a_crash_left_and_retain_keeps_what_is_listed() {
    let scratch = Scratch::new("housekeeping");
    let files = adapter(4, "");
    scratch.write("cache/.tmp-123-0", &files);
    scratch.write("cache/sha256-aaaa", &files);
    scratch.write("cache/sha256-bbbb", &files);
    std::fs::write(scratch.path().join("cache/.tmp-index-1.json"), "{").expect("write");
    let store = Store::open(scratch.path().join("cache"), Limits::default()).expect("open");
    assert_eq!(scratch.entries("cache"), ["sha256-aaaa", "sha256-bbbb"]);
    assert_eq!(store.retain(&["sha256-bbbb"]).expect("retain"), 1);
    assert_eq!(scratch.entries("cache"), ["sha256-bbbb"]);
    assert_eq!(store.retain(&["sha256-bbbb"]).expect("again"), 0);
}

#[test]
fn a_store_and_its_fetches_can_move_across_tasks() {
    fn shareable<T: Clone + Send + Sync + 'static>(_: &T) {}
    fn sendable<F: std::future::Future + Send>(_: &F) {}
    let scratch = Scratch::new("send");
    let store = Store::open(scratch.path().join("cache"), Limits::default()).expect("open");
    shareable(&store);
    let (creds, expect) = (Credentials::default(), Expect::default());
    sendable(&store.fetch("s3://b/k", &creds, &expect));
}

#[tokio::test]
async fn a_files_only_store_takes_what_is_not_an_adapter_but_not_nothing() {
    let scratch = Scratch::new("files-only");
    let none = Credentials::default();
    let adapters = Store::open(scratch.path().join("a"), Limits::default()).expect("open");
    let models = Store::open(scratch.path().join("m"), Limits::default())
        .expect("open")
        .files_only();
    let model = scratch.write("model", &[("config.json".into(), b"{}".to_vec())]);
    let model = model.to_str().expect("utf8");
    let err = adapters
        .fetch(model, &none, &Expect::default())
        .await
        .expect_err("not an adapter");
    assert!(matches!(err, ArtifactError::Invalid { .. }), "{err}");
    let got = models
        .fetch(model, &none, &Expect::default())
        .await
        .expect("files only");
    assert_eq!((got.rank, got.bytes), (0, 2));
    let empty = scratch.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let err = models
        .fetch(empty.to_str().expect("utf8"), &none, &Expect::default())
        .await
        .expect_err("empty");
    assert!(err.to_string().contains("no files"), "{err}");
}
