//! One controller round: observe (replicas, `/v1/models`, artifacts, traffic), plan (the pure
//! policy), act (drain, resume, unload, load), report (gateway routes, status).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brix_adapters::{ActionKind, AdapterView, Placement, PodView, Snapshot};
use brix_api::{EngineSpec, ModelSpec};
use tokio::task::JoinSet;

use super::engine::{CallError, EngineClient, Listing};
use super::fetch::{FetchError, Fetched, Fetcher};
use super::status::{AdapterStatus, Condition, shown_url};
use super::{AdapterConfig, AdapterGateway, Shared};
use crate::platform::{Platform, ReplicaState};

/// A listing older than this is not trusted: the replica is taken as not ready.
const LISTING_TTL: Duration = Duration::from_secs(30);
/// Back-off after a failure that may pass: 1 s × 2^n, capped.
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// One replica as the controller sees it.
#[derive(Clone, Debug)]
struct Pod {
    id: String,
    model: String,
    address: String,
    ready: bool,
    /// Restarts so far: a listing taken before the last restart says nothing of now.
    restarts: u32,
    /// Its runtime sidecar's address, when one runs beside it: loads of object-store and hub
    /// artifacts go through it (delegated), as the Kubernetes controller does for a pod with
    /// an `aibrix-runtime` container.
    runtime: Option<String>,
    labels: BTreeMap<String, String>,
}

/// An artifact's state for one adapter (by URL).
enum Artifact {
    Fetching,
    Ready(Fetched),
    Failed {
        error: FetchError,
        retry_at: Instant,
    },
}

/// A failed engine call and when to try again.
struct Backoff {
    failures: u32,
    next: Instant,
    error: CallError,
}

pub(crate) struct Driver<P, G> {
    shared: Arc<Shared>,
    platform: P,
    gateway: G,
    cfg: AdapterConfig,
    engine: EngineClient,
    fetcher: Fetcher,
    previous: Placement,
    /// (replica id, adapter) drains in force.
    draining: BTreeSet<(String, String)>,
    /// By adapter name: (URL, state).
    artifacts: BTreeMap<String, (String, Artifact)>,
    fetches: JoinSet<(String, String, Result<Fetched, FetchError>)>,
    /// By (replica id, adapter).
    backoff: BTreeMap<(String, String), Backoff>,
    /// Set when a cached artifact may have lost its last user (an adapter forgotten, a fetch
    /// done): the cache is cleaned once no fetch is in flight.
    retain_due: bool,
    /// By replica id: the last good listing, when, and the replica's restarts then.
    listings: BTreeMap<String, (Listing, Instant, u32)>,
}

