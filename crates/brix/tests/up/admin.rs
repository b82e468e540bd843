//! The admin APIs on the gateway's port (issue 9, "anonymous fleet control"): with API keys
//! set and no admin key, nobody scales the fleet or edits users; with a key, only the key
//! does, whatever the case of its `Bearer` scheme. Real sockets, real replicas.

use std::sync::Arc;

use brix_gateway::{GatewayConfig, Registry};
use brix_platform::admin::AdminGuard;
use brix_platform::{LocalPlatform, Platform};
use serde_json::json;

use crate::support::{eventually, sim_model, tempdir::Dir};

struct Fleet {
    base: String,
    platform: LocalPlatform,
    http: reqwest::Client,
    _logs: Dir,
}

/// A fleet of one sim replica behind a gateway that requires `sk-user`, with the fleet API
/// merged in as `brix up` does, guarded by `admin_key`.
async fn fleet(tag: &str, admin_key: Option<&str>) -> Fleet {
    let registry = Arc::new(Registry::new());
    let mut cfg = GatewayConfig::default();
    cfg.admission.api_keys = vec!["sk-user".into()];
    cfg.admission.admin_key = admin_key.map(str::to_string);
    let guard = AdminGuard::new(admin_key);
    let (routes, gateway) = brix_gateway::app_with_handle(cfg, registry.as_ref())
        .await
        .unwrap();
    let logs = Dir::new(tag);
    let platform = crate::support::platform(
        &[sim_model("m", 1, "fixed:2")],
        registry,
        &gateway,
        logs.0.clone(),
    );
    let app = routes.merge(brix_platform::admin::router(
        platform.clone(),
        gateway,
        guard,
    ));
    let base = crate::support::serve(app).await;
    Fleet {
        base,
        platform,
        http: reqwest::Client::new(),
        _logs: logs,
    }
}

impl Fleet {
    /// `POST /brix/fleet/scale` to 3 replicas with this `Authorization`; the status.
    async fn scale(&self, authorization: Option<&str>) -> u16 {
        let mut r = self
            .http
            .post(format!("{}/brix/fleet/scale", self.base))
            .json(&json!({"model": "m", "replicas": 3}));
        if let Some(a) = authorization {
            r = r.header("authorization", a);
        }
        r.send().await.unwrap().status().as_u16()
    }

    async fn get(&self, path: &str, authorization: Option<&str>) -> u16 {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(a) = authorization {
            r = r.header("authorization", a);
        }
        r.send().await.unwrap().status().as_u16()
    }

    async fn replicas(&self) -> usize {
        self.platform.replicas("m").await.unwrap().len()
    }
}

#[tokio::test]
async fn without_an_admin_key_the_admin_apis_are_off() {
    let f = fleet("admin-off", None).await;
    // Anonymous, with a user's API key, or with anything else: refused, nothing scaled.
    for auth in [None, Some("Bearer sk-user"), Some("Bearer anything")] {
        assert_eq!(f.scale(auth).await, 403, "{auth:?}");
        assert_eq!(f.get("/brix/fleet", auth).await, 403, "{auth:?}");
        assert_eq!(f.get("/admin/users", auth).await, 403, "{auth:?}");
    }
    assert_eq!(f.replicas().await, 1);
    f.platform.shutdown().await;
}

#[tokio::test]
async fn only_the_admin_key_scales_in_any_scheme_case() {
    let f = fleet("admin-key", Some("adm-secret")).await;
    for auth in [
        None,
        Some("Bearer sk-user"),
        Some("Bearer adm-secre"),
        Some("adm-secret"),
        Some("Basic adm-secret"),
    ] {
        assert_eq!(f.scale(auth).await, 401, "{auth:?}");
        assert_eq!(f.get("/brix/fleet", auth).await, 401, "{auth:?}");
        assert_eq!(f.get("/admin/users", auth).await, 401, "{auth:?}");
    }
    assert_eq!(f.replicas().await, 1, "a refused call scaled the fleet");
    assert_eq!(f.get("/brix/fleet", Some("BEARER adm-secret")).await, 200);
    assert_eq!(f.get("/admin/users", Some("bearer adm-secret")).await, 200);
    assert_eq!(f.scale(Some("bearer adm-secret")).await, 200);
    eventually("scaled to 3", || async { f.replicas().await == 3 }).await;
    f.platform.shutdown().await;
}
