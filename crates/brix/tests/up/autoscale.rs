//! PodAutoscalers acting live (issue 10): a fleet file's autoscalers scale simulated models
//! up under a burst and back down, from zero on the first request, and on an external
//! Prometheus-compatible endpoint served here; `brix status`'s API and `/metrics` show them.
//! Real servers on 127.0.0.1:0, real HTTP, short windows from the documents' annotations.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use brix_gateway::{GatewayHandle, Registry};
use brix_platform::admin::AdminGuard;
use brix_platform::autoscale::{AutoscalerStatus, Autoscalers};
use brix_platform::{FleetFile, LocalPlatform, Platform, ReplicaState};
use brix_testkit::Exposition;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::support::tempdir::Dir;
use crate::support::within;

const ADMIN: &str = "adm-test";

/// A fleet file's models, gateway and autoscalers, with the admin APIs, as `brix up` runs them.
struct Scaled {
    base: String,
    platform: LocalPlatform,
    gateway: GatewayHandle,
    autoscalers: Autoscalers,
    http: reqwest::Client,
    _logs: Dir,
}

async fn scaled(tag: &str, yaml: &str) -> Scaled {
    let file = FleetFile::parse("fleet.yaml", yaml).unwrap();
    let planned = brix_platform::autoscale::plan(&file, "fleet.yaml").unwrap();
    let registry = Arc::new(Registry::new());
    let mut cfg = file.gateway.clone();
    cfg.admission.admin_key = Some(ADMIN.into());
    cfg.scrape.interval_ms = 50;
    let guard = AdminGuard::new(Some(ADMIN));
    let (routes, gateway) = brix_gateway::app_with_handle(cfg, registry.as_ref())
        .await
        .unwrap();
    let logs = Dir::new(tag);
    let platform = crate::support::platform(&file.models, registry, &gateway, logs.0.clone());
    let autoscalers = Autoscalers::start(planned, platform.clone(), gateway.clone()).unwrap();
    let app = routes
        .merge(brix_platform::admin::router(
            platform.clone(),
            gateway.clone(),
            guard.clone(),
        ))
        .merge(brix_platform::admin::autoscaler_router(
            autoscalers.clone(),
            guard,
        ));
    let base = crate::support::serve(app).await;
    Scaled {
        base,
        platform,
        gateway,
        autoscalers,
        http: reqwest::Client::new(),
        _logs: logs,
    }
}

impl Scaled {
    /// (ready, starting, not draining) replicas of `model`.
    async fn counts(&self, model: &str) -> (usize, usize, usize) {
        let r = self.platform.replicas(model).await.unwrap();
        let n = |s: ReplicaState| r.iter().filter(|x| x.state == s).count();
        let live = r
            .iter()
            .filter(|x| x.state != ReplicaState::Draining)
            .count();
        (n(ReplicaState::Ready), n(ReplicaState::Starting), live)
    }

    fn status(&self, name: &str) -> AutoscalerStatus {
        self.autoscalers
            .status()
            .into_iter()
            .find(|a| a.name == name)
            .unwrap()
    }

    /// A chat request for `model` (streamed or not); (status, body).
    fn chat(
        &self,
        model: &str,
        stream: bool,
        max_tokens: u32,
    ) -> tokio::task::JoinHandle<(u16, String)> {
        let r = self
            .http
            .post(format!("{}/v1/chat/completions", self.base))
            .json(&json!({
                "model": model,
                "stream": stream,
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": "hello there"}],
            }));
        tokio::spawn(async move {
            let resp = r.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    }

    async fn metrics(&self) -> Exposition {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        Exposition::parse(&text)
    }
}

/// Clients that each send `body` back to back until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Vec<u16>>>,
}

impl Load {
    fn start(f: &Scaled, clients: usize, body: serde_json::Value) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                let (stop, http, body) = (stop.clone(), f.http.clone(), body.clone());
                let url = format!("{}/v1/chat/completions", f.base);
                tokio::spawn(async move {
                    let mut statuses = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let r = http.post(&url).json(&body).send().await.unwrap();
                        statuses.push(r.status().as_u16());
                        let _ = r.bytes().await;
                    }
                    statuses
                })
            })
            .collect();
        Self { stop, clients }
    }

    /// Stops the clients; every answer they got was a 200.
    async fn stop_all_ok(self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.clients {
            let statuses = c.await.unwrap();
            assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        }
    }
}

