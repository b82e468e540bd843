//! Redis specifics: AIBrix's key formats and TTLs, records shared with AIBrix, failing closed
//! when Redis is down, and start-up errors.

mod support;

use std::collections::BTreeMap;

use brix_admission::{Admission, AdmissionConfig, AdmissionError, Reject, User};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use support::{Backend, RedisServer, T0};

async fn raw(url: &str) -> MultiplexedConnection {
    let client = redis::Client::open(url).expect("url");
    client
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

#[tokio::test]
async fn counters_and_users_use_aibrix_keys() {
    let Some(b) = Backend::redis() else { return };
    let url = b.url().expect("redis");
    let cfg = AdmissionConfig {
        model_rps: BTreeMap::from([("llama".into(), 9)]),
        ..Default::default()
    };
    let adm = b
        .with_user(cfg, User::new("alice", Some(5), Some(1000)))
        .await;
    let _t = adm
        .admit(Some("alice"), "llama", 100, T0 + 7.0)
        .await
        .expect("admit");
    let mut conn = raw(&url).await;
    let user_bin = (T0 as u64 / 60) % 64;
    let model_bin = (T0 as u64 + 7) % 64;
    for (key, want, max_ttl) in [
        (format!("aibrix:alice_RPM_CURRENT:{user_bin}"), 1, 120),
        (format!("aibrix:alice_TPM_CURRENT:{user_bin}"), 100, 120),
        (
            format!("aibrix_model:llama_MODEL_RPS_CURRENT:{model_bin}"),
            1,
            2,
        ),
    ] {
        let value: i64 = conn.get(&key).await.expect("get");
        let ttl: i64 = conn.ttl(&key).await.expect("ttl");
        assert_eq!(value, want, "{key}");
        assert!(ttl > 0 && ttl <= max_ttl, "{key}: ttl {ttl}");
    }
    let json: String = conn.get("aibrix-users/alice").await.expect("user record");
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(
        json,
        serde_json::json!({"name": "alice", "rpm": 5, "tpm": 1000})
    );
}

#[tokio::test]
async fn records_written_by_aibrix_are_honoured() {
    let Some(b) = Backend::redis() else { return };
    let mut conn = raw(&b.url().expect("redis")).await;
    // As AIBrix's metadata service writes them; 0 is unlimited in Brix.
    let () = conn
        .set("aibrix-users/carol", r#"{"name":"carol","rpm":2,"tpm":0}"#)
        .await
        .expect("set");
    let () = conn
        .set("aibrix-users/broken", "not json")
        .await
        .expect("set");
    let adm = b.admission(AdmissionConfig::default()).await;
    for _ in 0..2 {
        let t = adm
            .admit(Some("carol"), "m", 10_000, T0)
            .await
            .expect("carol");
        assert!(!t.meters_tokens());
    }
    assert!(matches!(
        adm.admit(Some("carol"), "m", 0, T0).await,
        Err(Reject::RpmExceeded { .. })
    ));
    // A record that does not parse fails closed for its user, and is skipped when listing.
    let err = adm
        .admit(Some("broken"), "m", 0, T0)
        .await
        .expect_err("corrupt record");
    assert_eq!((err.status(), err.code()), (503, "service_unavailable"));
    let users = adm.list_users().await.expect("list");
    assert_eq!(users, vec![User::new("carol", Some(2), None)]);
}

#[tokio::test]
async fn redis_down_fails_closed_and_settle_does_not_fail() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let cfg = AdmissionConfig {
        redis_url: Some(server.url()),
        ..Default::default()
    };
    let adm = Admission::connect(cfg).await.expect("connect");
    adm.put_user(User::new("u", Some(100), Some(10_000)))
        .await
        .expect("put");
    let ticket = adm.admit(Some("u"), "m", 10, T0).await.expect("admit");
    server.kill();
    let err = adm
        .admit(Some("u"), "m", 10, T0)
        .await
        .expect_err("store down");
    assert!(matches!(err, Reject::Store(_)));
    assert_eq!(
        (err.status(), err.error_type(), err.code()),
        (503, "overloaded_error", "service_unavailable")
    );
    assert_eq!(err.as_label(), "store_unavailable");
    assert!(
        !err.to_string().contains("127.0.0.1"),
        "no internals in the client message"
    );
    adm.settle(ticket, 20).await;
    // A request with no user and no model limit needs no store.
    let _ = adm.admit(None, "m", 0, T0).await.expect("nothing to check");
}

#[tokio::test]
async fn start_up_errors() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let cfg = AdmissionConfig {
        redis_url: Some(format!("redis://:hunter2@127.0.0.1:{port}/0")),
        ..Default::default()
    };
    let err = Admission::connect(cfg).await.expect_err("nothing listens");
    assert!(matches!(err, AdmissionError::RedisConnect { .. }), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let cfg = AdmissionConfig {
        redis_url: Some("http://nope".into()),
        ..Default::default()
    };
    let err = Admission::connect(cfg).await.expect_err("bad url");
    assert!(matches!(err, AdmissionError::RedisUrl { .. }), "{err}");
    let cfg = AdmissionConfig {
        api_keys: vec![String::new()],
        ..Default::default()
    };
    assert!(matches!(
        Admission::connect(cfg).await,
        Err(AdmissionError::EmptyApiKey(0))
    ));
}