impl<P: Platform, G: AdapterGateway> Driver<P, G> {
    pub(crate) fn new(shared: Arc<Shared>, platform: P, gateway: G, cfg: AdapterConfig) -> Self {
        let fetcher = Fetcher::new(cfg.base_dir.clone(), cfg.cache_dir.clone());
        Self {
            shared,
            platform,
            gateway,
            cfg,
            engine: EngineClient::new(),
            fetcher,
            previous: Placement::new(),
            draining: BTreeSet::new(),
            artifacts: BTreeMap::new(),
            fetches: JoinSet::new(),
            retain_due: false,
            backoff: BTreeMap::new(),
            listings: BTreeMap::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            self.round().await;
            let shared = self.shared.clone();
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.interval) => {}
                _ = shared.wake.notified() => {}
                Some(Ok((name, url, result))) = self.fetches.join_next() => {
                    self.fetched(name, url, result);
                }
            }
        }
    }

    fn fetched(&mut self, name: String, url: String, result: Result<Fetched, FetchError>) {
        let state = match result {
            Ok(f) => {
                // It may replace another digest (a new URL, changed content).
                self.retain_due = true;
                Artifact::Ready(f)
            }
            Err(error) => {
                tracing::warn!(adapter = %name, error = %error.why, "adapter artifact");
                let wait = if error.retryable {
                    Duration::from_secs(5)
                } else {
                    BACKOFF_CAP
                };
                Artifact::Failed {
                    error,
                    retry_at: Instant::now() + wait,
                }
            }
        };
        self.artifacts.insert(name, (url, state));
    }

    async fn round(&mut self) {
        while let Some(Ok((name, url, result))) = self.fetches.try_join_next() {
            self.fetched(name, url, result);
        }
        let specs = self.shared.state().specs.clone();
        let models = self.shared.models.clone();
        let pods = self.pods(&models).await;
        self.list(&pods, &specs).await;
        self.start_fetches(&pods, &specs, &models);
        let traffic = self.gateway.adapter_rps();
        let snapshot = self.snapshot(&pods, &specs, &models, &traffic);
        let plan = match brix_adapters::plan(&snapshot) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "adapter placement");
                return;
            }
        };
        self.act(&plan, &pods, &specs).await;
        self.previous = plan.placement.clone();
        self.report(&plan, &pods, &specs, &snapshot, &traffic);
    }

    /// Every replica of every LoRA-capable model.
    async fn pods(&self, models: &[ModelSpec]) -> Vec<Pod> {
        let mut pods = Vec::new();
        for m in models {
            let Ok(replicas) = self.platform.replicas(&m.name).await else {
                continue;
            };
            for r in replicas {
                pods.push(Pod {
                    labels: m.replica_labels(&r.id),
                    ready: r.state == ReplicaState::Ready,
                    restarts: r.restarts,
                    runtime: r.runtime,
                    id: r.id,
                    model: r.model,
                    address: r.address,
                });
            }
        }
        pods
    }

    /// Refreshes the listings of ready replicas (concurrently, each bounded in time).
    async fn list(&mut self, pods: &[Pod], specs: &BTreeMap<String, super::Desired>) {
        let mut calls = JoinSet::new();
        for p in pods.iter().filter(|p| p.ready) {
            let (engine, id, address) = (self.engine.clone(), p.id.clone(), p.address.clone());
            let (key, restarts) = (api_key(specs, &p.model), p.restarts);
            calls.spawn(async move { (id, restarts, engine.list(&address, key.as_deref()).await) });
        }
        while let Some(Ok((id, restarts, result))) = calls.join_next().await {
            match result {
                Ok(listing) => {
                    self.listings
                        .insert(id, (listing, Instant::now(), restarts));
                }
                Err(e) => tracing::debug!(replica = %id, error = %e.why, "listing adapters"),
            }
        }
        let known: BTreeSet<&str> = pods.iter().map(|p| p.id.as_str()).collect();
        self.listings.retain(|id, _| known.contains(id.as_str()));
        self.draining.retain(|(id, _)| known.contains(id.as_str()));
    }

    /// The listing of a replica if it is ready and was listed recently.
    fn listing(&self, pod: &Pod) -> Option<&Listing> {
        let (l, at, restarts) = self.listings.get(&pod.id)?;
        (pod.ready && *restarts == pod.restarts && at.elapsed() < LISTING_TTL).then_some(l)
    }

    fn start_fetches(
        &mut self,
        pods: &[Pod],
        specs: &BTreeMap<String, super::Desired>,
        models: &[ModelSpec],
    ) {
        for (name, d) in specs.iter().filter(|(_, d)| !d.deleted) {
            let url = &d.adapter.spec.artifact_url;
            let due = match self.artifacts.get(name) {
                Some((u, _)) if u != url => true,
                Some((_, Artifact::Failed { retry_at, .. })) => Instant::now() >= *retry_at,
                Some(_) => false,
                None => true,
            };
            if !due {
                continue;
            }
            let secret = self.secret_of(&d.adapter.spec);
            let max_rank = d
                .adapter
                .target_model()
                .and_then(|b| models.iter().find(|m| m.name == b))
                .and_then(|m| lora_limits(m).2);
            // The adapter's `base_model_name_or_path` must name the base model: its served
            // name or what its engines report as their root (the path or hub id served).
            let base = d.adapter.target_model().unwrap_or_default();
            let mut base_models = vec![base.to_string()];
            for p in pods.iter().filter(|p| p.model == base) {
                if let Some(l) = self.listing(p) {
                    base_models.extend(l.roots.iter().cloned());
                }
            }
            let (fetcher, name, url) = (self.fetcher.clone(), name.clone(), url.clone());
            self.artifacts
                .insert(name.clone(), (url.clone(), Artifact::Fetching));
            self.fetches.spawn(async move {
                let r = fetcher
                    .fetch(&url, secret.as_ref(), max_rank, base_models)
                    .await;
                (name, url, r)
            });
        }
        self.artifacts.retain(|name, _| specs.contains_key(name));
    }

    /// The fleet secret an adapter's `credentialsSecretRef` names, if any (for a fetch here or
    /// a delegated load through a replica's runtime).
    fn secret_of(&self, spec: &brix_api::ModelAdapterSpec) -> Option<BTreeMap<String, String>> {
        let name = &spec.credentials_secret_ref.as_ref()?.name;
        self.shared.secrets.get(name).cloned()
    }

    fn failed_artifact(&self, name: &str) -> Option<&FetchError> {
        match self.artifacts.get(name) {
            Some((_, Artifact::Failed { error, .. })) if !error.retryable => Some(error),
            _ => None,
        }
    }

    fn snapshot(
        &self,
        pods: &[Pod],
        specs: &BTreeMap<String, super::Desired>,
        models: &[ModelSpec],
        traffic: &BTreeMap<String, f64>,
    ) -> Snapshot {
        let pod_views = pods
            .iter()
            .map(|p| {
                let listing = self.listing(p);
                let (max_loras, max_cpu_loras, _) = models
                    .iter()
                    .find(|m| m.name == p.model)
                    .map_or((1, 1, None), lora_limits);
                let draining = self
                    .draining
                    .iter()
                    .filter(|(id, _)| *id == p.id)
                    .map(|(_, a)| {
                        (
                            a.clone(),
                            self.gateway.adapter_in_flight(&p.address, a) == 0,
                        )
                    })
                    .collect();
                PodView {
                    name: p.id.clone(),
                    base_model: p.model.clone(),
                    ready: listing.is_some(),
                    max_loras,
                    max_cpu_loras,
                    loaded: listing.map(|l| l.adapters.clone()).unwrap_or_default(),
                    draining,
                }
            })
            .collect();
        let adapters = specs
            .iter()
            .map(|(name, d)| {
                let spec = &d.adapter.spec;
                let eligible = spec.pod_selector.as_ref().map(|sel| {
                    pods.iter()
                        .filter(|p| sel.matches(&p.labels))
                        .map(|p| p.id.clone())
                        .collect()
                });
                AdapterView {
                    name: name.clone(),
                    base_model: d.adapter.target_model().unwrap_or_default().to_string(),
                    // A bad artifact is placed nowhere (copies loaded before are drained).
                    replicas: if self.failed_artifact(name).is_some() {
                        Some(0)
                    } else {
                        spec.replicas
                    },
                    eligible,
                    traffic_rps: traffic.get(name).copied().unwrap_or(0.0),
                    deleted: d.deleted,
                }
            })
            .collect();
        Snapshot {
            pods: pod_views,
            adapters,
            previous: self.previous.clone(),
            config: self.cfg.placement.clone(),
        }
    }

    async fn act(
        &mut self,
        plan: &brix_adapters::Plan,
        pods: &[Pod],
        specs: &BTreeMap<String, super::Desired>,
    ) {
        let by_id: BTreeMap<&str, &Pod> = pods.iter().map(|p| (p.id.as_str(), p)).collect();
        let mut calls = JoinSet::new();
        for a in &plan.actions {
            let Some(pod) = by_id.get(a.pod.as_str()) else {
                continue;
            };
            let key = (a.pod.clone(), a.adapter.clone());
            match a.kind {
                ActionKind::Drain => {
                    self.gateway
                        .set_adapter_draining(&pod.address, &a.adapter, true);
                    self.draining.insert(key);
                    continue;
                }
                ActionKind::Resume => {
                    self.gateway
                        .set_adapter_draining(&pod.address, &a.adapter, false);
                    self.draining.remove(&key);
                    continue;
                }
                ActionKind::Unload | ActionKind::Load => {}
            }
            if self
                .backoff
                .get(&key)
                .is_some_and(|b| Instant::now() < b.next)
            {
                continue;
            }
            let api_key = specs
                .get(&a.adapter)
                .and_then(|d| d.adapter.spec.additional_config.get("api-key").cloned());
            let (engine, address, kind) = (self.engine.clone(), pod.address.clone(), a.kind);
            let runtime_key = self.cfg.runtime_key.clone();
            let delegated = specs
                .get(&a.adapter)
                .zip(pod.runtime.clone())
                .filter(|(d, _)| !is_local(&d.adapter.spec.artifact_url))
                .map(|(d, at)| {
                    let secret = self.secret_of(&d.adapter.spec);
                    let spec = &d.adapter.spec;
                    (
                        at,
                        spec.artifact_url.clone(),
                        spec.additional_config.clone(),
                        secret,
                    )
                });
            let path = match (kind, &delegated) {
                (ActionKind::Load, None) => match self.artifacts.get(&a.adapter) {
                    Some((_, super::driver::Artifact::Ready(f))) => {
                        Some(f.dir.to_string_lossy().into_owned())
                    }
                    _ => continue, // not fetched yet: the next round loads it
                },
                _ => None,
            };
            calls.spawn(async move {
                let name = &key.1;
                let api_key = api_key.as_deref();
                let r = match (kind, &delegated, &path) {
                    (ActionKind::Load, Some((at, url, extra, secret)), _) => {
                        let k = runtime_key.as_deref();
                        engine
                            .sidecar_load_with(at, name, url, extra, secret.as_ref(), k)
                            .await
                    }
                    (ActionKind::Load, None, Some(p)) => {
                        engine.load(&address, name, p, api_key).await
                    }
                    (_, Some((at, ..)), _) => {
                        engine
                            .sidecar_unload(at, name, runtime_key.as_deref())
                            .await
                    }
                    _ => engine.unload(&address, name, api_key).await,
                };
                (key, address, kind, r)
            });
        }
        while let Some(Ok((key, address, kind, result))) = calls.join_next().await {
            match result {
                Ok(()) => {
                    self.backoff.remove(&key);
                    if let Some((l, _, _)) = self.listings.get_mut(&key.0) {
                        if kind == ActionKind::Load {
                            l.adapters.insert(key.1.clone());
                        } else {
                            l.adapters.remove(&key.1);
                        }
                    }
                    if kind == ActionKind::Unload {
                        self.draining.remove(&key);
                        self.gateway.set_adapter_draining(&address, &key.1, false);
                    }
                    tracing::info!(replica = %key.0, adapter = %key.1, action = ?kind, "adapter");
                }
                Err(error) => {
                    tracing::warn!(replica = %key.0, adapter = %key.1, action = ?kind, error = %error.why, "adapter");
                    let failures = self.backoff.get(&key).map_or(0, |b| b.failures) + 1;
                    let wait = if error.retryable {
                        Duration::from_secs(1u64 << failures.min(6)).min(BACKOFF_CAP)
                    } else {
                        BACKOFF_CAP
                    };
                    self.backoff.insert(
                        key,
                        Backoff {
                            failures,
                            next: Instant::now() + wait,
                            error,
                        },
                    );
                }
            }
        }
        let live: BTreeSet<&str> = pods.iter().map(|p| p.id.as_str()).collect();
        self.backoff
            .retain(|(id, a), _| live.contains(id.as_str()) && specs.contains_key(a));
    }

    fn report(
        &mut self,
        plan: &brix_adapters::Plan,
        pods: &[Pod],
        specs: &BTreeMap<String, super::Desired>,
        snapshot: &Snapshot,
        traffic: &BTreeMap<String, f64>,
    ) {
        for p in pods {
            if let Some(l) = self.listing(p) {
                self.gateway
                    .set_pod_adapters(&p.address, l.adapters.iter().cloned().collect());
            }
        }
        let mut statuses = BTreeMap::new();
        let mut forget = Vec::new();
        for (name, d) in specs {
            let st = self.status_of(name, d, plan, pods, snapshot, traffic);
            if d.deleted
                && plan
                    .status
                    .get(name)
                    .is_none_or(|s| s.resident_on.is_empty())
            {
                forget.push(name.clone());
                continue;
            }
            statuses.insert(name.clone(), st);
        }
        let routes = statuses
            .values()
            .filter(|s| s.phase != "Deleting")
            .map(|s| {
                let pending =
                    s.phase != "Failed" && s.ready_replicas == 0 && s.desired_replicas > 0;
                (s.name.clone(), s.base_model.clone(), pending)
            })
            .collect();
        self.gateway.set_adapter_routes(routes);
        {
            let mut state = self.shared.state();
            for name in &forget {
                // Only if it was not re-applied meanwhile.
                if state.specs.get(name).is_some_and(|d| d.deleted) {
                    state.specs.remove(name);
                }
            }
            state.status = statuses;
        }
        for name in &forget {
            self.artifacts.remove(name);
        }
        self.retain_due |= !forget.is_empty();
        // A fetch in flight may have just renamed its digest into the cache: wait for it.
        if self.retain_due && self.fetches.is_empty() {
            self.retain_due = false;
            let keep: Vec<String> = self
                .artifacts
                .values()
                .filter_map(|(_, a)| match a {
                    Artifact::Ready(f) => Some(f.digest.clone()),
                    _ => None,
                })
                .collect();
            let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
            self.fetcher.retain(&keep);
        }
    }

    fn status_of(
        &self,
        name: &str,
        d: &super::Desired,
        plan: &brix_adapters::Plan,
        pods: &[Pod],
        snapshot: &Snapshot,
        traffic: &BTreeMap<String, f64>,
    ) -> AdapterStatus {
        let base = d.adapter.target_model().unwrap_or_default().to_string();
        let placed = plan.status.get(name);
        let desired = placed.map_or(0, |s| s.wanted);
        let instances: Vec<String> = pods
            .iter()
            .filter(|p| {
                self.listing(p).is_some_and(|l| l.adapters.contains(name))
                    && !self.draining.contains(&(p.id.clone(), name.to_string()))
            })
            .map(|p| p.id.clone())
            .collect();
        let view = snapshot.adapters.iter().find(|a| a.name == name);
        let candidates = snapshot
            .pods
            .iter()
            .filter(|p| p.ready && p.base_model == base)
            .filter(|p| {
                view.and_then(|v| v.eligible.as_ref())
                    .is_none_or(|e| e.contains(&p.name))
            })
            .map(|p| p.name.clone())
            .collect();
        let ready = instances.len() as u32;
        let mut conditions = Vec::new();
        let mut failed = false;
        let artifact = self.artifacts.get(name).map(|(_, a)| a);
        conditions.push(match artifact {
            Some(Artifact::Ready(f)) => Condition::new(
                "Initialized",
                true,
                "ArtifactVerified",
                format!("rank {} at {}", f.rank, f.dir.display()),
            ),
            Some(Artifact::Failed { error, .. }) if !error.retryable => {
                failed = true;
                Condition::new("Initialized", false, "ArtifactInvalid", error.why.clone())
            }
            Some(Artifact::Failed { error, .. }) => Condition::new(
                "Initialized",
                false,
                "ArtifactUnavailable",
                error.why.clone(),
            ),
            _ => Condition::new("Initialized", false, "Downloading", "fetching the artifact"),
        });
        let shortfall = placed.and_then(|s| s.shortfall);
        conditions.push(match shortfall {
            Some(s) => Condition::new(
                "Scheduled",
                false,
                &format!("{s:?}"),
                format!(
                    "placed on {} of {desired} replicas",
                    placed.map_or(0, |s| s.placed)
                ),
            ),
            None => Condition::new(
                "Scheduled",
                desired > 0,
                "Placed",
                format!("{desired} replicas"),
            ),
        });
        let load_errors: Vec<String> = self
            .backoff
            .iter()
            .filter(|((_, a), _)| a == name)
            .map(|((id, _), b)| format!("{id}: {}", b.error.why))
            .collect();
        let hard = self
            .backoff
            .iter()
            .any(|((_, a), b)| a == name && !b.error.retryable);
        conditions.push(if ready >= desired && desired > 0 {
            Condition::new(
                "Ready",
                true,
                "Loaded",
                format!("listed by {ready} replicas"),
            )
        } else if !load_errors.is_empty() {
            Condition::new("Ready", false, "LoadFailed", load_errors.join("; "))
        } else {
            Condition::new(
                "Ready",
                false,
                "Loading",
                format!("{ready} of {desired} loaded"),
            )
        });
        let phase = if d.deleted {
            "Deleting"
        } else if failed || (hard && ready == 0) {
            "Failed"
        } else if ready > 0 {
            "Running"
        } else if placed.is_some_and(|s| s.placed > 0) {
            "Scheduled"
        } else {
            "Pending"
        };
        AdapterStatus {
            name: name.to_string(),
            base_model: base,
            artifact: shown_url(&d.adapter.spec.artifact_url),
            phase: phase.into(),
            desired_replicas: desired,
            ready_replicas: ready,
            instances,
            candidates,
            traffic_rps: traffic.get(name).copied().unwrap_or(0.0),
            digest: match artifact {
                Some(Artifact::Ready(f)) => Some(f.digest.clone()),
                _ => None,
            },
            conditions,
        }
    }
}

