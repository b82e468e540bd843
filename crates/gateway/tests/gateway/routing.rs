//! Strategies chosen per request by header, and prefix-cache's stickiness and escape.

use serde_json::json;

use crate::support::{MODEL, chat, fleet, gateway_config, header, plain};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_strategy_routes_by_header() {
    let f = plain(3).await;
    for s in brix_router::Strategy::ALL {
        let (status, pod, _) = f
            .call(
                "/v1/chat/completions",
                &chat("route me"),
                &[("routing-strategy", s.as_str()), ("user", "alice")],
            )
            .await;
        assert_eq!(status, 200, "{s}");
        assert!(pod.starts_with("pod-"), "{s}: {pod}");
    }
    let r = f
        .post(
            "/v1/chat/completions",
            &chat("mix"),
            &[("routing-strategy", "prefix-cache:2,least-request:1")],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "routing-strategy"),
        "prefix-cache:2,least-request:1"
    );
}

/// A prompt well over one 128-byte block.
fn long_prompt(tag: &str) -> String {
    format!(
        "{tag}: {}",
        "You are a careful assistant who answers in full sentences. ".repeat(8)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_cache_keeps_a_repeated_prompt_and_a_growing_conversation_on_one_pod() {
    let f = plain(3).await;
    let h = [("routing-strategy", "prefix-cache")];
    let body = chat(&long_prompt("repeat"));
    let (_, first, _) = f.call("/v1/chat/completions", &body, &h).await;
    for _ in 0..10 {
        let (status, pod, _) = f.call("/v1/chat/completions", &body, &h).await;
        assert_eq!((status, pod.as_str()), (200, first.as_str()));
    }

    let mut messages = vec![json!({"role": "system", "content": long_prompt("conversation")})];
    let mut pods = Vec::new();
    for turn in 0..5 {
        messages.push(json!({"role": "user", "content": format!("question {turn}")}));
        let body = json!({"model": MODEL, "messages": messages});
        let (status, pod, reply) = f.call("/v1/chat/completions", &body, &h).await;
        assert_eq!(status, 200);
        pods.push(pod);
        messages.push(
            json!({"role": "assistant", "content": reply["choices"][0]["message"]["content"]}),
        );
    }
    assert!(
        pods.iter().all(|p| *p == pods[0]),
        "conversation moved: {pods:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_cache_moves_off_an_overloaded_pod() {
    let mut cfg = gateway_config();
    cfg.routing.imbalance_abs = 4;
    // Long answers: the held streams stay in flight at the engine for seconds (with
    // TCP_NODELAY a 4-token stream is over before the next request is routed).
    let f = fleet(3, cfg, |_| {
        let mut c = brix_testkit::sim_config(MODEL);
        c.engine.output_len = brix_sim::OutputLen::Fixed(1000);
        c
    })
    .await;
    let h = [("routing-strategy", "prefix-cache")];
    let mut body = chat(&long_prompt("hot"));
    body["stream"] = json!(true);
    // Five streams on the prompt's pod, held open (unread) so they stay in flight.
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(f.post("/v1/chat/completions", &body, &h).await);
    }
    let hot = header(&held[0], "target-pod");
    assert!(held.iter().all(|r| header(r, "target-pod") == hot));
    let mut probe = chat(&long_prompt("hot"));
    probe["max_tokens"] = json!(4);
    let (status, pod, _) = f.call("/v1/chat/completions", &probe, &h).await;
    assert_eq!(status, 200);
    assert_ne!(pod, hot, "an overloaded pod keeps taking its prefix");
    let m = f.metrics().await;
    assert!(
        m.find(
            "brix_gateway_routing_decisions_total",
            &[("strategy", "prefix-cache"), ("fallback", "load_imbalance")]
        )
        .any(|s| s.value >= 1.0)
    );
    drop(held);
    crate::support::eventually("held streams release their slots", || async {
        f.counter("brix_gateway_in_flight_requests", &[]).await == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_affinity_pins_by_the_returned_session_id() {
    let f = plain(3).await;
    let h = [("routing-strategy", "session-affinity")];
    let r = f.post("/v1/chat/completions", &chat("s"), &h).await;
    let (pod, session) = (header(&r, "target-pod"), header(&r, "x-session-id"));
    assert!(!session.is_empty());
    for _ in 0..5 {
        let r = f
            .post(
                "/v1/chat/completions",
                &chat("s"),
                &[h[0], ("x-session-id", &session)],
            )
            .await;
        assert_eq!(header(&r, "target-pod"), pod);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapters_route_to_the_pods_that_hold_them() {
    let f = fleet(3, gateway_config(), |_| {
        let mut c = brix_testkit::sim_config(MODEL);
        c.engine.enable_lora = true;
        c
    })
    .await;
    let load = json!({"lora_name": "sql", "lora_path": "adapters/sql"});
    let r = f
        .http
        .post(format!("http://{}/v1/load_lora_adapter", f.sims[1].addr))
        .json(&load)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    crate::support::eventually("the adapter is listed", || async {
        let v: serde_json::Value = f.get_json("/v1/models").await;
        v["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|m| m["id"] == "sql" && m["parent"] == MODEL))
    })
    .await;
    for _ in 0..5 {
        let body = json!({"model": "sql", "prompt": "select", "max_tokens": 2});
        let (status, pod, reply) = f
            .call("/v1/completions", &body, &[("routing-strategy", "random")])
            .await;
        assert_eq!((status, pod.as_str()), (200, "pod-1"), "{reply}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttft_explains_its_estimates_when_asked() {
    let f = plain(3).await;
    let body = chat(&long_prompt("explain"));
    // Warm one pod with the prompt: its estimate then has fewer uncached tokens.
    let h = [("routing-strategy", "ttft")];
    let (_, warm, _) = f.call("/v1/chat/completions", &body, &h).await;
    let r = f
        .post(
            "/v1/chat/completions",
            &body,
            &[("routing-strategy", "ttft"), ("x-brix-explain", "1")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let text = header(&r, "x-brix-route-estimate");
    // Every candidate, each with its estimate, cheapest first: the pod chosen.
    let names: Vec<&str> = text
        .split(", ")
        .map(|c| c.split('=').next().unwrap_or(""))
        .collect();
    assert_eq!(names.len(), 3, "{text}");
    assert_eq!(names[0], header(&r, "target-pod"), "{text}");
    assert_eq!(names[0], warm, "{text}");
    assert!(text.contains("ms(uncached "), "{text}");
    // Not asked: no header.
    let r = f.post("/v1/chat/completions", &body, &h).await;
    assert!(r.headers().get("x-brix-route-estimate").is_none());
}
