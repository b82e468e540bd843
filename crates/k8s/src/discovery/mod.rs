//! The gateway's pods from a Kubernetes watch, behind `brix_gateway::Discovery`.
//!
//! A kube-runtime watcher (list, then watch, with kube's default backoff) feeds a reflector
//! store of Pods, one namespace or all. A pod is a target when it carries label or annotation
//! `model.aibrix.ai/name` (the annotation allows `/` in names), is Ready, is not terminating,
//! has a `podIP`, and is not a non-leader worker (`ray.io/node-type=worker`, or
//! `stormservice.orchestration.aibrix.ai/pod-group-index` > 0), as AIBrix's informers decide.
//! Its address is `podIP:<label model.aibrix.ai/port, default 8000>`, its name the pod's name.
//! A model some tracked pod serves stays known while none of its pods is ready (requests get
//! 503, not 400), as while its replicas restart.
//!
//! Changes are batched ([`DEBOUNCE`]) so a rollout of N pods publishes a few sets, not N. A
//! failing watch keeps the last good set (the store only swaps on a completed relist), retries
//! with backoff, and logs once when it starts failing and once when it recovers.
//!
//! ModelAdapters ([`adapters`]) declare the adapters the gateway routes and which pods hold
//! them (`status.instances`).

pub mod adapters;
mod pods;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brix_gateway::{Discovery, Targets};
use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::rbac::Rule;

pub use pods::{DEFAULT_PORT, PORT_LABEL, model_of, target_of};

/// The API calls discovery makes: list and watch Pods and ModelAdapters, nothing else.
pub const RULES: &[Rule] = &[
    Rule {
        group: "",
        resources: &["pods"],
        verbs: &["list", "watch"],
    },
    Rule {
        group: "model.aibrix.ai",
        resources: &["modeladapters"],
        verbs: &["list", "watch"],
    },
];

/// How long a burst of watch events is gathered before one set is published.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// Where a tracked pod is, by (namespace, pod name): its model and, when routable, its address.
pub(crate) type PodIndex = BTreeMap<(String, String), (String, Option<String>)>;

/// Pods from the Kubernetes API as the gateway's discovery source; the watch runs until this
/// value is dropped.
pub struct KubeDiscovery {
    targets: watch::Sender<Arc<Targets>>,
    index: watch::Sender<Arc<PodIndex>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl KubeDiscovery {
    /// Starts watching pods in `scope` on the current runtime. The targets stay empty until
    /// the first list completes.
    pub fn start(client: kube::Client, scope: &crate::Scope) -> Self {
        let targets = watch::Sender::new(Arc::default());
        let index = watch::Sender::new(Arc::default());
        let task = tokio::spawn(pods::follow(
            client,
            scope.clone(),
            targets.clone(),
            index.clone(),
        ));
        Self {
            targets,
            index,
            tasks: Mutex::new(vec![task.abort_handle()]),
        }
    }

    /// Starts feeding `handle` the ModelAdapters in `scope` (which exist, which pods hold
    /// them): call it once the gateway is built over this discovery.
    pub fn watch_adapters(
        &self,
        client: kube::Client,
        scope: &crate::Scope,
        handle: brix_gateway::GatewayHandle,
    ) {
        let task = tokio::spawn(adapters::follow(
            client,
            scope.clone(),
            self.index.subscribe(),
            handle,
        ));
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task.abort_handle());
    }
}

impl Discovery for KubeDiscovery {
    fn watch(&self) -> watch::Receiver<Arc<Targets>> {
        self.targets.subscribe()
    }
}

impl Drop for KubeDiscovery {
    fn drop(&mut self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

/// The API for `K` in `scope`.
pub(crate) fn api<K>(client: kube::Client, scope: &crate::Scope) -> kube::Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match &scope.namespace {
        Some(ns) => kube::Api::namespaced(client, ns),
        None => kube::Api::all(client),
    }
}

/// A reflector over a watch, read in debounced batches, logging its failures once per change
/// of state.
pub(crate) struct Follower<K: kube::Resource + Clone + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    what: &'static str,
    store: Store<K>,
    stream: std::pin::Pin<Box<dyn Stream<Item = watcher::Result<watcher::Event<K>>> + Send>>,
    synced: bool,
    failing: bool,
}

impl<K> Follower<K>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default + Send + Sync,
{
    /// Lists and watches `api`; `trim` drops what the caller never reads (memory per object).
    pub(crate) fn new(
        what: &'static str,
        api: kube::Api<K>,
        trim: impl FnMut(&mut K) + Send + 'static,
    ) -> Self {
        use kube::runtime::WatchStreamExt;
        let (store, writer) = reflector::store();
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(trim)
            .reflect(writer);
        Self {
            what,
            store,
            stream: Box::pin(stream),
            synced: false,
            failing: false,
        }
    }

    /// Waits for the next event, gathers what follows within [`DEBOUNCE`], and returns
    /// whether the store holds a complete list (`None` when the watch ended for good).
    pub(crate) async fn next_batch(&mut self) -> Option<bool> {
        let first = self.stream.next().await?;
        self.note(first);
        let until = tokio::time::Instant::now() + DEBOUNCE;
        while let Ok(next) = tokio::time::timeout_at(until, self.stream.next()).await {
            self.note(next?);
        }
        Some(self.synced)
    }

    /// The objects now.
    pub(crate) fn state(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    fn note(&mut self, ev: watcher::Result<watcher::Event<K>>) {
        match ev {
            Ok(ev) => {
                if matches!(ev, watcher::Event::InitDone) {
                    self.synced = true;
                }
                if std::mem::take(&mut self.failing) {
                    tracing::info!(what = self.what, "kubernetes watch recovered");
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(
                        what = self.what,
                        error = %e,
                        "kubernetes watch failing; keeping the last good set, retrying with backoff"
                    );
                }
            }
        }
    }
}