/// Whether an artifact URL is a local path (loaded from the controller's verified copy;
/// everything else goes through a runtime sidecar when the replica has one).
fn is_local(url: &str) -> bool {
    matches!(
        brix_api::Artifact::parse(url),
        Ok(brix_api::Artifact::Local(_))
    )
}

/// The bearer key adapters of `model` give their engines (`additionalConfig.api-key`).
fn api_key(specs: &BTreeMap<String, super::Desired>, model: &str) -> Option<String> {
    specs
        .values()
        .filter(|d| d.adapter.target_model() == Some(model))
        .find_map(|d| d.adapter.spec.additional_config.get("api-key").cloned())
}

/// (`max_loras`, `max_cpu_loras`, `max_lora_rank`) of a model's engines: the sim's fields, or
/// the vLLM flags in a command line, with vLLM's defaults (1, = max_loras, 16).
pub(crate) fn lora_limits(m: &ModelSpec) -> (u32, u32, Option<u32>) {
    match &m.engine {
        EngineSpec::Sim(s) => with_defaults(s.max_loras, s.max_cpu_loras, s.max_lora_rank),
        EngineSpec::Command(c) => command_lora_limits(&c.command),
    }
}

/// (`max_loras`, `max_cpu_loras`, `max_lora_rank`) from a vLLM command line (`--max-loras N`
/// or `--max-loras=N`, ...), with vLLM's defaults; the Kubernetes controller reads a pod's
/// container command and args with it.
pub fn command_lora_limits(command: &str) -> (u32, u32, Option<u32>) {
    with_defaults(
        flag(command, "--max-loras"),
        flag(command, "--max-cpu-loras"),
        flag(command, "--max-lora-rank"),
    )
}

