//! API keys and per-user limits through the gateway.

use serde_json::json;

use crate::support::{MODEL, chat, fleet, gateway_config, header};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_users_and_exact_rpm_under_concurrency() {
    let mut cfg = gateway_config();
    cfg.admission.api_keys = vec!["sk-test".into()];
    cfg.admission.admin_key = Some("admin".into());
    cfg.admission.require_known_user = true;
    let f = fleet(2, cfg, |_| brix_testkit::sim_config(MODEL)).await;
    let auth = ("authorization", "Bearer sk-test");

    let r = f.post("/v1/chat/completions", &chat("x"), &[]).await;
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let r = f
        .post(
            "/v1/chat/completions",
            &chat("x"),
            &[("authorization", "Bearer wrong")],
        )
        .await;
    assert_eq!(r.status(), 401);

    let r = f
        .post(
            "/v1/chat/completions",
            &chat("x"),
            &[auth, ("user", "ghost")],
        )
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "x-error-user"), "true");

    let r = f
        .http
        .put(f.url("/admin/users/alice"))
        .bearer_auth("admin")
        .json(&json!({"rpm": 5, "tpm": 1_000_000}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (http, url) = (f.http.clone(), f.url("/v1/chat/completions"));
            tokio::spawn(async move {
                let r = http
                    .post(url)
                    .header("authorization", "Bearer sk-test")
                    .header("user", "alice")
                    .json(&chat("limited"))
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), header(&r, "retry-after"))
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            (200, _) => ok += 1,
            (429, retry) => assert!(retry.parse::<u64>().is_ok_and(|s| s <= 60), "{retry}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ok, 5, "exactly the RPM limit is admitted");
}

/// `require_known_user` admits no anonymous request: no `user` header, or one that is not
/// UTF-8, is 401 like an unknown user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_users_cannot_be_dodged() {
    let mut cfg = gateway_config();
    cfg.admission.require_known_user = true;
    let f = fleet(1, cfg, |_| brix_testkit::sim_config(MODEL)).await;
    let bad = reqwest::header::HeaderValue::from_bytes(&[0xff, b'a', 0xfe]).unwrap();
    for user in [None, Some(bad)] {
        let mut r = f.http.post(f.url("/v1/chat/completions")).json(&chat("x"));
        if let Some(u) = user.clone() {
            r = r.header("user", u);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401, "{user:?}");
        assert_eq!(header(&r, "x-error-user"), "true");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_user");
    }
}

/// TPM with `max_tokens` omitted reserves what the request may really generate (the rest of
/// the engine's 2048-token context), so concurrent requests cannot overrun the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_reserves_the_context_when_max_tokens_is_omitted() {
    let mut cfg = gateway_config();
    cfg.admission.admin_key = Some("admin".into());
    let f = fleet(1, cfg, |_| {
        let mut c = brix_testkit::sim_config(MODEL);
        c.engine.output_len = brix_sim::OutputLen::Fixed(400);
        c
    })
    .await;
    let r = f
        .http
        .put(f.url("/admin/users/bob"))
        .bearer_auth("admin")
        .json(&json!({"tpm": 4096}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    // Streams held open: every admission happens while the others are still running.
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        let body =
            json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": true});
        let r = f
            .post("/v1/chat/completions", &body, &[("user", "bob")])
            .await;
        match r.status().as_u16() {
            200 => open.push(r),
            429 => refused += 1,
            s => panic!("status {s}"),
        }
    }
    assert_eq!((open.len(), refused), (2, 6), "2 × 2048 fit in 4096");
}
