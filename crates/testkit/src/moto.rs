//! A real S3-compatible server for tests: moto's server on a free port, so `s3://` code is
//! tested over real sockets with real SigV4 checks (after [`Moto::require_auth`]).
//!
//! moto is found at `$BRIX_MOTO_SERVER`, else `.venv/bin/moto_server` at the repository root,
//! else on `PATH` (`pip install 'moto[server]'`; `scripts/test` installs it). Without it
//! [`Moto::start`] fails the test when `CI` is set and prints a loud skip otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A moto server process on a free port, killed on drop.
pub struct Moto {
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

/// Where moto's server is installed, so tests need no setup beyond `scripts/test`'s.
pub fn moto_executable() -> Option<PathBuf> {
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
/// checks nothing, which is how tests set up users and objects.
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
    /// is unset; panics when it is installed but does not come up.
    pub async fn start() -> Option<Self> {
        let Some(exe) = moto_executable() else {
            let why = "moto_server not found (set BRIX_MOTO_SERVER or pip install 'moto[server]')";
            assert!(std::env::var_os("CI").is_none(), "{why}");
            // Straight to stderr: libtest captures eprintln! of passing tests.
            let line = format!("\n!!!!!!!! SKIPPED (not run): {why} !!!!!!!!\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            return None;
        };
        Some(
            Self::launch(&exe, Duration::from_secs(30))
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        )
    }

    /// Starts the moto at `exe` with `request_timeout` on its setup requests (benches upload
    /// large objects); an error says why it did not come up within 60 s.
    pub async fn launch(exe: &Path, request_timeout: Duration) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let child = Command::new(exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", exe.display()))?;
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            http,
        };
        let ready = format!("{}/moto-api/data.json", moto.endpoint);
        let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
        while moto.http.get(&ready).send().await.is_err() {
            if tokio::time::Instant::now() >= give_up {
                return Err("moto did not start within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(moto)
    }

    /// Its base URL (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
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

    /// An IAM user `brix` allowed `s3:*`; returns (access key id, secret).
    pub async fn user(&self) -> (String, String) {
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

    /// Sends an S3 request (`PUT /bucket` creates it, `PUT /bucket/key` writes an object)
    /// before [`Moto::require_auth`]; an error names the request.
    pub async fn try_s3(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(), String> {
        let resp = self
            .http
            .request(method.clone(), format!("{}{path}", self.endpoint))
            .header("authorization", routed_to("s3"))
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("{method} {path}: {}", resp.status()))
        }
    }

    /// [`Moto::try_s3`] with `PUT`, failing the test on error.
    pub async fn put(&self, path: &str, body: Vec<u8>) {
        let put = self.try_s3(reqwest::Method::PUT, path, body).await;
        put.unwrap_or_else(|e| panic!("{e}"));
    }

    /// Turns moto's IAM checks on: every later request must be signed by a known key.
    pub async fn require_auth(&self) {
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

    /// The `AWS_*` settings (key, secret, this endpoint, us-east-1) a credentials secret holds.
    pub fn env(&self, id: &str, secret: &str) -> BTreeMap<String, String> {
        [
            ("AWS_ACCESS_KEY_ID", id),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}
