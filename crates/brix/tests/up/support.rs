//! Fleets for the tests: model specs, a platform behind a gateway, and waiting on conditions.

use std::sync::Arc;
use std::time::Duration;

use brix_api::{CommandEngine, EngineSpec, ModelSpec, SimEngine};
use brix_gateway::{GatewayConfig, GatewayHandle, Registry};
use brix_platform::{LocalConfig, LocalPlatform, Platform, Replica};
use tokio::net::TcpListener;

/// The `brix` binary under test.
pub const BRIX: &str = env!("CARGO_BIN_EXE_brix");

/// `brix sim` flags for a small, fast engine.
pub const SMALL: &str = "--gpu H200 --num-gpu-blocks-override 512 --max-model-len 4096";

/// A model whose replicas are `brix sim` child processes.
pub fn command_model(name: &str, replicas: u32, extra: &str) -> ModelSpec {
    model(
        name,
        replicas,
        EngineSpec::Command(CommandEngine {
            command: format!(
                "{BRIX} sim --port {{port}} --served-model-name {{model}} {SMALL} {extra}"
            ),
            env: Default::default(),
            ready_timeout_s: 60,
            stop_grace_s: 5,
            gpus: None,
            runtime: None,
        }),
    )
}

/// A model whose replicas are `brix sim` in this process.
pub fn sim_model(name: &str, replicas: u32, output_len: &str) -> ModelSpec {
    model(
        name,
        replicas,
        EngineSpec::Sim(SimEngine {
            gpu: "H200".into(),
            model_profile: "llama-3-8b".into(),
            max_num_seqs: None,
            max_model_len: Some(4096),
            num_gpu_blocks_override: Some(2048),
            enable_lora: false,
            max_loras: None,
            max_cpu_loras: None,
            max_lora_rank: None,
            output_len: Some(output_len.into()),
            seed: None,
            startup_delay_s: None,
            cold_start: None,
            runtime: None,
        }),
    )
}

fn model(name: &str, replicas: u32, engine: EngineSpec) -> ModelSpec {
    let yaml = format!("name: {name}\nreplicas: {replicas}\nengine: {{sim: {{}}}}\n");
    let mut m: ModelSpec = serde_yaml_ng::from_str(&yaml).unwrap();
    m.engine = engine;
    m
}

/// A platform, the gateway in front of it, and a client.
pub struct Up {
    pub platform: LocalPlatform,
    pub gateway: GatewayHandle,
    pub base: String,
    pub http: reqwest::Client,
    pub _logs: tempdir::Dir,
}

pub mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);

    impl Dir {
        pub fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!("brix-test-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Starts `models` on a local platform behind an in-process gateway on 127.0.0.1:0.
pub async fn up(tag: &str, models: &[ModelSpec]) -> Up {
    let registry = Arc::new(Registry::new());
    let mut cfg = GatewayConfig::default();
    cfg.scrape.interval_ms = 50;
    let (routes, gateway) = brix_gateway::app_with_handle(cfg, registry.as_ref())
        .await
        .unwrap();
    let logs = tempdir::Dir::new(tag);
    let platform = platform(models, registry, &gateway, logs.0.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, routes).await });
    Up {
        platform,
        gateway,
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        _logs: logs,
    }
}

impl Up {
    pub async fn replicas(&self, model: &str) -> Vec<Replica> {
        self.platform.replicas(model).await.unwrap()
    }
}

/// Polls `check` for up to 30 s (testkit's `eventually`), then fails with `what`.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    check: impl FnMut() -> F,
) {
    brix_testkit::eventually(what, Duration::from_secs(30), check).await;
}

/// Polls `check` for up to `secs` seconds (testkit's `eventually`), then fails with `what`.
pub async fn within<F: std::future::Future<Output = bool>>(
    what: &str,
    secs: u64,
    check: impl FnMut() -> F,
) {
    brix_testkit::eventually(what, Duration::from_secs(secs), check).await;
}

/// A child process killed on drop, so a failing test leaves nothing behind.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `brix status --json`, with the admin key `brix up` wrote into `state`.
pub fn status_json(endpoint: &str, state: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new(BRIX)
        .env("BRIX_STATE_DIR", state)
        .args(["status", "--json", "--endpoint", endpoint])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `family{labels}` in an exposition, summed over the series that carry every label.
pub fn metric(text: &str, family: &str, labels: &[(&str, &str)]) -> f64 {
    brix_testkit::Exposition::parse(text).sum(family, labels)
}

/// The text of `base`/metrics.
pub async fn metrics_text(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Whether a process with this pid exists (zombies included until reaped).
pub fn alive(pid: u32) -> bool {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(pid, None).is_ok()
}

/// Serves `app` on 127.0.0.1:0 as `brix up` does (brix-net's listener); its base URL.
pub async fn serve(app: axum::Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(brix_net::serve_router(
        listener,
        app,
        brix_net::ServeConfig::default(),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

/// A local platform for `models` feeding `gateway`, polling fast, logs under `logs`.
pub fn platform(
    models: &[ModelSpec],
    registry: Arc<Registry>,
    gateway: &GatewayHandle,
    logs: std::path::PathBuf,
) -> LocalPlatform {
    let in_flight = {
        let g = gateway.clone();
        Arc::new(move |a: &str| g.in_flight(a))
    };
    LocalPlatform::start(
        models,
        registry,
        in_flight,
        LocalConfig {
            logs_dir: logs,
            health_interval: Duration::from_millis(100),
            startup_poll: Duration::from_millis(50),
            ..LocalConfig::default()
        },
    )
}
