//! Injected failures behave as documented, and only as documented.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{MODEL, config, start};

#[tokio::test]
async fn fail_rate_one_answers_500_with_an_error_body() {
    let mut cfg = config();
    cfg.faults.fail_rate = 1.0;
    let s = start(cfg).await;
    let (status, v) = s
        .post_json("/v1/completions", &json!({"model": MODEL, "prompt": "x"}))
        .await;
    assert_eq!(
        (
            status,
            v["error"]["type"].as_str(),
            v["error"]["code"].as_u64()
        ),
        (500, Some("InternalServerError"), Some(500))
    );
    assert_eq!(
        s.get("/health").await.status(),
        200,
        "failing requests do not make the server unhealthy"
    );
}

#[tokio::test]
async fn die_mid_stream_cuts_the_connection_after_n_tokens() {
    let mut cfg = config();
    cfg.faults.die_mid_stream_after = Some(2);
    let s = start(cfg).await;
    let body = json!({"model": MODEL, "prompt": "x", "max_tokens": 50, "ignore_eos": true, "stream": true});
    let mut r = s.post("/v1/completions", &body).await;
    assert_eq!(r.status(), 200);
    let mut text = String::new();
    let end = loop {
        match r.chunk().await {
            Ok(Some(bytes)) => text.push_str(std::str::from_utf8(&bytes).unwrap()),
            other => break other,
        }
    };
    assert!(
        end.is_err(),
        "the body must end in an error, not cleanly: {end:?}"
    );
    assert_eq!(text.matches("data: ").count(), 2, "{text}");
    assert!(!text.contains("[DONE]"));

    let body = json!({"model": MODEL, "prompt": "x", "max_tokens": 50, "ignore_eos": true});
    let res = match s
        .http
        .post(s.url("/v1/completions"))
        .json(&body)
        .send()
        .await
    {
        Ok(r) => r.text().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(res.is_err(), "a plain response must fail too");
    // Short answers finish before the cut and are untouched.
    let (status, _) = s
        .post_json(
            "/v1/completions",
            &json!({"model": MODEL, "prompt": "x", "max_tokens": 1}),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn startup_delay_reports_unready() {
    let mut cfg = config();
    cfg.faults.startup_delay = Duration::from_secs(3600);
    let s = start(cfg).await;
    assert_eq!(s.get("/health").await.status(), 503);
    let (status, v) = s
        .post_json("/v1/completions", &json!({"model": MODEL, "prompt": "x"}))
        .await;
    assert_eq!((status, v["error"]["code"].as_u64()), (503, Some(503)));
    assert_eq!(
        s.get("/metrics").await.status(),
        200,
        "metrics stay scrapeable"
    );
}

#[tokio::test]
async fn hang_rate_one_never_answers() {
    let mut cfg = config();
    cfg.faults.hang_rate = 1.0;
    let s = start(cfg).await;
    let http = s.http.clone();
    let url = s.url("/v1/completions");
    let pending = tokio::spawn(async move {
        http.post(url)
            .json(&json!({"model": MODEL, "prompt": "x"}))
            .send()
            .await
    });
    brix_testkit::eventually(
        "the hung request is in flight",
        Duration::from_secs(4),
        || async {
            let v: Value = s.get("/load").await.json().await.unwrap();
            v["server_load"].as_u64() == Some(1)
        },
    )
    .await;
    assert!(!pending.is_finished());
    pending.abort();
}
