//! LoRA adapters through the gateway, over real sockets: `brix sim` engines with LoRA on,
//! adapters loaded through their `/v1/load_lora_adapter`, the controller's calls made on the
//! gateway's handle.

use std::collections::BTreeMap;

use brix_gateway::{AdapterRoute, GatewayConfig};
use brix_sim::OutputLen;
use brix_sim_http::SimConfig;
use brix_testkit::sim_config;
use serde_json::{Value, json};

use crate::support::{Fleet, MODEL, eventually, fleet, gateway_config, header};

/// An engine with LoRA on: two GPU slots, four resident adapters.
fn lora_sim() -> SimConfig {
    let mut c = sim_config(MODEL);
    c.engine.enable_lora = true;
    c.engine.max_loras = 2;
    c.engine.max_cpu_loras = 4;
    c
}

async fn lora_fleet(n: usize, cfg: GatewayConfig) -> Fleet {
    fleet(n, cfg, |_| lora_sim()).await
}

fn route(name: &str, pending: bool) -> AdapterRoute {
    AdapterRoute {
        name: name.into(),
        base_model: MODEL.into(),
        pending,
    }
}

fn body(adapter: &str) -> Value {
    json!({"model": adapter, "messages": [{"role": "user", "content": "hi"}]})
}

/// Loads `adapter` on engine `i` through its own API (a hub id: the simulator stands in for
/// the download), as the controller does.
async fn load(f: &Fleet, i: usize, adapter: &str) {
    let url = format!("http://{}/v1/load_lora_adapter", f.sims[i].addr);
    let load = json!({"lora_name": adapter, "lora_path": format!("org/{adapter}")});
    let r = f.http.post(url).json(&load).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

fn addr(f: &Fleet, i: usize) -> String {
    f.sims[i].addr.to_string()
}

/// `n` chat requests for `adapter`; returns the pods that answered, by count.
async fn spread(f: &Fleet, adapter: &str, n: usize) -> BTreeMap<String, usize> {
    let mut pods = BTreeMap::new();
    for _ in 0..n {
        let r = f.post("/v1/chat/completions", &body(adapter), &[]).await;
        assert_eq!(r.status(), 200, "{adapter}");
        *pods.entry(header(&r, "target-pod")).or_default() += 1;
    }
    pods
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_to_the_holder_and_a_drain_moves_them() {
    let f = lora_fleet(2, gateway_config()).await;
    f.handle.set_adapters(vec![route("sql", false)]);
    load(&f, 1, "sql").await;
    // The controller tells the gateway at once; the probe would within a round.
    f.handle.set_pod_adapters(&addr(&f, 1), vec!["sql".into()]);
    assert_eq!(
        spread(&f, "sql", 8).await,
        BTreeMap::from([("pod-1".into(), 8)])
    );

    // A second holder, learnt from the probe's `/v1/models` alone.
    load(&f, 0, "sql").await;
    eventually("pod-0 lists sql", || async {
        f.get_json("/v1/models").await["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|m| m["id"] == "sql"))
            && spread(&f, "sql", 4).await.contains_key("pod-0")
    })
    .await;
    f.handle.set_adapter_draining(&addr(&f, 0), "sql", true);
    assert_eq!(
        spread(&f, "sql", 8).await,
        BTreeMap::from([("pod-1".into(), 8)])
    );
    f.handle.set_adapter_draining(&addr(&f, 1), "sql", true);
    let r = f.post("/v1/chat/completions", &body("sql"), &[]).await;
    assert_eq!(r.status(), 503, "every holder drains it");
    f.handle.set_adapter_draining(&addr(&f, 0), "sql", false);
    assert_eq!(
        spread(&f, "sql", 4).await,
        BTreeMap::from([("pod-0".into(), 4)])
    );
    // Base-model requests are not affected by the drain.
    assert_eq!(spread(&f, MODEL, 8).await.len(), 2);

    for i in 0..2 {
        assert_eq!(f.handle.adapter_in_flight(&addr(&f, i), "sql"), 0);
    }
    let rps = f.handle.adapter_rps();
    assert_eq!(rps.keys().collect::<Vec<_>>(), ["sql"]);
    assert!(rps["sql"] >= 21.0 / 60.0, "{rps:?}");
    // Metrics carry the adapter's name, and the decisions its strategy.
    let ok = f
        .counter(
            "brix_gateway_requests_total",
            &[
                ("model", "sql"),
                ("status", "200"),
                ("strategy", "lora-affinity"),
            ],
        )
        .await;
    assert!(ok >= 21.0, "{ok}");
    let refused = f
        .counter(
            "brix_gateway_errors_total",
            &[("model", "sql"), ("reason", "adapter_not_placed")],
        )
        .await;
    assert_eq!(refused, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_adapter_holds_requests_until_a_pod_lists_it() {
    let mut cfg = gateway_config();
    cfg.adapters.max_held = 2;
    cfg.adapters.wait_s = 20.0;
    let f = lora_fleet(1, cfg).await;
    f.handle
        .set_adapters(vec![route("chat", true), route("ghost", false)]);
    let held: Vec<_> = (0..2)
        .map(|_| {
            let (http, url) = (f.http.clone(), f.url("/v1/chat/completions"));
            tokio::spawn(async move { http.post(url).json(&body("chat")).send().await.unwrap() })
        })
        .collect();
    eventually("two requests held", || async {
        // Adapter requests load the base model (what its autoscaler reads).
        f.handle.load(MODEL).in_flight == 2
            && f.handle.load("chat").in_flight == 0
            && f.counter("brix_gateway_adapter_held_requests", &[]).await == 2.0
    })
    .await;
    // A third finds the queue full.
    let r = f.post("/v1/chat/completions", &body("chat"), &[]).await;
    assert_eq!(r.status(), 503);
    let e: Value = r.json().await.unwrap();
    let msg = e["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains("adapter 'chat' has no ready replica")
            && msg.contains("2 requests already wait"),
        "{msg}"
    );
    load(&f, 0, "chat").await;
    for h in held {
        let r = h.await.unwrap();
        assert_eq!(
            (r.status().as_u16(), header(&r, "target-pod")),
            (200, "pod-0".into())
        );
    }
    assert_eq!(
        f.counter("brix_gateway_adapter_held_requests", &[]).await,
        0.0
    );

    // Not being placed: 503 at once, in the OpenAI envelope, naming the adapter.
    let r = f.post("/v1/chat/completions", &body("ghost"), &[]).await;
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "x-error-no-model-backends"), "true");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "service_unavailable");
    assert_eq!(e["error"]["type"], "overloaded_error");
    assert_eq!(
        e["error"]["message"],
        "adapter 'ghost' has no ready replica: no ready pod holds it"
    );
    // A name that is no adapter nor model stays model_not_found.
    let r = f.post("/v1/chat/completions", &body("nope"), &[]).await;
    let status = r.status();
    let e: Value = r.json().await.unwrap();
    assert_eq!(
        (status.as_u16(), e["error"]["code"].clone()),
        (400, json!("model_not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_gives_up_after_the_wait_or_when_placement_ends() {
    let mut cfg = gateway_config();
    cfg.adapters.wait_s = 0.3;
    let f = lora_fleet(1, cfg).await;
    f.handle.set_adapters(vec![route("slow", true)]);
    let r = f.post("/v1/chat/completions", &body("slow"), &[]).await;
    assert_eq!(r.status(), 503);
    let e: Value = r.json().await.unwrap();
    let msg = e["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("no pod held it within 0.3 s"), "{msg}");

    // Placement failed while a request waited: it is refused then, not at the deadline.
    let mut cfg = gateway_config();
    cfg.adapters.wait_s = 600.0;
    let f = lora_fleet(1, cfg).await;
    f.handle.set_adapters(vec![route("bad", true)]);
    let (http, url) = (f.http.clone(), f.url("/v1/chat/completions"));
    let waiting =
        tokio::spawn(async move { http.post(url).json(&body("bad")).send().await.unwrap() });
    eventually("held", || async { f.handle.load(MODEL).in_flight == 1 }).await;
    f.handle.set_adapters(vec![route("bad", false)]);
    let r = waiting.await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        f.counter(
            "brix_gateway_errors_total",
            &[("model", "bad"), ("reason", "adapter_not_placed")]
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_count_under_the_adapter_name() {
    let mut cfg = gateway_config();
    cfg.admission.model_rps = BTreeMap::from([("sql".to_string(), 2)]);
    let f = lora_fleet(1, cfg).await;
    f.handle.set_adapters(vec![route("sql", false)]);
    load(&f, 0, "sql").await;
    f.handle.set_pod_adapters(&addr(&f, 0), vec!["sql".into()]);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = f.post("/v1/chat/completions", &body("sql"), &[]).await;
        statuses.push(r.status().as_u16());
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );
    // The base model has no limit: the adapter's requests did not count against it.
    for _ in 0..6 {
        let r = f.post("/v1/chat/completions", &body(MODEL), &[]).await;
        assert_eq!(r.status(), 200);
    }
    let limited = f
        .counter(
            "brix_gateway_requests_total",
            &[("model", "sql"), ("status", "429")],
        )
        .await;
    assert!(limited >= 1.0, "{limited}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_adapter_in_flight_is_exact_through_disconnects_errors_and_retries() {
    let f = fleet(2, gateway_config(), |i| {
        let mut c = lora_sim();
        c.engine.output_len = OutputLen::Fixed(1500);
        if i == 0 {
            c.faults.fail_rate = 1.0;
        }
        c
    })
    .await;
    f.handle.set_adapters(vec![route("sql", false)]);
    for i in 0..2 {
        load(&f, i, "sql").await;
        f.handle.set_pod_adapters(&addr(&f, i), vec!["sql".into()]);
    }
    let total = |f: &Fleet| {
        (0..2)
            .map(|i| f.handle.adapter_in_flight(&addr(f, i), "sql"))
            .sum::<u32>()
    };
    // Pod 0 answers 500 to everything: requests landing there first are retried on pod 1.
    let mut short = body("sql");
    short["max_tokens"] = json!(2);
    for _ in 0..8 {
        let r = f.post("/v1/chat/completions", &short, &[]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(total(&f), 0, "every attempt's slot released");
    }
    let retried = f
        .counter("brix_gateway_upstream_retries_total", &[("model", "sql")])
        .await;
    assert!(retried >= 1.0, "{retried}");
    // A client that leaves mid-stream: counted while it streams, released when it goes.
    let mut stream = body("sql");
    stream["stream"] = json!(true);
    let r = f.post("/v1/chat/completions", &stream, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "target-pod"), "pod-1");
    assert_eq!(f.handle.adapter_in_flight(&addr(&f, 1), "sql"), 1);
    drop(r);
    eventually("the stream's slot released", || async { total(&f) == 0 }).await;
    // A client error leaves nothing behind either.
    let mut too_long = body("sql");
    too_long["max_tokens"] = json!(100_000);
    let r = f.post("/v1/chat/completions", &too_long, &[]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(total(&f), 0);
    assert_eq!(f.handle.in_flight(&addr(&f, 1)), 0);
}

/// A pod whose only GPU slot runs another adapter is passed over for a busier pod with a free
/// slot: the LoRA batch state comes from the engine's `vllm:lora_requests_info` through the
/// probe. (least-request would pick the idler pod and the request would wait for the slot.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lora_affinity_avoids_a_pod_whose_slots_are_taken() {
    let f = fleet(2, gateway_config(), |_| {
        let mut c = lora_sim();
        c.engine.max_loras = 1;
        c.engine.output_len = OutputLen::Fixed(1500);
        c
    })
    .await;
    f.handle
        .set_adapters(vec![route("sql", false), route("chat", false)]);
    for i in 0..2 {
        load(&f, i, "sql").await;
        load(&f, i, "chat").await;
        f.handle
            .set_pod_adapters(&addr(&f, i), vec!["sql".into(), "chat".into()]);
    }
    // Pinned streams: `chat` holds pod 0's slot; three base-model streams load pod 1.
    let pinned = |model: &str, i: usize| {
        let mut b = body(model);
        b["stream"] = json!(true);
        let (http, url, pod) = (f.http.clone(), f.url("/v1/chat/completions"), addr(&f, i));
        async move {
            let r = http
                .post(url)
                .header("routing-strategy", "session-affinity")
                .header("x-session-id", pod)
                .json(&b)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r
        }
    };
    let mut streams = vec![pinned("chat", 0).await];
    for _ in 0..3 {
        streams.push(pinned(MODEL, 1).await);
    }
    let sim0 = format!("http://{}/metrics", f.sims[0].addr);
    eventually("pod 0 runs chat", || async {
        let text = f
            .http
            .get(&sim0)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.contains("running_lora_adapters=\"chat\"")
    })
    .await;
    let seen = std::time::Instant::now();
    eventually("the gateway scraped pod 0 since", || async {
        f.handle.pods().iter().any(|p| {
            p.name == "pod-0"
                && p.metrics_age_s
                    .is_some_and(|a| a < seen.elapsed().as_secs_f64())
        })
    })
    .await;
    let mut short = body("sql");
    short["max_tokens"] = json!(2);
    let r = f.post("/v1/chat/completions", &short, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "target-pod"),
        "pod-1",
        "1 + 8 (slot wait) against 3 + 1"
    );
    drop(streams);
}
