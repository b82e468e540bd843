//! The users API in-process (`tower::ServiceExt::oneshot`): the admin key, the REST routes,
//! AIBrix's metadata-service routes, and that a user written there is enforced.

mod support;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode};
use brix_admission::{Admission, AdmissionConfig, Reject, User};
use serde_json::{Value, json};
use support::{Backend, T0};
use tower::ServiceExt;

const ADMIN: &str = "Bearer admin-secret";

async fn app(b: &Backend) -> (Arc<Admission>, Router) {
    let cfg = AdmissionConfig {
        admin_key: Some("admin-secret".into()),
        ..Default::default()
    };
    let adm = Arc::new(b.admission(cfg).await);
    (Arc::clone(&adm), adm.admin_router())
}

/// Sends one request; returns status and JSON body (`Null` when empty).
async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let resp = app
        .clone()
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("json")
    };
    (status, json)
}

fn envelope_code(body: &Value) -> (&str, &str) {
    let err = &body["error"];
    assert!(
        err["message"].is_string() && err.get("param").is_some(),
        "{body}"
    );
    (
        err["type"].as_str().unwrap_or_default(),
        err["code"].as_str().unwrap_or_default(),
    )
}

#[tokio::test]
async fn admin_key_is_required_and_the_api_is_off_without_one() {
    let (_, app) = app(&Backend::Memory).await;
    for auth in [None, Some("Bearer wrong"), Some("admin-secret")] {
        let (status, body) = call(&app, Method::GET, "/admin/users", auth, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(
            envelope_code(&body),
            ("authentication_error", "invalid_api_key")
        );
    }
    let off = Arc::new(Backend::Memory.admission(AdmissionConfig::default()).await).admin_router();
    let (status, body) = call(
        &off,
        Method::POST,
        "/CreateUser",
        Some(ADMIN),
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        envelope_code(&body),
        ("permission_error", "admin_api_disabled")
    );
}

#[tokio::test]
async fn rest_users_memory() {
    rest_users(Backend::Memory).await;
}

#[tokio::test]
async fn rest_users_redis() {
    if let Some(b) = Backend::redis() {
        rest_users(b).await;
    }
}

async fn rest_users(b: Backend) {
    let (adm, app) = app(&b).await;
    let put =
        |name: &'static str, body: Value| call(&app, Method::PUT, name, Some(ADMIN), Some(body));
    let (status, body) = put("/admin/users/alice", json!({"rpm": 2, "tpm": 0})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"name": "alice", "rpm": 2, "tpm": 0}));
    let (status, _) = put("/admin/users/bob", json!({"name": "bob", "tpm": 500})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&app, Method::GET, "/admin/users/alice", Some(ADMIN), None).await;
    assert_eq!((status, body["rpm"].as_u64()), (StatusCode::OK, Some(2)));
    let (_, body) = call(&app, Method::GET, "/admin/users", Some(ADMIN), None).await;
    assert_eq!(body["users"].as_array().map(Vec::len), Some(2));
    // The stored limits are enforced at once.
    for _ in 0..2 {
        let _ = adm
            .admit(Some("alice"), "m", 0, T0)
            .await
            .expect("within rpm");
    }
    assert!(matches!(
        adm.admit(Some("alice"), "m", 0, T0).await,
        Err(Reject::RpmExceeded { .. })
    ));
    // Bad requests answer 400 in the envelope.
    for (uri, body) in [
        ("/admin/users/carol", json!({"rpm": -1})),
        ("/admin/users/carol", json!({"name": "dave", "rpm": 1})),
        ("/admin/users/a%20b", json!({"rpm": 1})),
    ] {
        let (status, body) = put(uri, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(envelope_code(&body).0, "invalid_request_error");
    }
    let (status, body) = call(
        &app,
        Method::DELETE,
        "/admin/users/alice",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    for method in [Method::GET, Method::DELETE] {
        let (status, body) = call(&app, method, "/admin/users/alice", Some(ADMIN), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            envelope_code(&body),
            ("invalid_request_error", "user_not_found")
        );
    }
}

#[tokio::test]
async fn aibrix_routes_memory() {
    aibrix_routes(Backend::Memory).await;
}

#[tokio::test]
async fn aibrix_routes_redis() {
    if let Some(b) = Backend::redis() {
        aibrix_routes(b).await;
    }
}

async fn aibrix_routes(b: Backend) {
    let (adm, app) = app(&b).await;
    let post =
        |uri: &'static str, body: Value| call(&app, Method::POST, uri, Some(ADMIN), Some(body));
    let (status, body) = post("/CreateUser", json!({"name": "u", "rpm": 3, "tpm": 300})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"message": "Created User: u", "user": {"name": "u", "rpm": 3, "tpm": 300}})
    );
    // Creating again keeps the stored record and says so.
    let (_, body) = post("/CreateUser", json!({"name": "u", "rpm": 9})).await;
    assert_eq!(
        body,
        json!({"message": "User: u exists", "user": {"name": "u", "rpm": 3, "tpm": 300}})
    );
    let (_, body) = post("/ReadUser", json!({"name": "u"})).await;
    assert_eq!(
        body,
        json!({"message": "User: u", "user": {"name": "u", "rpm": 3, "tpm": 300}})
    );
    let (_, body) = post("/UpdateUser", json!({"name": "u", "rpm": 4, "tpm": 0})).await;
    assert_eq!(body["message"], "Updated User: u");
    assert_eq!(
        adm.get_user("u").await.expect("get"),
        Some(User::new("u", Some(4), None))
    );
    for uri in ["/ReadUser", "/UpdateUser", "/DeleteUser"] {
        let (status, body) = post(uri, json!({"name": "ghost"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(body["error"]["message"], "User: ghost does not exist");
    }
    let (status, body) = post("/DeleteUser", json!({"name": "u"})).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::OK, Some("Deleted User: u"))
    );
    assert_eq!(adm.list_users().await.expect("list"), vec![]);
    let (status, _) = post("/CreateUser", json!({"rpm": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "name is required");
}