/// A PodAutoscaler document with short windows: decisions every second, a 6 s stable window,
/// a 2 s panic window, 3 s scale-down cooldown.
fn autoscaler(name: &str, model: &str, min: u32, max: u32, sources: &str) -> String {
    format!(
        "  - apiVersion: autoscaling.aibrix.ai/v1alpha1
    kind: PodAutoscaler
    metadata:
      name: {name}
      annotations:
        autoscaling.brix.dev/sync-period: 1s
        autoscaling.aibrix.ai/scale-down-cooldown-window: 3s
        autoscaling.aibrix.ai/scale-to-zero: 'true'
    spec:
      scaleTargetRef: {{name: {model}}}
      minReplicas: {min}
      maxReplicas: {max}
      observeWindowSeconds: 6
      panicWindowSeconds: 2
      scalingStrategy: KPA
      metricsSources: {sources}
"
    )
}

fn sim_model(name: &str, replicas: u32, extra: &str) -> String {
    format!(
        "  - name: {name}
    replicas: {replicas}
    engine:
      sim: {{gpu: H200, num_gpu_blocks_override: 2048, max_model_len: 4096{extra}}}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_scales_a_model_up_and_it_comes_back_down_after() {
    let sources = "[{metricSourceType: pod, targetMetric: num_requests_running, targetValue: '2'}]";
    let yaml = format!(
        "models:\n{}resources:\n{}",
        sim_model("m", 1, ", output_len: 'fixed:400'"),
        autoscaler("m-kpa", "m", 1, 4, sources)
    );
    let f = scaled("as-burst", &yaml).await;
    within(
        "the first replica is ready and in the gateway's rotation",
        30,
        || async { f.counts("m").await.0 == 1 && f.gateway.pods().iter().any(|p| p.healthy) },
    )
    .await;

    // A burst: 12 clients, each sending long requests back to back.
    let load = Load::start(
        &f,
        12,
        json!({"model": "m", "max_tokens": 400,
            "messages": [{"role": "user", "content": "burst"}]}),
    );
    within("scaled up to 3 or more ready replicas", 60, || async {
        f.counts("m").await.0 >= 3
    })
    .await;
    let up = f.status("m-kpa");
    assert!(up.scale_events >= 1, "{up:?}");
    assert!(up.desired >= 3 && up.desired <= 4, "{up:?}");
    load.stop_all_ok().await;

    // Quiet: back to minReplicas, draining what it removes.
    within("scaled back down to 1", 60, || async {
        f.counts("m").await.2 == 1
    })
    .await;
    let down = f.status("m-kpa");
    assert_eq!(down.desired, 1, "{down:?}");
    assert!(down.scale_events >= 2, "{down:?}");
    assert!(
        down.decisions.iter().all(|d| d.reason.contains("->")),
        "{down:?}"
    );

    // `/metrics`: the autoscaler's series, labelled by its name and model only.
    let m = f.metrics().await;
    let labels = [("autoscaler", "m-kpa"), ("model", "m")];
    assert_eq!(
        m.value("brix_autoscaler_desired_replicas", &labels),
        Some(1.0)
    );
    assert!(m.value("brix_autoscaler_decisions_total", &labels) > Some(5.0));
    assert!(m.value("brix_autoscaler_scale_events_total", &labels) >= Some(2.0));
    assert!(m.value("brix_autoscaler_panic", &labels).is_some());
    assert!(
        m.value("brix_autoscaler_current_replicas", &labels)
            .is_some()
    );
    for s in m
        .samples
        .iter()
        .filter(|s| s.name.starts_with("brix_autoscaler_"))
    {
        let keys: Vec<&str> = s.labels.keys().map(String::as_str).collect();
        assert_eq!(keys, ["autoscaler", "model"], "{s:?}");
    }
    f.autoscalers.stop();
    f.platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_at_zero_serves_its_first_requests_after_a_cold_start() {
    let sources = "[{metricSourceType: pod, targetMetric: num_requests_running, targetValue: '4'}]";
    // The gateway's own count (held requests included), as Knative counts the activator's.
    let gateway =
        "[{metricSourceType: external, targetMetric: gateway_in_flight, targetValue: '4'}]";
    let yaml = format!(
        "gateway:\n  activator: {{max_held: 2, timeout_s: 60}}\nmodels:\n{}{}resources:\n{}{}",
        sim_model("cold", 0, ", startup_delay_s: 1, output_len: 'fixed:8'"),
        sim_model("slow", 0, ", startup_delay_s: 3, output_len: 'fixed:8'"),
        autoscaler("cold-kpa", "cold", 0, 2, gateway),
        autoscaler("slow-kpa", "slow", 0, 2, sources),
    );
    let f = scaled("as-zero", &yaml).await;
    assert_eq!(f.counts("cold").await, (0, 0, 0));
    // The first requests, plain and streamed, wait through the cold start: no error.
    let plain = f.chat("cold", false, 8);
    let stream = f.chat("cold", true, 8);
    let (status, body) = plain.await.unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["choices"][0]["message"]["content"].is_string(), "{v}");
    let (status, body) = stream.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        brix_testkit::sse_events(&body).last().map(String::as_str),
        Some("[DONE]")
    );
    assert!(!body.contains("\"error\""), "{body}");
    let cold = f.status("cold-kpa");
    assert!(cold.desired >= 1, "{cold:?}");
    assert!(
        cold.decisions
            .iter()
            .any(|d| d.current == 0 && d.desired >= 1),
        "{cold:?}"
    );
    // The gateway's in-flight count feeds the policy (a recommendation, not a hold).
    within("a decision on the gateway's count", 10, || async {
        f.status("cold-kpa")
            .decisions
            .iter()
            .any(|d| d.reason.contains("(recommended"))
    })
    .await;
    let replicas = f.platform.replicas("cold").await.unwrap();
    assert!(
        replicas.iter().any(|r| r.startup_ms.is_some()),
        "{replicas:?}"
    );

    // Over the activator's bound (2 held): 503 at once, in the envelope, saying so.
    let held: Vec<_> = (0..2).map(|_| f.chat("slow", false, 8)).collect();
    let activation = f.gateway.activation("slow").unwrap();
    within("two requests held for slow", 10, || async {
        activation.held() == 2
    })
    .await;
    let (status, body) = f.chat("slow", false, 8).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("requests already wait"), "{body}");
    for h in held {
        let (status, body) = h.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let m = f.metrics().await;
    assert_eq!(
        m.value("brix_activator_held_requests", &[("model", "slow")]),
        Some(0.0)
    );
    f.autoscalers.stop();
    f.platform.shutdown().await;
}

/// A Prometheus-compatible endpoint: the HTTP API's instant query (JSON) and a text
/// exposition, both answering the value the test sets.
async fn prometheus(value: Arc<Mutex<f64>>) -> (String, tokio::task::JoinHandle<()>) {
    use axum::extract::State;
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/api/v1/query",
            get(|State(v): State<Arc<Mutex<f64>>>| async move {
                let v = *v.lock().unwrap();
                axum::Json(json!({"status": "success", "data": {"resultType": "vector",
                    "result": [{"metric": {"job": "demand"}, "value": [1.7e9, v.to_string()]}]}}))
            }),
        )
        .route(
            "/metrics",
            get(|State(v): State<Arc<Mutex<f64>>>| async move {
                let v = *v.lock().unwrap();
                format!("# TYPE demand gauge\ndemand{{shard=\"a\"}} {v}\n")
            }),
        )
        .with_state(value);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_external_prometheus_source_drives_the_count_and_a_dead_one_holds_it() {
    let value = Arc::new(Mutex::new(10.0));
    let (addr, server) = prometheus(value.clone()).await;
    let query = format!(
        "[{{metricSourceType: external, endpoint: '{addr}', path: '/api/v1/query?query=sum(demand)', targetMetric: demand, targetValue: '10'}}]"
    );
    let text = format!(
        "[{{metricSourceType: external, endpoint: '{addr}', path: /metrics, targetMetric: demand, targetValue: '10'}}]"
    );
    let yaml = format!(
        "models:\n{}{}resources:\n{}{}",
        sim_model("api", 1, ""),
        sim_model("txt", 1, ""),
        autoscaler("api-kpa", "api", 0, 4, &query),
        autoscaler("txt-kpa", "txt", 1, 4, &text),
    );
    let f = scaled("as-external", &yaml).await;
    *value.lock().unwrap() = 30.0;
    within("both scaled to 3 on a demand of 30", 60, || async {
        f.counts("api").await.0 == 3 && f.counts("txt").await.0 == 3
    })
    .await;
    *value.lock().unwrap() = 20.0;
    within("both scaled down to 2 on a demand of 20", 60, || async {
        f.counts("api").await.2 == 2 && f.counts("txt").await.2 == 2
    })
    .await;

    // The endpoint dies: readings fail, the count holds (minReplicas 0 is never reached by
    // accident), and the status says why.
    server.abort();
    let before = f.status("api-kpa").decisions.len();
    let decided = |s: &AutoscalerStatus| s.decisions.last().map(|d| d.at_s);
    let last = decided(&f.status("api-kpa"));
    within("failures recorded over several decisions", 30, || async {
        let s = f.status("api-kpa");
        s.last_error.is_some() && decided(&s) > last.map(|t| t + 3.0)
    })
    .await;
    let s = f.status("api-kpa");
    assert!(before > 0);
    assert_eq!(s.desired, 2, "{s:?}");
    assert_eq!(f.counts("api").await.2, 2);
    let e = s.last_error.clone().unwrap();
    assert!(e.contains(&addr), "{e}");
    f.autoscalers.stop();
    f.platform.shutdown().await;
}

#[tokio::test]
async fn the_autoscalers_api_needs_the_admin_key_and_the_autoscaler_owns_the_count() {
    let sources =
        "[{metricSourceType: pod, targetMetric: gpu_cache_usage_perc, targetValue: '0.5'}]";
    let yaml = format!(
        "models:\n{}resources:\n{}",
        sim_model("k", 1, ""),
        autoscaler("k-kpa", "k", 1, 2, sources)
    );
    let f = scaled("as-admin", &yaml).await;
    let url = format!("{}/brix/autoscalers", f.base);
    for auth in [None, Some("Bearer nope")] {
        let mut r = f.http.get(&url);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        assert_eq!(r.send().await.unwrap().status(), 401, "{auth:?}");
    }
    within("a decision is recorded", 30, || async {
        let r = f.http.get(&url).bearer_auth(ADMIN).send().await.unwrap();
        let all: Vec<AutoscalerStatus> = r.json().await.unwrap();
        all.len() == 1
            && all[0].model == "k"
            && all[0].strategy == "KPA"
            && all[0].targets == ["gpu_cache_usage_perc=0.5"]
            && !all[0].decisions.is_empty()
    })
    .await;
    // `brix scale` on an autoscaled model: the autoscaler sets its own count again (as an
    // HPA does with its Deployment's), once the extra replica is up.
    let r = f
        .http
        .post(format!("{}/brix/fleet/scale", f.base))
        .bearer_auth(ADMIN)
        .json(&json!({"model": "k", "replicas": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    within("the manual replica came up", 30, || async {
        f.counts("k").await.0 == 2
    })
    .await;
    within("the autoscaler restored its count", 30, || async {
        f.counts("k").await.2 == 1
    })
    .await;
    assert_eq!(f.status("k-kpa").desired, 1);
    f.autoscalers.stop();
    f.platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_slo_policy_scales_a_sim_model_on_its_capacity_live() {
    // An L4 replica running at most 2 requests at once: a small capacity at the SLO, so a
    // few clients looping are more than one replica serves.
    let yaml = format!(
        "models:\n{}resources:\n  - apiVersion: autoscaling.aibrix.ai/v1alpha1
    kind: PodAutoscaler
    metadata:
      name: s-slo
      annotations:
        autoscaling.brix.dev/sync-period: 1s
        autoscaling.aibrix.ai/scale-down-cooldown-window: 3s
    spec:
      scaleTargetRef: {{name: s}}
      minReplicas: 1
      maxReplicas: 3
      observeWindowSeconds: 6
      panicWindowSeconds: 2
      scalingStrategy: SLO
",
        "  - name: s\n    replicas: 1\n    engine:\n      sim: {gpu: L4, max_num_seqs: 2, num_gpu_blocks_override: 2048, max_model_len: 4096, output_len: 'fixed:50'}\n"
    );
    let f = scaled("as-slo", &yaml).await;
    within(
        "the first replica is ready and in the gateway's rotation",
        30,
        || async { f.counts("s").await.0 == 1 && f.gateway.pods().iter().any(|p| p.healthy) },
    )
    .await;
    let load = Load::start(
        &f,
        8,
        json!({"model": "s", "max_tokens": 50, "stream": true,
            "messages": [{"role": "user", "content": "demand"}]}),
    );
    within("the SLO policy asks for a second replica", 60, || async {
        f.counts("s").await.0 >= 2
    })
    .await;
    load.stop_all_ok().await;
    let up = f.status("s-slo");
    assert_eq!(up.strategy, "SLO");
    assert!(
        up.decisions.iter().any(|d| d.reason.contains("capacity")),
        "{up:?}"
    );
    within(
        "back to one replica once the demand is gone",
        90,
        || async { f.counts("s").await.2 == 1 },
    )
    .await;
    f.autoscalers.stop();
    f.platform.shutdown().await;
}
