//! The ModelAdapter controller of `brix up`: level-triggered and idempotent. Every round it
//! reads each ready replica's `/v1/models`, asks the pure placement policy
//! ([`brix_adapters::plan`]) where each adapter should be, and applies the difference through
//! vLLM's LoRA API, with back-off per (replica, adapter). Drains go through the gateway (no new
//! requests for the adapter there) before an unload. Status: [`AdapterStatus`].
//!
//! Artifacts are fetched once per machine (`fetch`), verified, and a bad one fails the adapter
//! with a condition that says why; it never takes a replica down.

pub mod api;
mod driver;
pub mod engine;
mod fetch;
mod gateway;
mod status;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use brix_api::{FieldError, ModelAdapter, ModelSpec, Resource};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use driver::command_lora_limits;
pub use status::{AdapterStatus, Condition};

use crate::platform::Platform;

/// What the controller needs from the gateway: the adapters that exist, which replica holds
/// which, drains, and per-adapter traffic. `brix_gateway::GatewayHandle` implements it.
pub trait AdapterGateway: Clone + Send + Sync + 'static {
    /// The ModelAdapters that exist: (name, base model, placement in progress).
    fn set_adapter_routes(&self, routes: Vec<(String, String, bool)>);
    /// What the replica at `address` lists in `/v1/models`.
    fn set_pod_adapters(&self, address: &str, adapters: Vec<String>);
    /// Stops (or resumes) routing requests for `adapter` to `address`.
    fn set_adapter_draining(&self, address: &str, adapter: &str, draining: bool);
    /// Requests for `adapter` in flight to `address`.
    fn adapter_in_flight(&self, address: &str, adapter: &str) -> u32;
    /// Requests per second per adapter over the last minute.
    fn adapter_rps(&self) -> BTreeMap<String, f64>;
}

/// The controller's settings.
#[derive(Clone, Debug)]
pub struct AdapterConfig {
    /// Time between rounds (a change to the adapters starts one at once).
    pub interval: Duration,
    /// Relative local `artifactURL`s are taken from here (the fleet file's directory).
    pub base_dir: PathBuf,
    /// Where downloaded artifacts are cached, by content digest.
    pub cache_dir: PathBuf,
    /// The placement policy's knobs.
    pub placement: brix_adapters::Config,
    /// The bearer key of the runtime sidecars `brix up` starts beside replicas (its admin
    /// key); sent on delegated loads and unloads through them.
    pub runtime_key: Option<String>,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            base_dir: PathBuf::from("."),
            cache_dir: std::env::temp_dir().join("brix-adapters"),
            placement: brix_adapters::Config::default(),
            runtime_key: None,
        }
    }
}

/// The running controller: its adapters' status, and `apply`/`delete` for the admin API.
#[derive(Clone)]
pub struct Adapters {
    shared: Arc<Shared>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

pub(crate) struct Shared {
    models: Vec<ModelSpec>,
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Default)]
pub(crate) struct State {
    /// The adapters asked for, by name; a deleted one stays until it is unloaded everywhere.
    pub specs: BTreeMap<String, Desired>,
    /// Their status, by name.
    pub status: BTreeMap<String, AdapterStatus>,
}

#[derive(Clone)]
pub(crate) struct Desired {
    pub adapter: ModelAdapter,
    pub deleted: bool,
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Adapters {
    /// Starts the controller on the current runtime with the file's ModelAdapters.
    pub fn start<P: Platform + Clone, G: AdapterGateway>(
        models: &[ModelSpec],
        resources: &[Resource],
        secrets: &BTreeMap<String, BTreeMap<String, String>>,
        platform: P,
        gateway: G,
        cfg: AdapterConfig,
    ) -> Self {
        let mut state = State::default();
        for r in resources {
            if let Resource::ModelAdapter(a) = r {
                state.specs.insert(
                    a.metadata.name.clone(),
                    Desired {
                        adapter: a.clone(),
                        deleted: false,
                    },
                );
            }
        }
        let shared = Arc::new(Shared {
            models: models.to_vec(),
            secrets: secrets.clone(),
            state: Mutex::new(state),
            wake: Notify::new(),
        });
        let driver = driver::Driver::new(shared.clone(), platform, gateway, cfg);
        let task = tokio::spawn(driver.run());
        Self {
            shared,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// Every adapter's status, by name.
    pub fn status(&self) -> Vec<AdapterStatus> {
        self.shared.state().status.values().cloned().collect()
    }

    /// Adds or replaces a ModelAdapter (checked as the fleet file's are); takes effect at once.
    pub fn apply(&self, adapter: ModelAdapter) -> Result<(), FieldError> {
        let names: Vec<&str> = self.shared.models.iter().map(|m| m.name.as_str()).collect();
        brix_api::validate_resources(&[Resource::ModelAdapter(adapter.clone())], &names)
            .map_err(strip_index)?;
        crate::fleet::check_adapter(&adapter, &self.shared.models, &self.shared.secrets)?;
        let name = adapter.metadata.name.clone();
        self.shared.state().specs.insert(
            name,
            Desired {
                adapter,
                deleted: false,
            },
        );
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Deletes a ModelAdapter: drained and unloaded everywhere, then forgotten. False when no
    /// such adapter exists.
    pub fn delete(&self, name: &str) -> bool {
        let found = match self.shared.state().specs.get_mut(name) {
            Some(d) if !d.deleted => {
                d.deleted = true;
                true
            }
            _ => false,
        };
        self.shared.wake.notify_one();
        found
    }

    /// Stops the controller (adapters stay loaded as they are).
    pub fn stop(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }
}

/// A single document's error without the `resources[0].` prefix the list check adds.
fn strip_index(e: FieldError) -> FieldError {
    let field = e.field.strip_prefix("resources[0].").unwrap_or(&e.field);
    FieldError::new(field.to_string(), e.message)
}
