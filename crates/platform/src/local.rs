//! The local platform: every replica on this machine, on its own 127.0.0.1 port. A `sim`
//! replica is `brix sim` served in this process; a `command` replica is a child process.
//!
//! Each replica has one supervisor task that starts its engine, gates traffic on `/health`
//! (a replica is published to the gateway's registry only while `/health` answers), restarts
//! it with exponential back-off when it exits (1 s doubling to 30 s; five crashes within two
//! minutes is reported as a crash loop), and on removal takes it out of the registry, waits
//! for the gateway's requests in flight to it to finish, then stops it (SIGTERM, then SIGKILL
//! after the engine's grace period).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use brix_api::ModelSpec;
use brix_autoscaler::{Phase, ReplicaView, scale_down_victims};
use brix_gateway::{KvEndpoints, Registry, Target};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::platform::{Platform, PlatformError, Replica, ReplicaState};
use crate::supervisor::keep_supervised;

/// Most replicas one model may have.
pub const MAX_REPLICAS: u32 = 64;
pub(crate) const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Crashes within [`CRASH_WINDOW`] that make a crash loop.
pub(crate) const CRASH_LOOP: usize = 5;
pub(crate) const CRASH_WINDOW: Duration = Duration::from_secs(120);
/// A run this long resets the back-off.
pub(crate) const STABLE_RUN: Duration = Duration::from_secs(60);
/// `/health` failures in a row that take a ready replica out of rotation.
pub(crate) const UNREADY_AFTER: u32 = 3;

/// Counts the gateway's requests in flight to an address (for draining).
pub type InFlightFn = Arc<dyn Fn(&str) -> u32 + Send + Sync>;

/// How the local platform runs.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    /// Directory for command replicas' logs (`<replica>.log`).
    pub logs_dir: PathBuf,
    /// Period of `/health` checks on a ready replica.
    pub health_interval: Duration,
    /// Period of `/health` checks while a replica starts.
    pub startup_poll: Duration,
    /// Longest wait for a draining replica's requests in flight.
    pub drain_timeout: Duration,
    /// Models whose replicas publish KV events (the gateway's `kv_events.models`): each
    /// replica gets two ports of its own (events, replay), its engine their
    /// `--kv-events-config`, and the gateway its sockets.
    pub kv_events: BTreeSet<String>,
    /// A KV cache pool every simulated engine uses (`sim:` engines directly, engine commands
    /// through `{kv_pool}`); None: no pool.
    pub kv_pool: Option<brix_sim_http::KvPoolConfig>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            logs_dir: std::env::temp_dir().join("brix-logs"),
            health_interval: Duration::from_secs(1),
            startup_poll: Duration::from_millis(100),
            drain_timeout: Duration::from_secs(300),
            kv_events: BTreeSet::new(),
            kv_pool: None,
        }
    }
}

/// Replicas of every model on this machine.
#[derive(Clone)]
pub struct LocalPlatform {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) cfg: LocalConfig,
    pub(crate) registry: Arc<Registry>,
    pub(crate) in_flight: InFlightFn,
    pub(crate) client: Client<HttpConnector, Empty<Bytes>>,
    pub(crate) models: Mutex<BTreeMap<String, ModelRt>>,
    pub(crate) tasks: Mutex<JoinSet<()>>,
    pub(crate) shutting_down: std::sync::atomic::AtomicBool,
}

pub(crate) struct ModelRt {
    pub(crate) spec: ModelSpec,
    pub(crate) desired: u32,
    pub(crate) next_index: u32,
    pub(crate) slots: BTreeMap<u32, Arc<Slot>>,
    pub(crate) published: Option<Vec<Target>>,
}

/// One replica's shared state; its supervisor owns the engine.
pub(crate) struct Slot {
    pub(crate) id: String,
    pub(crate) index: u32,
    pub(crate) model: String,
    /// The name clients use (the entry's `model.aibrix.ai/name`, else `model`): what the
    /// engine answers to and what the gateway routes by.
    pub(crate) served: String,
    pub(crate) status: Mutex<Status>,
    pub(crate) stop: watch::Sender<bool>,
    /// When the replica was asked for (its start-up time runs from here).
    pub(crate) requested: Instant,
}

#[derive(Clone, Debug)]
pub(crate) struct Status {
    pub(crate) port: u16,
    /// The KV-event ports (events, replay), when the model publishes events: picked at the
    /// first start and kept across restarts, like `port`.
    pub(crate) kv_ports: Option<(u16, u16)>,
    pub(crate) state: ReplicaState,
    pub(crate) restarts: u32,
    pub(crate) pid: Option<u32>,
    pub(crate) last_exit: Option<String>,
    pub(crate) ever_ready: bool,
    /// Its first start ended before it was ever ready (reported by `wait_ready`).
    pub(crate) failed_at_start: bool,
    /// From being asked for to its first ready.
    pub(crate) startup: Option<Duration>,
}

impl Slot {
    pub(crate) fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn address(&self) -> String {
        format!("127.0.0.1:{}", self.status().port)
    }

