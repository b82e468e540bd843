//! What a routing call returns: the pod and how it was reached, or why there is none.

use crate::strategy::Strategy;

/// Why the chosen strategy's own rule did not decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// The strategy's signal is missing on every pod.
    MissingSignal(Strategy),
    /// No session pin or key was given.
    NoSession,
    /// No pod holds a prefix of the prompt (or none within the load cap).
    NoPrefixMatch,
    /// In-flight spread exceeded the imbalance threshold.
    LoadImbalance,
    /// `vtc-basic` got no user (or no token-window view for it).
    NoUser,
    /// `lora-affinity` got a request for a base model (no adapter to be affine to).
    NoAdapter,
    /// The optimizer's plan gave the request's shape no group with a ready pod (no planned
    /// demand for it, or its groups have none ready): routed over every pod.
    PlanGroup,
}

impl Fallback {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingSignal(_) => "missing_signal",
            Self::NoSession => "no_session",
            Self::NoPrefixMatch => "no_prefix_match",
            Self::LoadImbalance => "load_imbalance",
            Self::NoUser => "no_user",
            Self::NoAdapter => "no_adapter",
            Self::PlanGroup => "plan_group",
        }
    }
}

/// The pod to use and how it was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Index into the pods slice.
    pub pod: usize,
    /// Set when the strategy fell back to least-request.
    pub fallback: Option<Fallback>,
}

impl Decision {
    /// The strategy's own rule chose `pod`.
    pub(crate) fn chose(pod: usize) -> Self {
        Self {
            pod,
            fallback: None,
        }
    }
}

/// Why no pod could be chosen.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoRoute {
    /// The model has no ready pod.
    #[error("no ready pod serves this model")]
    NoPods,
}
