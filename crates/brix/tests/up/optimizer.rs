//! The heterogeneous GPU optimizer live (issue 14): one served model, two simulated
//! deployments (AIBrix's layout, `model.aibrix.ai/name`) with hand-written profiles that make
//! short prompts cheaper on `m-a` and long ones on `m-b`. `m-a` is scaled by the optimizer
//! directly; `m-b` by a KPA reading the optimizer's `/metrics/default/m-b` as an external
//! source (AIBrix's wiring). Short windows (tick 1 s, window 4 s). Short-prompt load moves
//! replicas to `m-a` and the gateway sends those requests there; long prompts move them to
//! `m-b` and `m-a` goes down. Real sockets throughout; every wait is on a condition.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brix_gateway::{GatewayHandle, Registry};
use brix_platform::admin::AdminGuard;
use brix_platform::autoscale::Autoscalers;
use brix_platform::optimizer::{Optimizer, OptimizerStatus};
use brix_platform::{FleetFile, LocalPlatform, Platform, ReplicaState};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::support::tempdir::Dir;
use crate::support::within;

const ADMIN: &str = "adm-opt";

/// A profile on the 2 × 2 grid (inputs 32, 4096; outputs 8, 64): `short` and `long` req/s
/// per replica for short and long prompts, at `cost` $/h.
fn profile(gpu: &str, short: f64, long: f64, cost: f64) -> String {
    json!({
        "gpu": gpu, "cost": cost, "created": 0.0,
        "indexes": [[8, 64], [32, 4096]],
        "tputs": [[short, long], [short, long]],
        "slos": {"percentile": 90.0, "ttft": 2.0, "tpot": 0.1},
        "method": "hand-written",
    })
    .to_string()
}

struct Fleet {
    base: String,
    platform: LocalPlatform,
    optimizer: Optimizer,
    autoscalers: Autoscalers,
    _gateway: GatewayHandle,
    http: reqwest::Client,
    _dir: Dir,
}

