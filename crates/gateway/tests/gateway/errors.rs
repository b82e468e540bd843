//! Bad input gets the OpenAI envelope with AIBrix's status, code and debug header.

use serde_json::json;

use crate::support::{MODEL, chat, fleet, gateway_config, header, plain};

/// One bad request and what it must get back.
struct Case {
    body: serde_json::Value,
    headers: &'static [(&'static str, &'static str)],
    status: u16,
    envelope: Option<(&'static str, Option<&'static str>, Option<&'static str>)>,
    debug: Option<(&'static str, &'static str)>,
}

impl Case {
    fn new(
        body: serde_json::Value,
        headers: &'static [(&'static str, &'static str)],
        status: u16,
    ) -> Self {
        Self {
            body,
            headers,
            status,
            envelope: None,
            debug: None,
        }
    }

    fn envelope(
        mut self,
        kind: &'static str,
        code: Option<&'static str>,
        param: Option<&'static str>,
    ) -> Self {
        self.envelope = Some((kind, code, param));
        self
    }

    fn debug(mut self, name: &'static str, value: &'static str) -> Self {
        self.debug = Some((name, value));
        self
    }
}

fn check_envelope(v: &serde_json::Value, kind: &str, code: Option<&str>, param: Option<&str>) {
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert_eq!(e["type"], kind, "{v}");
    assert_eq!(e["code"].as_str(), code, "{v}");
    assert_eq!(e["param"].as_str(), param, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_errors_table() {
    let f = plain(1).await;
    let cases = [
        Case::new(
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
            &[],
            400,
        )
        .envelope(
            "invalid_request_error",
            Some("model_not_found"),
            Some("model"),
        )
        .debug("x-error-no-model-backends", "nope"),
        Case::new(chat("x"), &[("routing-strategy", "fastest")], 400)
            .envelope(
                "invalid_request_error",
                Some("invalid_routing_strategy"),
                Some("routing-strategy"),
            )
            .debug("x-error-routing", "true"),
        Case::new(json!({"model": MODEL}), &[], 400).envelope(
            "invalid_request_error",
            None,
            Some("messages"),
        ),
        Case::new(json!({"messages": []}), &[], 400).envelope(
            "invalid_request_error",
            None,
            Some("messages"),
        ),
        // The engine's own refusal (context too long), passed on in the envelope.
        Case::new(
            json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 100000}),
            &[],
            400,
        ),
    ];
    for c in cases {
        let r = f.post("/v1/chat/completions", &c.body, c.headers).await;
        assert_eq!(r.status().as_u16(), c.status, "{}", c.body);
        if let Some((k, v)) = c.debug {
            assert_eq!(header(&r, k), v, "{}", c.body);
        }
        assert_eq!(header(&r, "request-id").len(), 36);
        let v: serde_json::Value = r.json().await.unwrap();
        match c.envelope {
            Some((kind, code, param)) => check_envelope(&v, kind, code, param),
            None => assert!(v["error"]["type"].is_string(), "{v}"),
        }
    }

    // As vLLM: no model means the only model served.
    let r = f
        .post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "x"}]}),
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);

    let r = f
        .http
        .post(f.url("/v1/chat/completions"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    check_envelope(
        &r.json().await.unwrap(),
        "invalid_request_error",
        None,
        None,
    );

    let r = f.http.get(f.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    check_envelope(
        &r.json().await.unwrap(),
        "invalid_request_error",
        Some("unknown_url"),
        None,
    );

    let r = f
        .http
        .get(f.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    let m = f.metrics().await;
    assert!(
        m.find(
            "brix_gateway_errors_total",
            &[("reason", "model_not_found")]
        )
        .any(|s| s.value == 1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413() {
    let mut cfg = gateway_config();
    cfg.proxy.max_body_bytes = 1024;
    let f = fleet(1, cfg, |_| brix_testkit::sim_config(MODEL)).await;
    let r = f
        .post("/v1/chat/completions", &chat(&"x".repeat(2000)), &[])
        .await;
    assert_eq!(r.status(), 413);
    check_envelope(
        &r.json().await.unwrap(),
        "invalid_request_error",
        Some("request_too_large"),
        None,
    );
    let (status, _, _) = f.call("/v1/chat/completions", &chat("small"), &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ready_pod_is_503() {
    let f = plain(1).await;
    f.sims[0].kill();
    // The probe takes the dead pod out; requests then get 503, not a hang.
    crate::support::eventually("pod leaves rotation", || async {
        let r = f.post("/v1/chat/completions", &chat("x"), &[]).await;
        r.status() == 503 && header(&r, "x-error-no-model-backends") == "true"
    })
    .await;
    let r = f.post("/v1/chat/completions", &chat("x"), &[]).await;
    check_envelope(
        &r.json().await.unwrap(),
        "overloaded_error",
        Some("service_unavailable"),
        None,
    );
}
