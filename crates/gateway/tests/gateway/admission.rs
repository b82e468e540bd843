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