async fn fleet() -> Fleet {
    let dir = Dir::new("optimizer");
    // Short prompts: 2 req/s per replica on either type, $1/h on A, $4/h on B → A.
    // Long prompts: A 0.1 req/s ($10 per req/s), B 2 req/s ($2 per req/s) → B.
    let a = dir.0.join("a.json");
    let b = dir.0.join("b.json");
    std::fs::write(&a, profile("A10", 2.0, 0.1, 1.0)).unwrap();
    std::fs::write(&b, profile("H100", 2.0, 2.0, 4.0)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let engine = "{sim: {gpu: H200, num_gpu_blocks_override: 4096, max_model_len: 8192, output_len: 'fixed:8'}}";
    let yaml = format!(
        "models:
  - name: m-a
    replicas: 1
    labels: {{model.aibrix.ai/name: m}}
    engine: {engine}
  - name: m-b
    replicas: 1
    labels: {{model.aibrix.ai/name: m}}
    engine: {engine}
resources:
  - apiVersion: autoscaling.aibrix.ai/v1alpha1
    kind: PodAutoscaler
    metadata:
      name: m-b-kpa
      annotations:
        autoscaling.brix.dev/sync-period: 1s
        autoscaling.aibrix.ai/scale-down-cooldown-window: 3s
        autoscaling.aibrix.ai/scale-to-zero: 'true'
    spec:
      scaleTargetRef: {{name: m-b}}
      minReplicas: 0
      maxReplicas: 8
      observeWindowSeconds: 10
      panicWindowSeconds: 2
      scalingStrategy: KPA
      metricsSources:
        - {{metricSourceType: external, endpoint: '{addr}', path: /metrics/default/m-b, targetMetric: vllm:deployment_replicas, targetValue: '100'}}
optimizer:
  interval_s: 1
  tick_s: 1
  window_s: 4
  hysteresis: {{keep_within: 0.1, down_delay_s: 3}}
  models:
    - name: m
      utilisation: 0.9
      deployments:
        - {{name: m-a, gpu: A10, cost: 1.0, profile: '{}'}}
        - {{name: m-b, gpu: H100, cost: 4.0, profile: '{}'}}
",
        a.display(),
        b.display()
    );
    let file = FleetFile::parse("fleet.yaml", &yaml).unwrap();
    let planned = brix_platform::autoscale::plan(&file, "fleet.yaml").unwrap();
    let prepared = brix_platform::optimizer::prepare(&file, "fleet.yaml", &dir.0)
        .unwrap()
        .unwrap();
    let registry = Arc::new(Registry::new());
    let mut cfg = file.gateway.clone();
    cfg.admission.admin_key = Some(ADMIN.into());
    cfg.scrape.interval_ms = 50;
    let guard = AdminGuard::new(Some(ADMIN));
    let (routes, gateway) = brix_gateway::app_with_handle(cfg, registry.as_ref())
        .await
        .unwrap();
    let platform = crate::support::platform(&file.models, registry, &gateway, dir.0.clone());
    let autoscalers = Autoscalers::start(planned, platform.clone(), gateway.clone()).unwrap();
    let optimizer = Optimizer::start(prepared, platform.clone(), gateway.clone());
    let app = routes
        .merge(brix_platform::admin::router(
            platform.clone(),
            gateway.clone(),
            guard.clone(),
        ))
        .merge(brix_platform::optimizer_api::router(
            optimizer.clone(),
            platform.clone(),
            gateway.clone(),
            guard,
        ));
    tokio::spawn(brix_net::serve_router(
        listener,
        app,
        brix_net::ServeConfig::default(),
        std::future::pending(),
    ));
    Fleet {
        base: format!("http://{addr}"),
        platform,
        optimizer,
        autoscalers,
        _gateway: gateway,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Fleet {
    /// (ready, not draining) replicas of deployment `d`.
    async fn counts(&self, d: &str) -> (usize, usize) {
        let r = self.platform.replicas(d).await.unwrap();
        let ready = r.iter().filter(|x| x.state == ReplicaState::Ready).count();
        let live = r
            .iter()
            .filter(|x| x.state != ReplicaState::Draining)
            .count();
        (ready, live)
    }

    fn status(&self) -> OptimizerStatus {
        self.optimizer.model("m").unwrap()
    }

    fn target(&self, d: &str) -> Option<u32> {
        self.status()
            .deployments
            .iter()
            .find(|x| x.name == d)
            .and_then(|x| x.target)
    }

    /// A chat request for `m` with a prompt of about `words` words; (status, target-pod).
    async fn chat(&self, words: usize) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}/v1/chat/completions", self.base))
            .json(&body(words))
            .send()
            .await
            .unwrap();
        let pod = r
            .headers()
            .get("target-pod")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let status = r.status().as_u16();
        let _ = r.bytes().await;
        (status, pod)
    }

    async fn get(&self, path: &str, key: Option<&str>) -> (u16, String) {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

fn body(words: usize) -> Value {
    json!({"model": "m", "max_tokens": 8,
        "messages": [{"role": "user", "content": "hello ".repeat(words)}]})
}

/// Paced load: `per_s` requests a second of `words`-word prompts until stopped; every
/// answer must be a 200.
struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    statuses: Arc<Mutex<Vec<u16>>>,
}

impl Load {
    fn start(f: &Fleet, per_s: u32, words: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let (http, url) = (f.http.clone(), format!("{}/v1/chat/completions", f.base));
        let (s, out) = (stop.clone(), statuses.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / per_s);
            let mut sent = tokio::task::JoinSet::new();
            while !s.load(Ordering::SeqCst) {
                tick.tick().await;
                let (http, url, out) = (http.clone(), url.clone(), out.clone());
                sent.spawn(async move {
                    let code = match http.post(&url).json(&body(words)).send().await {
                        Ok(r) => {
                            let code = r.status().as_u16();
                            let _ = r.bytes().await;
                            code
                        }
                        Err(_) => 0,
                    };
                    out.lock().unwrap().push(code);
                });
            }
            while sent.join_next().await.is_some() {}
        });
        Self {
            stop,
            task,
            statuses,
        }
    }

    async fn stop_all_ok(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        let statuses = self.statuses.lock().unwrap();
        assert!(!statuses.is_empty());
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
}

const SHORT: usize = 2;
const LONG: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gpu_types_follow_the_plan_as_the_request_shapes_change() {
    let f = fleet().await;
    within("one ready replica of each deployment", 30, || async {
        f.counts("m-a").await.0 == 1 && f.counts("m-b").await.0 == 1
    })
    .await;

    // Before any traffic: no plan; the external metric reports what m-b has (its KPA holds),
    // AIBrix's exact text; unknown deployments are 404; the admin endpoints need the key.
    let (code, text) = f.get("/metrics/default/m-b", None).await;
    assert_eq!(code, 200);
    assert!(
        text.lines()
            .any(|l| l == "vllm:deployment_replicas{model_name=\"m\"} 100"),
        "{text}"
    );
    assert_eq!(f.get("/metrics/default/nope", None).await.0, 404);
    for path in [
        "/brix/optimizer",
        "/brix/optimizer/demand?model=m",
        "/brix/optimizer/plan?model=m",
    ] {
        let (code, _) = f.get(path, None).await;
        assert!(code == 401 || code == 403, "{path}: {code}");
        let (code, _) = f.get(path, Some("wrong")).await;
        assert!(code == 401 || code == 403, "{path}: {code}");
    }
    assert_eq!(
        f.get("/brix/optimizer/demand?model=other", Some(ADMIN))
            .await
            .0,
        404
    );
    assert_eq!(f.get("/brix/optimizer/demand", Some(ADMIN)).await.0, 400);
    // Scaling addresses deployments; the served name says which there are.
    let e = f.platform.scale("m", 2).await.unwrap_err().to_string();
    assert!(e.contains("m-a, m-b"), "{e}");
    // Both deployments answer to the served name.
    let seen = Mutex::new(std::collections::BTreeSet::new());
    within("requests for m reach both deployments", 30, || async {
        let (code, pod) = f.chat(SHORT).await;
        assert_eq!(code, 200);
        let mut seen = seen.lock().unwrap();
        seen.insert(pod.rsplit_once('-').map(|(d, _)| d.to_string()).unwrap());
        seen.len() == 2
    })
    .await;

    // Short prompts at 8 req/s: 8 / (2 × 0.9) → 5 replicas of m-a, none of m-b.
    let short = Load::start(&f, 8, SHORT);
    within("the plan moves short prompts to m-a", 60, || async {
        f.target("m-a").is_some_and(|t| t >= 4) && f.target("m-b") == Some(0)
    })
    .await;
    within("m-a scaled up directly", 60, || async {
        f.counts("m-a").await.0 >= 4
    })
    .await;
    // The demand the driver reads is the gateway's, in the short-prompt column.
    let (code, text) = f.get("/brix/optimizer/demand?model=m", Some(ADMIN)).await;
    assert_eq!(code, 200);
    let d: Value = serde_json::from_str(&text).unwrap();
    let rates: Vec<f64> = d["rates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(rates.len(), 4, "{text}");
    assert!(rates[0] + rates[2] > 4.0, "short column: {rates:?}");
    assert_eq!(rates[1] + rates[3], 0.0, "no long prompts yet: {rates:?}");
    // Routing follows the plan while m-b still has a ready pod (its KPA winds down slowly).
    assert!(f.counts("m-b").await.0 >= 1, "m-b still serving");
    for _ in 0..20 {
        let (code, pod) = f.chat(SHORT).await;
        assert_eq!(code, 200);
        assert!(pod.starts_with("m-a-"), "short prompt sent to {pod}");
    }
    let (code, text) = f.get("/brix/optimizer/plan?model=m", Some(ADMIN)).await;
    assert_eq!(code, 200);
    let plan: Value = serde_json::from_str(&text).unwrap();
    assert!(
        plan["plan"]["cost_per_hour"].as_f64().unwrap() >= 4.0,
        "{text}"
    );
    assert!(!plan["reason"].as_str().unwrap().is_empty());
    within("m-b's KPA follows the metric down to 0", 60, || async {
        f.counts("m-b").await.1 == 0
    })
    .await;
    short.stop_all_ok().await;

    // Long prompts at 3 req/s: 3 / (2 × 0.9) → 2 replicas of m-b (through its KPA); m-a
    // goes down after the down delay.
    let long = Load::start(&f, 3, LONG);
    within("the plan moves long prompts to m-b", 60, || async {
        f.target("m-b").is_some_and(|t| t >= 2) && f.target("m-a") == Some(0)
    })
    .await;
    let (_, text) = f.get("/metrics/default/m-b", None).await;
    let line = text
        .lines()
        .find(|l| l.starts_with("vllm:deployment_replicas{model_name=\"m\"} "))
        .unwrap();
    let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(v >= 200.0 && v % 100.0 == 0.0, "{line}");
    within("m-b scaled up by its KPA and m-a down", 90, || async {
        f.counts("m-b").await.0 >= 2 && f.counts("m-a").await.1 == 0
    })
    .await;
    for _ in 0..10 {
        let (code, pod) = f.chat(LONG).await;
        assert_eq!(code, 200);
        assert!(pod.starts_with("m-b-"), "long prompt sent to {pod}");
    }
    long.stop_all_ok().await;
    let s = f.status();
    assert!(s.plans >= 2, "{s:?}");
    f.optimizer.stop();
    f.autoscalers.stop();
    f.platform.shutdown().await;
}
