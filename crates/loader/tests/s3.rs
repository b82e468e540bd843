//! `s3://` loads against a real S3-compatible server: moto with IAM checks on, so every ranged
//! GET must carry a valid SigV4 signature (brix-artifacts' signer).
//!
//! moto is found at `$BRIX_MOTO_SERVER`, else `.venv/bin/moto_server` at the repository root,
//! else on `PATH`. Without it the tests fail when `CI` is set and print a loud skip otherwise.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use brix_loader::{Credentials, HostSink, LoadError, LoadOptions, Source, load};
use common::{Scratch, assert_same_as_file, write_model};

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

/// A fake SigV4 header naming `service`: with IAM checks still off, moto routes by it.
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
    async fn start() -> Option<Self> {
        let Some(exe) = moto_executable() else {
            let why = "moto_server not found (set BRIX_MOTO_SERVER or pip install 'moto[server]')";
            assert!(std::env::var_os("CI").is_none(), "{why}");
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
            .timeout(Duration::from_secs(30))
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

    async fn put(&self, path: &str, body: Vec<u8>) {
        let resp = self
            .http
            .put(format!("{}{path}", self.endpoint))
            .header("authorization", routed_to("s3"))
            .body(body)
            .send()
            .await
            .expect("s3");
        assert!(resp.status().is_success(), "PUT {path}: {}", resp.status());
    }

    /// A user allowed `s3:*`, bucket `models` holding `file` at `m/model.safetensors`, then
    /// IAM checks on. Returns the user's key id and secret.
    async fn seeded(&self, file: Vec<u8>) -> (String, String) {
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
        self.put("/models", Vec::new()).await;
        self.put("/models/m/model.safetensors", file).await;
        let resp = self
            .http
            .post(format!("{}/moto-api/reset-auth", self.endpoint))
            .body("0")
            .send()
            .await
            .expect("reset-auth");
        assert!(resp.status().is_success(), "reset-auth: {}", resp.status());
        (
            between(&key, "<AccessKeyId>", "</AccessKeyId>").to_owned(),
            between(&key, "<SecretAccessKey>", "</SecretAccessKey>").to_owned(),
        )
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_signed_ranged_reads_load_the_file() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let scratch = Scratch::new("s3");
    let path = scratch.path().join("m.safetensors");
    write_model(&path, 4);
    let (id, secret) = moto.seeded(std::fs::read(&path).expect("read")).await;
    let opts = LoadOptions {
        chunk_bytes: 4096,
        concurrency: 4,
        max_buffered_bytes: 16384,
        ..LoadOptions::default()
    };
    let source = Source::S3 {
        url: "s3://models/m/model.safetensors".into(),
        credentials: moto.creds(&id, &secret),
    };
    let mut sink = HostSink::new();
    let report = load(&source, &mut sink, &opts).await.expect("load");
    assert_same_as_file(&path, &sink, &report);
    assert!(report.peak_buffered_bytes <= opts.max_buffered_bytes);
    assert!(report.chunks > 4, "{} chunks", report.chunks);

    let wrong = Source::S3 {
        url: "s3://models/m/model.safetensors".into(),
        credentials: moto.creds(&id, "not-the-secret"),
    };
    let err = load(&wrong, &mut HostSink::new(), &opts)
        .await
        .expect_err("wrong secret");
    assert!(matches!(err, LoadError::Remote(_)), "{err}");
    assert!(err.to_string().contains("403"), "{err}");
    assert!(!err.to_string().contains("not-the-secret"), "{err}");
}