    pub(crate) fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

impl LocalPlatform {
    /// A platform for `models`, publishing ready replicas into `registry`; `in_flight` tells
    /// how many gateway requests an address still has (draining waits for 0). Starts each
    /// model's replicas on the current runtime.
    pub fn start(
        models: &[ModelSpec],
        registry: Arc<Registry>,
        in_flight: InFlightFn,
        cfg: LocalConfig,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        let inner = Arc::new(Inner {
            cfg,
            registry,
            in_flight,
            client: Client::builder(TokioExecutor::new()).build(connector),
            models: Mutex::new(
                models
                    .iter()
                    .map(|m| {
                        let rt = ModelRt {
                            spec: m.clone(),
                            desired: m.replicas,
                            next_index: 0,
                            slots: BTreeMap::new(),
                            published: None,
                        };
                        (m.name.clone(), rt)
                    })
                    .collect(),
            ),
            tasks: Mutex::default(),
            shutting_down: Default::default(),
        });
        let platform = Self { inner };
        for m in models {
            platform.inner.publish(&m.name);
            platform.inner.converge(&m.name);
        }
        platform
    }

    /// Waits until every replica is ready; fails at once, with the engine's own words, when a
    /// replica's first start ends before it was ever ready (an engine command that exits at
    /// once), and after `timeout` otherwise.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), PlatformError> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut waiting = Vec::new();
            for (model, rt) in self.inner.models().iter() {
                for slot in rt.slots.values() {
                    let s = slot.status();
                    if s.failed_at_start {
                        return Err(PlatformError::Engine {
                            model: model.clone(),
                            replica: slot.id.clone(),
                            why: format!(
                                "exited before it was ever ready: {}",
                                s.last_exit.as_deref().unwrap_or("no detail")
                            ),
                        });
                    }
                    if s.state != ReplicaState::Ready {
                        waiting.push(format!("{} ({})", slot.id, s.state.as_str()));
                    }
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(PlatformError::NotReady(
                    timeout.as_secs(),
                    waiting.join(", "),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every replica (no draining) and waits for their supervisors to end.
    pub async fn shutdown(&self) {
        self.inner
            .shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for rt in self.inner.models().values() {
            for slot in rt.slots.values() {
                slot.stop.send_replace(true);
            }
        }
        let mut tasks = std::mem::take(&mut *self.inner.tasks());
        while tasks.join_next().await.is_some() {}
    }
}

impl Inner {
    pub(crate) fn models(&self) -> MutexGuard<'_, BTreeMap<String, ModelRt>> {
        self.models.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn tasks(&self) -> MutexGuard<'_, JoinSet<()>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts or stops replicas until the model's live count is its desired count.
    pub(crate) fn converge(self: &Arc<Self>, model: &str) {
        if self.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let mut models = self.models();
        let Some(rt) = models.get_mut(model) else {
            return;
        };
        let live: Vec<Arc<Slot>> = rt
            .slots
            .values()
            .filter(|s| !s.stopping())
            .cloned()
            .collect();
        let desired = rt.desired as usize;
        if live.len() > desired {
            // The autoscaler's rule (`brix_autoscaler::scale_down_victims`, which `brix bench
            // sim` applies too): never a replica that is starting; a surplus one is trimmed
            // once ready (see `set_state`). Broken replicas go first, then ready ones with the
            // fewest requests in flight, then the newest.
            let views: Vec<ReplicaView> = live
                .iter()
                .map(|s| {
                    let phase = match s.status().state {
                        ReplicaState::Starting => Phase::Starting,
                        ReplicaState::Ready => Phase::Ready,
                        _ => Phase::Broken,
                    };
                    let in_flight = if phase == Phase::Ready {
                        (self.in_flight)(&s.address())
                    } else {
                        0
                    };
                    ReplicaView {
                        phase,
                        in_flight,
                        order: u64::from(s.index),
                    }
                })
                .collect();
            for i in scale_down_victims(&views, rt.desired) {
                live[i].stop.send_replace(true);
            }
            return;
        }
        for _ in live.len()..desired {
            let index = rt.next_index;
            rt.next_index += 1;
            let slot = Arc::new(Slot {
                id: format!("{model}-{index}"),
                index,
                model: model.to_string(),
                served: rt.spec.served_name().to_string(),
                status: Mutex::new(Status {
                    port: 0,
                    kv_ports: None,
                    state: ReplicaState::Starting,
                    restarts: 0,
                    pid: None,
                    last_exit: None,
                    ever_ready: false,
                    failed_at_start: false,
                    startup: None,
                }),
                stop: watch::Sender::new(false),
                requested: Instant::now(),
            });
            rt.slots.insert(index, slot.clone());
            let (inner, engine) = (self.clone(), rt.spec.engine.clone());
            self.tasks()
                .spawn(async move { keep_supervised(inner, slot, engine).await });
        }
    }

    /// Puts the ready replicas of every deployment serving `model`'s served name in the
    /// registry under that name (only when that set changed).
    pub(crate) fn publish(&self, model: &str) {
        let mut models = self.models();
        let Some(served) = models
            .get(model)
            .map(|rt| rt.spec.served_name().to_string())
        else {
            return;
        };
        let ready: Vec<Target> = models
            .values()
            .filter(|rt| rt.spec.served_name() == served)
            .flat_map(|rt| rt.slots.values())
            .filter(|s| !s.stopping() && s.status().state == ReplicaState::Ready)
            .map(|s| Target {
                name: s.id.clone(),
                address: s.address(),
                kv_events: s.status().kv_ports.map(|(events, replay)| KvEndpoints {
                    events: format!("tcp://127.0.0.1:{events}"),
                    replay: Some(format!("tcp://127.0.0.1:{replay}")),
                }),
                metrics: None,
            })
            .collect();
        let Some(rt) = models.get_mut(model) else {
            return;
        };
        if rt.published.as_ref() != Some(&ready) {
            self.registry.set(&served, ready.clone());
            rt.published = Some(ready.clone());
            // The other deployments of the name published this set too.
            for rt in models.values_mut() {
                if rt.spec.served_name() == served {
                    rt.published = Some(ready.clone());
                }
            }
        }
    }

    pub(crate) fn set_state(self: &Arc<Self>, slot: &Slot, state: ReplicaState) {
        let changed = {
            let mut s = slot.status();
            let changed = s.state != state;
            s.state = state;
            if state == ReplicaState::Ready {
                if !s.ever_ready {
                    s.startup = Some(slot.requested.elapsed());
                }
                s.ever_ready = true;
            }
            changed
        };
        if changed {
            tracing::info!(replica = %slot.id, state = state.as_str(), "replica state");
            self.publish(&slot.model);
            if state == ReplicaState::Ready {
                // A surplus replica kept while it started is trimmed now.
                self.converge(&slot.model);
            }
        }
    }

    pub(crate) async fn healthy(&self, address: &str) -> bool {
        let Ok(uri) = format!("http://{address}/health").parse::<http::Uri>() else {
            return false;
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), self.client.get(uri)).await,
            Ok(Ok(r)) if r.status().is_success()
        )
    }

    pub(crate) fn log_path(&self, slot: &Slot) -> PathBuf {
        self.cfg.logs_dir.join(format!("{}.log", slot.id))
    }
}

impl Platform for LocalPlatform {
    async fn models(&self) -> Vec<String> {
        self.inner.models().keys().cloned().collect()
    }

    async fn replicas(&self, model: &str) -> Result<Vec<Replica>, PlatformError> {
        let models = self.inner.models();
        let rt = models
            .get(model)
            .ok_or_else(|| PlatformError::UnknownModel(model.to_string()))?;
        Ok(rt
            .slots
            .values()
            .map(|slot| {
                let s = slot.status().clone();
                Replica {
                    id: slot.id.clone(),
                    model: model.to_string(),
                    address: format!("127.0.0.1:{}", s.port),
                    state: if slot.stopping() {
                        ReplicaState::Draining
                    } else {
                        s.state
                    },
                    restarts: s.restarts,
                    pid: s.pid,
                    last_exit: s.last_exit,
                    startup_ms: s.startup.map(|d| d.as_millis() as u64),
                }
            })
            .collect())
    }

    async fn scale(&self, model: &str, replicas: u32) -> Result<(), PlatformError> {
        if replicas > MAX_REPLICAS {
            return Err(PlatformError::TooMany {
                model: model.to_string(),
                replicas,
                max: MAX_REPLICAS,
            });
        }
        {
            let mut models = self.inner.models();
            let deployments: Vec<&str> = models
                .values()
                .filter(|rt| rt.spec.is_deployment() && rt.spec.served_name() == model)
                .map(|rt| rt.spec.name.as_str())
                .collect();
            if !models.contains_key(model) && !deployments.is_empty() {
                return Err(PlatformError::ServedByDeployments {
                    model: model.to_string(),
                    deployments: deployments.join(", "),
                });
            }
            let rt = models
                .get_mut(model)
                .ok_or_else(|| PlatformError::UnknownModel(model.to_string()))?;
            rt.desired = replicas;
        }
        self.inner.converge(model);
        Ok(())
    }

    async fn create(&self, model: &str) -> Result<String, PlatformError> {
        let desired = {
            let models = self.inner.models();
            let rt = models
                .get(model)
                .ok_or_else(|| PlatformError::UnknownModel(model.to_string()))?;
            rt.desired + 1
        };
        self.scale(model, desired).await?;
        let models = self.inner.models();
        let id = models
            .get(model)
            .and_then(|rt| rt.slots.values().next_back())
            .map(|s| s.id.clone())
            .unwrap_or_default();
        Ok(id)
    }

    async fn delete(&self, id: &str) -> Result<(), PlatformError> {
        let model = {
            let mut models = self.inner.models();
            let mut found = None;
            for (name, rt) in models.iter_mut() {
                if let Some(slot) = rt.slots.values().find(|s| s.id == id) {
                    if !slot.stopping() {
                        rt.desired = rt.desired.saturating_sub(1);
                        slot.stop.send_replace(true);
                    }
                    found = Some(name.clone());
                    break;
                }
            }
            found.ok_or_else(|| PlatformError::UnknownReplica(id.to_string()))?
        };
        self.inner.converge(&model);
        Ok(())
    }
}
