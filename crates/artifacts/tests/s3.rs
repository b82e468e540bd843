//! `s3://` artifacts against a real S3-compatible server: moto's server with IAM checks on, so
//! every request must carry a valid SigV4 signature from a key moto issued.
//!
//! moto is found at `$BRIX_MOTO_SERVER`, else `.venv/bin/moto_server` at the repository root,
//! else on `PATH` (`pip install 'moto[server]'`; `scripts/test` installs it). Without it the
//! tests fail when `CI` is set and print a loud skip otherwise.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use brix_artifacts::{ArtifactError, Credentials, Expect, Limits, Store};
use common::{Scratch, adapter};

/// A moto server process on a free port, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
    http: reqwest::Client,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_executable() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BRIX_MOTO_SERVER") {
        return Some(PathBuf::from(path));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("moto_server"))
        .find(|p| p.is_file())
}

/// A fake SigV4 header naming `service`: with IAM checks still off, moto routes by it and
/// checks nothing, which is how the test sets up users and objects.
fn routed_to(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIASETUP/20240101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host, Signature=0"
    )
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    let start = text.find(open).expect(open) + open.len();
    let len = text[start..].find(close).expect(close);
    &text[start..start + len]
}

impl Moto {
    /// Starts moto, or returns `None` (after a loud skip) when it is not installed and `CI`
    /// is unset.
    async fn start() -> Option<Self> {
        let Some(exe) = moto_executable() else {
            let why = "moto_server not found (set BRIX_MOTO_SERVER or pip install 'moto[server]')";
            assert!(std::env::var_os("CI").is_none(), "{why}");
            // Straight to stderr: libtest captures eprintln! of passing tests.
            let line = format!("\n!!!!!!!! SKIPPED (not run): {why} !!!!!!!!\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            http,
        };
        let ready = format!("{}/moto-api/data.json", moto.endpoint);
        let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
        while moto.http.get(&ready).send().await.is_err() {
            assert!(
                tokio::time::Instant::now() < give_up,
                "moto did not start within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(moto)
    }

    async fn iam(&self, form: &[(&str, &str)]) -> String {
        let resp = self
            .http
            .post(&self.endpoint)
            .header("authorization", routed_to("iam"))
            .form(form)
            .send()
            .await
            .expect("iam");
        assert!(resp.status().is_success(), "{form:?}: {}", resp.status());
        resp.text().await.expect("iam body")
    }

    /// An IAM user allowed `s3:*`; returns (access key id, secret).
    async fn user(&self) -> (String, String) {
        let v = ("Version", "2010-05-08");
        self.iam(&[("Action", "CreateUser"), ("UserName", "brix"), v])
            .await;
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", "brix"),
            ("PolicyName", "s3"),
            ("PolicyDocument", policy),
            v,
        ])
        .await;
        let key = self
            .iam(&[("Action", "CreateAccessKey"), ("UserName", "brix"), v])
            .await;
        let id = between(&key, "<AccessKeyId>", "</AccessKeyId>").to_owned();
        let secret = between(&key, "<SecretAccessKey>", "</SecretAccessKey>").to_owned();
        (id, secret)
    }

    async fn s3(&self, method: reqwest::Method, path: &str, body: Vec<u8>) {
        let resp = self
            .http
            .request(method.clone(), format!("{}{path}", self.endpoint))
            .header("authorization", routed_to("s3"))
            .body(body)
            .send()
            .await
            .expect("s3");
        assert!(
            resp.status().is_success(),
            "{method} {path}: {}",
            resp.status()
        );
    }

    /// Every later request must be signed by a known key (moto's IAM checks).
    async fn require_auth(&self) {
        let url = format!("{}/moto-api/reset-auth", self.endpoint);
        let resp = self
            .http
            .post(url)
            .body("0")
            .send()
            .await
            .expect("reset-auth");
        assert!(resp.status().is_success(), "reset-auth: {}", resp.status());
    }

    /// A user, a bucket with an adapter under `lora-r8/` (plus a README) and one under
    /// `lora-r8x/`; then IAM checks on. Returns the user's key id and secret.
    async fn seeded(&self) -> (String, String) {
        let (id, secret) = self.user().await;
        self.s3(reqwest::Method::PUT, "/models", Vec::new()).await;
        let mut files = adapter(8, "Qwen/Qwen2.5-0.5B");
        files.push(("README.md".into(), b"# r8".to_vec()));
        for (name, bytes) in files {
            self.s3(
                reqwest::Method::PUT,
                &format!("/models/lora-r8/{name}"),
                bytes,
            )
            .await;
        }
        self.s3(
            reqwest::Method::PUT,
            "/models/lora-r8x/adapter_config.json",
            b"{}".to_vec(),
        )
        .await;
        self.require_auth().await;
        (id, secret)
    }

    fn creds(&self, id: &str, secret: &str) -> Credentials {
        let map: BTreeMap<String, String> = [
            ("AWS_ACCESS_KEY_ID", id),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Credentials::from_map(&map)
    }
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
    let (id, secret) = moto.seeded().await;
    let creds = moto.creds(&id, &secret);
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
    let (id, secret) = moto.seeded().await;
    let creds = moto.creds(&id, &secret);
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
    let (id, _) = moto.seeded().await;
    let wrong = moto.creds(&id, "not-the-secret");
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
    let (id, secret) = moto.seeded().await;
    let creds = moto.creds(&id, &secret);
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
