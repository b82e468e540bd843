//! The platform trait: what the controllers and `brix status` need from wherever replicas run.
//! The local platform implements it today; the Kubernetes platform (Deployments through
//! kube-rs) implements the same calls next.

use std::future::Future;

/// One replica of a model, as the platform reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    /// Stable name, `<model>-<index>`.
    pub id: String,
    /// The model it serves.
    pub model: String,
    /// `host:port` its engine listens on.
    pub address: String,
    /// Where it is in its life.
    pub state: ReplicaState,
    /// Restarts after crashes so far.
    pub restarts: u32,
    /// Process id of a command replica.
    pub pid: Option<u32>,
    /// How its engine last ended, with the tail of its log for command replicas.
    pub last_exit: Option<String>,
    /// Milliseconds from being asked for to its first ready (None until then): what the
    /// autoscaler learns a start-up costs.
    pub startup_ms: Option<u64>,
    /// `host:port` of its runtime sidecar, when one runs beside it.
    pub runtime: Option<String>,
    /// Why it is in its state, when the state alone does not say (`failed`: the GPU
    /// diagnostics' verdict), one bounded line.
    pub reason: Option<String>,
}

/// A replica's lifecycle; only `Ready` replicas receive traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaState {
    /// Started; `/health` has not answered yet.
    Starting,
    /// `/health` answers: in the gateway's candidate set.
    Ready,
    /// Was ready, `/health` stopped answering: out of rotation until it answers again.
    Unready,
    /// Its engine exited; it restarts after a back-off.
    Restarting,
    /// It crashed repeatedly in a short time; it keeps restarting with the longest back-off.
    CrashLoop,
    /// Being removed: out of rotation, waiting for its requests in flight to finish.
    Draining,
    /// Held back: its GPUs failed diagnostics (the reason says which and why); not started,
    /// or drained and stopped, until a check finds them healthy again. Not a crash.
    Failed,
}

impl ReplicaState {
    /// The word `brix status` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Unready => "unready",
            Self::Restarting => "restarting",
            Self::CrashLoop => "crash-loop",
            Self::Draining => "draining",
            Self::Failed => "failed",
        }
    }
}

/// Why a platform call failed.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// No such model in the fleet.
    #[error("unknown model '{0}'")]
    UnknownModel(String),
    /// A served name of several deployments where one deployment is meant.
    #[error("'{model}' is served by deployments {deployments}; name one of them")]
    ServedByDeployments {
        /// The served name.
        model: String,
        /// Its deployments, comma-separated.
        deployments: String,
    },
    /// No such replica.
    #[error("unknown replica '{0}'")]
    UnknownReplica(String),
    /// More replicas than a model may have.
    #[error("model '{model}': {replicas} replicas is more than the limit of {max}")]
    TooMany {
        /// The model.
        model: String,
        /// Asked for.
        replicas: u32,
        /// The limit.
        max: u32,
    },
    /// A replica's engine could not start, or exited before it was ever ready.
    #[error("model '{model}' replica {replica}: {why}")]
    Engine {
        /// The model.
        model: String,
        /// The replica.
        replica: String,
        /// What happened, with the log tail for commands.
        why: String,
    },
    /// Replicas were not all ready in time.
    #[error("replicas not ready after {0} s: {1}")]
    NotReady(u64, String),
}

/// Where replicas run. Calls change the desired state; the platform converges to it.
pub trait Platform: Send + Sync + 'static {
    /// Models the platform runs.
    fn models(&self) -> impl Future<Output = Vec<String>> + Send;
    /// The model's replicas now, in id order.
    fn replicas(
        &self,
        model: &str,
    ) -> impl Future<Output = Result<Vec<Replica>, PlatformError>> + Send;
    /// Sets the model's replica count; scaling down drains before stopping.
    fn scale(
        &self,
        model: &str,
        replicas: u32,
    ) -> impl Future<Output = Result<(), PlatformError>> + Send;
    /// Adds one replica; returns its id.
    fn create(&self, model: &str) -> impl Future<Output = Result<String, PlatformError>> + Send;
    /// Removes one replica (drained first); the model's count drops by one.
    fn delete(&self, id: &str) -> impl Future<Output = Result<(), PlatformError>> + Send;
}
