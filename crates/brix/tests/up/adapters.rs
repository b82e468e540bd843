//! ModelAdapters live (issue 11): a fleet file's adapters are placed on as many replicas as
//! asked, served through the gateway, reloaded after a replica is killed while requests keep
//! succeeding on the other holder, unloaded everywhere when deleted; a bad artifact fails
//! with its reason; the admin API needs the admin key. Engines are `brix sim` child
//! processes (real HTTP, real LoRA endpoints, killable); adapters are real files on disk.

use std::sync::Arc;
use std::time::Duration;

use brix_gateway::{GatewayHandle, Registry};
use brix_platform::adapters::{AdapterConfig, AdapterStatus, Adapters};
use brix_platform::admin::AdminGuard;
use brix_platform::{FleetFile, LocalPlatform, Platform, ReplicaState};
use serde_json::{Value, json};

use crate::support::tempdir::Dir;
use crate::support::{BRIX, SMALL};

const ADMIN: &str = "adm-test";

struct Fleet {
    base: String,
    platform: LocalPlatform,
    _gateway: GatewayHandle,
    adapters: Adapters,
    http: reqwest::Client,
    dir: Dir,
}

/// The fleet file (with `{dir}` standing for a scratch directory holding adapters `sql`
/// and `chat`) running as `brix up` runs it, the controller on a 200 ms round.
async fn fleet(tag: &str, yaml: &str) -> Fleet {
    let dir = Dir::new(tag);
    for (name, r) in [("sql", 8), ("chat", 16)] {
        brix_testkit::lora::write_adapter(&dir.0.join(name), r, "base", 4096).unwrap();
    }
    std::fs::create_dir_all(dir.0.join("empty")).unwrap();
    let yaml = yaml
        .replace("{dir}", &dir.0.display().to_string())
        .replace("{brix}", BRIX)
        .replace("{small}", SMALL);
    let file = FleetFile::parse("fleet.yaml", &yaml).unwrap();
    let registry = Arc::new(Registry::new());
    let mut cfg = file.gateway.clone();
    cfg.admission.admin_key = Some(ADMIN.into());
    cfg.scrape.interval_ms = 50;
    let guard = AdminGuard::new(Some(ADMIN));
    let (routes, gateway) = brix_gateway::app_with_handle(cfg, registry.as_ref())
        .await
        .unwrap();
    let platform = crate::support::platform(&file.models, registry, &gateway, dir.0.join("logs"));
    platform.wait_ready(Duration::from_secs(60)).await.unwrap();
    let adapters = Adapters::start(
        &file.models,
        &file.resources,
        &file.secrets,
        platform.clone(),
        gateway.clone(),
        AdapterConfig {
            interval: Duration::from_millis(200),
            base_dir: dir.0.clone(),
            cache_dir: dir.0.join("cache"),
            ..AdapterConfig::default()
        },
    );
    let app = routes.merge(brix_platform::adapters::api::router(
        adapters.clone(),
        guard,
    ));
    let base = crate::support::serve(app).await;
    Fleet {
        base,
        platform,
        _gateway: gateway,
        adapters,
        http: reqwest::Client::new(),
        dir,
    }
}

impl Fleet {
    fn status(&self, name: &str) -> Option<AdapterStatus> {
        self.adapters.status().into_iter().find(|a| a.name == name)
    }

    async fn until(&self, what: &str, check: impl Fn(Option<AdapterStatus>) -> bool) {
        let name = what
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let last = std::sync::Mutex::new(None);
        let ok = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let s = self.status(&name);
                if check(s.clone()) {
                    return;
                }
                *last.lock().unwrap() = s;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(
            ok.is_ok(),
            "{what}: last status {:#?}",
            last.lock().unwrap()
        );
    }

    async fn chat(&self, model: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/chat/completions", self.base))
            .timeout(Duration::from_secs(30))
            .json(&json!({"model": model, "max_tokens": 4,
                "messages": [{"role": "user", "content": "select 1"}]}))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }

    /// The adapters each replica's engine lists, by replica id.
    async fn listed(&self) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for r in self.platform.replicas("base").await.unwrap() {
            let mut names = Vec::new();
            if let Ok(resp) = self
                .http
                .get(format!("http://{}/v1/models", r.address))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                && let Ok(v) = resp.json::<Value>().await
            {
                for m in v["data"].as_array().into_iter().flatten() {
                    if !m["parent"].is_null() {
                        names.push(m["id"].as_str().unwrap_or_default().to_string());
                    }
                }
            }
            out.push((r.id, names));
        }
        out
    }
}

fn running(want: u32) -> impl Fn(Option<AdapterStatus>) -> bool {
    move |s| s.is_some_and(|s| s.phase == "Running" && s.ready_replicas == want)
}

const FILE: &str = "
models:
  - name: base
    replicas: 3
    engine:
      command:
        command: '{brix} sim --port {port} --served-model-name {model} {small} --output-len fixed:4 --enable-lora --max-loras 2 --max-cpu-loras 4 --max-lora-rank 16'
        ready_timeout_s: 60
        stop_grace_s: 2