fn with_defaults(gpu: Option<u32>, cpu: Option<u32>, rank: Option<u32>) -> (u32, u32, Option<u32>) {
    let gpu = gpu.unwrap_or(1);
    (gpu, cpu.unwrap_or(gpu).max(gpu), Some(rank.unwrap_or(16)))
}

/// The value of `--name N` or `--name=N` in a command line.
fn flag(command: &str, name: &str) -> Option<u32> {
    let mut words = command.split_whitespace();
    while let Some(w) = words.next() {
        if w == name {
            return words.next()?.parse().ok();
        }
        if let Some(v) = w.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return v.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_limits_come_from_the_command_line_with_vllm_defaults() {
        let m = |cmd: &str| {
            let yaml = format!("name: a\nengine:\n  command: {{command: '{cmd}'}}\n");
            serde_yaml_ng::from_str::<ModelSpec>(&yaml).expect("model")
        };
        assert_eq!(
            lora_limits(&m("vllm serve x --port {port}")),
            (1, 1, Some(16))
        );
        assert_eq!(
            lora_limits(&m(
                "vllm serve x --max-loras 2 --max-cpu-loras=6 --max-lora-rank 8"
            )),
            (2, 6, Some(8))
        );
        assert_eq!(
            lora_limits(&m("vllm serve --max-loras 4 --max-cpu-loras 2")),
            (4, 4, Some(16))
        );
    }
}