resources:
  - apiVersion: model.aibrix.ai/v1alpha1
    kind: ModelAdapter
    metadata: {name: sql}
    spec: {baseModel: base, artifactURL: '{dir}/sql', replicas: 2}
  - apiVersion: model.aibrix.ai/v1alpha1
    kind: ModelAdapter
    metadata: {name: chat}
    spec: {baseModel: base, artifactURL: chat, replicas: 1}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adapters_are_placed_served_reloaded_after_a_kill_and_unloaded_when_deleted() {
    let f = fleet("lora-e2e", FILE).await;
    f.until("sql on 2 replicas", running(2)).await;
    f.until("chat on 1 replica", running(1)).await;
    let sql = f.status("sql").unwrap();
    assert_eq!(sql.desired_replicas, 2);
    assert_eq!(
        sql.condition("Initialized").unwrap().reason,
        "ArtifactVerified"
    );
    for model in ["sql", "chat", "base"] {
        let (code, body) = f.chat(model).await;
        assert_eq!(code, 200, "{model}: {body}");
        assert_eq!(body["model"], model, "{body}");
    }
    // What the engines list is what the status says.
    let listed = f.listed().await;
    let holders: Vec<&String> = listed
        .iter()
        .filter(|(_, a)| a.contains(&"sql".to_string()))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(holders.len(), 2, "{listed:?}");
    assert_eq!(
        sql.instances.iter().collect::<Vec<_>>(),
        holders,
        "{listed:?}"
    );

    // Kill one holder of `sql`: requests keep succeeding on the other, and the adapter is
    // back on two replicas once the killed one restarts (or on the third).
    let victim = f
        .platform
        .replicas("base")
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.id == sql.instances[0])
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim.pid.unwrap() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut codes = Vec::new();
    for _ in 0..30 {
        codes.push(f.chat("sql").await.0);
    }
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    f.until("sql back on 2 replicas", |s| {
        s.is_some_and(|s| s.ready_replicas == 2 && s.phase == "Running")
    })
    .await;
    // The killed replica is restarted by the platform (the copy it lost may have moved to the
    // third replica meanwhile: the placement keeps 2 ready copies, not a particular replica).
    let back = brix_testkit::eventually_some(
        "the killed replica restarted and ready",
        Duration::from_secs(60),
        || async {
            f.platform
                .replicas("base")
                .await
                .ok()?
                .into_iter()
                .find(|r| r.id == victim.id && r.restarts >= 1 && r.state == ReplicaState::Ready)
        },
    )
    .await;
    assert!(back.restarts >= 1, "{back:?}");
    // What the engines themselves list: two holders again (the status above may lag a round).
    brix_testkit::eventually(
        "two engines list sql again",
        Duration::from_secs(60),
        || async {
            let listed = f.listed().await;
            listed
                .iter()
                .filter(|(_, a)| a.contains(&"sql".to_string()))
                .count()
                == 2
        },
    )
    .await;

    // Deleting `chat` unloads it everywhere, then forgets it.
    let r = f
        .http
        .delete(format!("{}/brix/adapters/chat", f.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    f.until("chat forgotten", |s| s.is_none()).await;
    for (id, adapters) in f.listed().await {
        assert!(
            !adapters.contains(&"chat".to_string()),
            "{id}: {adapters:?}"
        );
    }
    let (code, body) = f.chat("chat").await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"]["code"], "model_not_found", "{body}");
    assert_eq!(f.chat("sql").await.0, 200);
    f.platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_artifact_fails_the_adapter_with_its_reason_and_the_api_needs_the_key() {
    let f = fleet("lora-bad", FILE).await;
    f.until("sql on 2 replicas", running(2)).await;
    let doc = |name: &str, url: &str| {
        format!(
            "apiVersion: model.aibrix.ai/v1alpha1\nkind: ModelAdapter\nmetadata: {{name: {name}}}\nspec: {{baseModel: base, artifactURL: '{url}'}}\n"
        )
    };
    let put = |name: &str, body: String, key: Option<&str>| {
        let r = f
            .http
            .put(format!("{}/brix/adapters/{name}", f.base))
            .body(body);
        match key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
        .send()
    };
    let anon = put("broken", doc("broken", "empty"), None).await.unwrap();
    assert_eq!(anon.status(), 401);
    let wrong = put("broken", doc("other", "empty"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    let unknown_base = doc("x", "empty").replace("baseModel: base", "baseModel: nope");
    let r = put("x", unknown_base, Some(ADMIN)).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("nope"));

    let r = put("broken", doc("broken", "empty"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    f.until("broken failed", |s| s.is_some_and(|s| s.phase == "Failed"))
        .await;
    let s = f.status("broken").unwrap();
    let init = s.condition("Initialized").unwrap();
    assert_eq!(
        (init.status.as_str(), init.reason.as_str()),
        ("False", "ArtifactInvalid")
    );
    assert!(init.message.contains("adapter_config.json"), "{init:?}");
    assert_eq!(s.ready_replicas, 0);
    let (code, body) = f.chat("broken").await;
    assert_eq!(code, 503, "{body}");
    // Nothing else was disturbed.
    assert_eq!(f.chat("sql").await.0, 200);
    let ready = f.platform.replicas("base").await.unwrap();
    assert!(ready.iter().all(|r| r.state == ReplicaState::Ready));

    // A fixed artifact recovers the same adapter.
    brix_testkit::lora::write_adapter(&f.dir.0.join("fixed"), 8, "base", 1024).unwrap();
    let r = put("broken", doc("broken", "fixed"), Some(ADMIN))
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    f.until("broken running", |s| {
        s.is_some_and(|s| s.phase == "Running" && s.ready_replicas == 3)
    })
    .await;
    assert_eq!(f.chat("broken").await.0, 200);
    f.platform.shutdown().await;
}
