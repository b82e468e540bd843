//! The fleet's decision, pure: from the fleet, the RayClusters it owns (with their KubeRay state)
//! and the time, what to create, what to delete and what status to report. No I/O, no clock of
//! its own; [`super::controller`] does the calls. The rules are the Deployment controller's,
//! counted in RayClusters:
//!
//! - Scale: create the missing, or delete the surplus — unready first, then newest first.
//! - RollingUpdate: create current-template RayClusters while the total stays within
//!   `replicas + maxSurge`; delete old ones, unavailable first, while at least
//!   `replicas - maxUnavailable` stay available (both bounds from the observed state, so one step
//!   never breaks them; the next step follows the next watch event).
//! - Recreate: delete every old RayCluster; create new ones only once none is left, not even
//!   one still terminating.
//! - Paused: nothing is created or deleted; status is still reported.
//!
//! A RayCluster is ready when KubeRay's `status.state` is `ready`, and available once it has
//! been ready for `minReadySeconds`.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::kuberay::RayCluster;
use super::types::{FleetCondition, RayClusterFleet, RayClusterTemplateSpec, StrategyType};
use super::{TEMPLATE_HASH_LABEL, selector_matches, selector_string};

/// Default `maxSurge` and `maxUnavailable` of a rolling update, as a Deployment's.
const DEFAULT_BOUND: &str = "25%";
/// Default `progressDeadlineSeconds` (AIBrix's and a Deployment's).
const DEFAULT_PROGRESS_DEADLINE_S: i64 = 600;

/// What the planner needs to know of one RayCluster the fleet owns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// `metadata.name`.
    pub name: String,
    /// Its template-hash label.
    pub hash: Option<String>,
    /// `metadata.creationTimestamp`, for "newest first".
    pub created: Option<Timestamp>,
    /// KubeRay's state is `ready`.
    pub ready: bool,
    /// When it became ready, if KubeRay recorded it.
    pub ready_since: Option<Timestamp>,
    /// It has a `deletionTimestamp`: on its way out, counted nowhere.
    pub deleting: bool,
}

impl Observed {
    /// Reads a RayCluster. The ready time is KubeRay's `stateTransitionTimes.ready`, else the
    /// last transition of its `RayClusterProvisioned` condition.
    pub fn from_cluster(cluster: &RayCluster) -> Self {
        let meta = &cluster.metadata;
        let status = cluster.status.as_ref();
        let ready = status.and_then(|s| s.state.as_deref()) == Some("ready");
        let ready_since = status.filter(|_| ready).and_then(|s| {
            let from_state = s
                .state_transition_times
                .as_ref()
                .and_then(|t| t.get("ready"))
                .and_then(|t| t.parse().ok());
            from_state.or_else(|| {
                s.conditions
                    .iter()
                    .flatten()
                    .find(|c| c.type_ == "RayClusterProvisioned" && c.status == "True")
                    .map(|c| c.last_transition_time.0)
            })
        });
        Self {
            name: meta.name.clone().unwrap_or_default(),
            hash: meta
                .labels
                .as_ref()
                .and_then(|l| l.get(TEMPLATE_HASH_LABEL))
                .cloned(),
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            ready,
            ready_since,
            deleting: meta.deletion_timestamp.is_some(),
        }
    }

    /// Ready for at least `min_ready_s` at `now`. With `minReadySeconds` > 0 and no recorded
    /// ready time, not yet (KubeRay ≥ 1.2 records it).
    pub fn available(&self, min_ready_s: i64, now: Timestamp) -> bool {
        self.ready
            && (min_ready_s <= 0
                || self
                    .ready_since
                    .is_some_and(|t| t.as_second() + min_ready_s <= now.as_second()))
    }
}

/// What one reconcile step does.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// RayClusters to create from the current template.
    pub create: usize,
    /// The current template's hash (their label).
    pub hash: String,
    /// Names of RayClusters to delete.
    pub delete: Vec<String>,
    /// The status once the actions succeeded.
    pub status: super::RayClusterFleetStatus,
    /// When to look again although nothing changes (a RayCluster turning available, the
    /// progress deadline).
    pub requeue_after: Option<Duration>,
}

/// The fleet's settings, validated: what the planner reads of the spec.
#[derive(Clone, Debug, PartialEq)]
struct Settings {
    replicas: i32,
    hash: String,
    recreate: bool,
    max_surge: i32,
    max_unavailable: i32,
    min_ready_s: i64,
    deadline_s: i64,
}

impl Settings {
    fn of(fleet: &RayClusterFleet) -> Result<Self, String> {
        let spec = &fleet.spec;
        let replicas = spec.replicas.unwrap_or(1);
        if replicas < 0 {
            return Err("spec.replicas must not be negative".into());
        }
        let selector = &spec.selector;
        let empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && selector
                .match_expressions
                .as_ref()
                .is_none_or(|e| e.is_empty());
        if empty {
            return Err("spec.selector must not be empty".into());
        }
        for r in selector.match_expressions.iter().flatten() {
            if !["In", "NotIn", "Exists", "DoesNotExist"].contains(&r.operator.as_str()) {
                return Err(format!(
                    "spec.selector: operator {:?} is not In, NotIn, Exists or DoesNotExist",
                    r.operator
                ));
            }
        }
        let labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        if !selector_matches(selector, &labels) {
            return Err("spec.selector does not match spec.template.metadata.labels".into());
        }
        let strategy = spec.strategy.clone().unwrap_or_default();
        let recreate = strategy.kind == Some(StrategyType::Recreate);
        let rolling = strategy.rolling_update.unwrap_or_default();
        let bound = |v: Option<IntOrString>, round_up: bool, field: &str| {
            let v = v.unwrap_or_else(|| IntOrString::String(DEFAULT_BOUND.into()));
            resolve(&v, replicas, round_up).ok_or_else(|| {
                format!("spec.strategy.rollingUpdate.{field}: {v:?} is not a count or a percentage")
            })
        };
        let mut max_surge = bound(rolling.max_surge, true, "maxSurge")?;
        let mut max_unavailable = bound(rolling.max_unavailable, false, "maxUnavailable")?;
        if recreate {
            // A Deployment's rule: Recreate has minimum availability only at full strength.
            (max_surge, max_unavailable) = (0, 0);
        } else if max_surge == 0 && max_unavailable == 0 {
            // A Deployment's rule: a rollout must be able to move.
            max_unavailable = 1;
        }
        Ok(Self {
            replicas,
            hash: template_hash(&spec.template),
            recreate,
            max_surge,
            max_unavailable,
            min_ready_s: i64::from(spec.min_ready_seconds.unwrap_or(0).max(0)),
            deadline_s: spec
                .progress_deadline_seconds
                .map_or(DEFAULT_PROGRESS_DEADLINE_S, i64::from),
        })
    }
}

/// A count or a percentage of `replicas` (percentages rounded up for surge, down for
/// unavailability); `None` when it is neither.
fn resolve(v: &IntOrString, replicas: i32, round_up: bool) -> Option<i32> {
    match v {
        IntOrString::Int(n) if *n >= 0 => Some(*n),
        IntOrString::Int(_) => None,
        IntOrString::String(s) => {
            let pct: i64 = s.strip_suffix('%')?.parse().ok().filter(|p| *p >= 0)?;
            let scaled = i64::from(replicas) * pct;
            let n = if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            };
            i32::try_from(n).ok()
        }
    }
}

/// The template's hash: FNV-1a (64 bit) of its canonical JSON (keys sorted, so the order of
/// struct fields does not matter), in the Kubernetes safe alphabet (no vowels, no look-alike
/// digits), 10 characters. It must not change between Brix versions for the same template —
/// a new hash rolls every fleet's RayClusters — so a test pins it.
pub fn template_hash(template: &RayClusterTemplateSpec) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let json = serde_json::to_value(template)
        .and_then(|v| serde_json::to_vec(&v))
        .unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in json {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..10)
        .map(|_| {
            let c = ALPHABET[(h % ALPHABET.len() as u64) as usize];
            h /= ALPHABET.len() as u64;
            c as char
        })
        .collect()
}

/// Deletion order: unready first, then ready-but-unavailable, then available; within each,
/// newest first; then by name (so the choice is deterministic).
fn deletion_order(clusters: &mut [&Observed], min_ready_s: i64, now: Timestamp) {
    clusters.sort_by(|a, b| {
        let rank = |c: &Observed| u8::from(c.ready) + u8::from(c.available(min_ready_s, now));
        rank(a)
            .cmp(&rank(b))
            .then(b.created.cmp(&a.created))
            .then(b.name.cmp(&a.name))
    });
}

/// Checks the spec the way [`plan`] needs it (selector non-empty and matching the template's
/// labels, bounds that parse); `Err` names the field.
pub fn validate(fleet: &RayClusterFleet) -> Result<(), String> {
    Settings::of(fleet).map(|_| ())
}

/// Decides one step. `Err` names the invalid spec field.
pub fn plan(
    fleet: &RayClusterFleet,
    clusters: &[Observed],
    now: Timestamp,
) -> Result<Plan, String> {
    let s = Settings::of(fleet)?;
    let live: Vec<&Observed> = clusters.iter().filter(|c| !c.deleting).collect();
    let (new, old): (Vec<&Observed>, Vec<&Observed>) = live
        .iter()
        .partition(|c| c.hash.as_deref() == Some(s.hash.as_str()));
    let d = s.replicas as usize;
    let mut create = 0;
    let mut delete: Vec<&Observed> = Vec::new();
    if fleet.spec.paused {
        // Nothing moves.
    } else if s.recreate && !old.is_empty() {
        delete.extend(old.iter().copied());
    } else if s.recreate
        && clusters
            .iter()
            .any(|c| c.deleting && c.hash.as_deref() != Some(&s.hash))
    {
        // Recreate waits until the old RayClusters are gone.
    } else if old.is_empty() || new.len() > d {
        // Plain scaling; also trims new RayClusters above `replicas` during a rollout.
        if new.len() < d {
            create = d - new.len();
        } else {
            let mut surplus = new.clone();
            deletion_order(&mut surplus, s.min_ready_s, now);
            delete.extend(surplus.into_iter().take(new.len() - d));
        }
    } else {
        (create, delete) = roll(&s, &live, &new, &old, now);
    }
    let delete: Vec<String> = delete.into_iter().map(|c| c.name.clone()).collect();
    // The RayClusters once the actions succeeded: the status the next step will observe.
    let mut after: Vec<Observed> = live
        .iter()
        .filter(|c| !delete.contains(&c.name))
        .map(|c| (*c).clone())
        .collect();
    after.extend((0..create).map(|_| Observed {
        hash: Some(s.hash.clone()),
        ..Observed::default()
    }));
    let acted = create > 0 || !delete.is_empty();
    let status = status_of(fleet, &s, &after, acted, now);
    let requeue_after = requeue(&s, &after, &status, now);
    Ok(Plan {
        create,
        hash: s.hash,
        delete,
        status,
        requeue_after,
    })
}

/// One rolling-update step (old RayClusters exist, new ones at most `replicas`): how many new
/// to create within `replicas + maxSurge`, and which old to delete — unavailable ones first,
/// then available ones while `replicas - maxUnavailable` stay available. Both bounds are read
/// from the observed state, as the Deployment controller does.
fn roll<'a>(
    s: &Settings,
    live: &[&'a Observed],
    new: &[&'a Observed],
    old: &[&'a Observed],
    now: Timestamp,
) -> (usize, Vec<&'a Observed>) {
    let avail = |c: &Observed| c.available(s.min_ready_s, now);
    let total = live.len() as i64;
    let d = i64::from(s.replicas);
    let (surge, unavail) = (i64::from(s.max_surge), i64::from(s.max_unavailable));
    let create = (d - new.len() as i64).min(d + surge - total).max(0) as usize;
    let min_available = d - unavail;
    let available_total = live.iter().filter(|c| avail(c)).count() as i64;
    let new_unavailable = new.iter().filter(|c| !avail(c)).count() as i64;
    let max_scaled_down = total - min_available - new_unavailable;
    let mut delete = Vec::new();
    if max_scaled_down > 0 {
        let (mut healthy, mut unhealthy): (Vec<&Observed>, Vec<&Observed>) =
            old.iter().partition(|c| avail(c));
        deletion_order(&mut unhealthy, s.min_ready_s, now);
        delete.extend(unhealthy.into_iter().take(max_scaled_down as usize));
        deletion_order(&mut healthy, s.min_ready_s, now);
        let budget = (available_total - min_available).max(0) as usize;
        delete.extend(healthy.into_iter().take(budget));
    }
    (create, delete)
}

/// The status of `fleet` with `clusters` (those not being deleted are counted); `acted` when
/// this step created or deleted something (progress). `Err` as [`plan`].
pub fn status(
    fleet: &RayClusterFleet,
    clusters: &[Observed],
    acted: bool,
    now: Timestamp,
) -> Result<super::RayClusterFleetStatus, String> {
    let s = Settings::of(fleet)?;
    let live: Vec<Observed> = clusters.iter().filter(|c| !c.deleting).cloned().collect();
    Ok(status_of(fleet, &s, &live, acted, now))
}

fn status_of(
    fleet: &RayClusterFleet,
    s: &Settings,
    live: &[Observed],
    acted: bool,
    now: Timestamp,
) -> super::RayClusterFleetStatus {
    let count = |f: &dyn Fn(&Observed) -> bool| live.iter().filter(|c| f(c)).count() as i32;
    let replicas = live.len() as i32;
    let updated = count(&|c| c.hash.as_deref() == Some(s.hash.as_str()));
    let ready = count(&|c| c.ready);
    let available = count(&|c| c.available(s.min_ready_s, now));
    let prev = fleet.status.as_ref();
    let prev_cond = |kind: &str| prev.and_then(|p| p.conditions.iter().find(|c| c.kind == kind));
    let (status, reason, message) = if available >= s.replicas - s.max_unavailable {
        (
            "True",
            "MinimumReplicasAvailable",
            "RayClusterFleet has minimum availability.",
        )
    } else {
        (
            "False",
            "MinimumReplicasUnavailable",
            "RayClusterFleet does not have minimum availability.",
        )
    };
    let available_cond = condition(
        prev_cond("Available"),
        "Available",
        status,
        reason,
        message,
        false,
        now,
    );
    let complete = updated == s.replicas && available == s.replicas && replicas == s.replicas;
    let progressing_cond = progressing(fleet, s, prev_cond("Progressing"), complete, acted, now);
    super::RayClusterFleetStatus {
        observed_generation: fleet.metadata.generation.unwrap_or(0),
        replicas,
        updated_replicas: updated,
        ready_replicas: ready,
        available_replicas: available,
        unavailable_replicas: (s.replicas - available).max(0),
        conditions: vec![available_cond, progressing_cond],
        collision_count: prev.and_then(|p| p.collision_count),
        scaling_target_selector: selector_string(&fleet.spec.selector),
    }
}

/// The `Progressing` condition: Unknown while paused; True `NewRayClustersAvailable` once every
/// RayCluster is current and available; True `RayClustersUpdated` (its `lastUpdateTime` bumped)
/// when this step acted; False `ProgressDeadlineExceeded` once `progressDeadlineSeconds` passed
/// without progress; else unchanged.
fn progressing(
    fleet: &RayClusterFleet,
    s: &Settings,
    prev: Option<&FleetCondition>,
    complete: bool,
    acted: bool,
    now: Timestamp,
) -> FleetCondition {
    let name = fleet.metadata.name.as_deref().unwrap_or_default();
    let stalled = prev.is_some_and(|p| {
        p.status == "True"
            && p.reason != "NewRayClustersAvailable"
            && since(p.last_update_time.as_deref(), now).is_some_and(|age| age > s.deadline_s)
    });
    let fresh = prev.is_none_or(|p| p.status == "Unknown" || p.reason == "NewRayClustersAvailable");
    let (status, reason, message) = if fleet.spec.paused {
        (
            "Unknown",
            "FleetPaused",
            "RayClusterFleet is paused.".to_string(),
        )
    } else if complete {
        let msg = format!("RayClusterFleet {name:?} has successfully progressed.");
        ("True", "NewRayClustersAvailable", msg)
    } else if acted || fresh {
        (
            "True",
            "RayClustersUpdated",
            format!("RayClusterFleet {name:?} is progressing."),
        )
    } else if stalled {
        let msg = format!("RayClusterFleet {name:?} has timed out progressing.");
        ("False", "ProgressDeadlineExceeded", msg)
    } else {
        return prev.cloned().unwrap_or_default();
    };
    let progress = acted && reason == "RayClustersUpdated";
    condition(prev, "Progressing", status, reason, &message, progress, now)
}

/// Seconds from an RFC 3339 time to `now`.
fn since(t: Option<&str>, now: Timestamp) -> Option<i64> {
    let t: Timestamp = t?.parse().ok()?;
    Some(now.as_second() - t.as_second())
}

/// A condition, keeping `prev`'s times when nothing about it changed (so an unchanged world
/// gives an identical status, and no write), and bumping `lastUpdateTime` on `progress`.
fn condition(
    prev: Option<&FleetCondition>,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    progress: bool,
    now: Timestamp,
) -> FleetCondition {
    let stamp = Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string();
    match prev {
        Some(p)
            if p.status == status && p.reason == reason && p.message == message && !progress =>
        {
            p.clone()
        }
        _ => FleetCondition {
            kind: kind.into(),
            status: status.into(),
            last_update_time: Some(stamp.clone()),
            last_transition_time: match prev {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => Some(stamp),
            },
            reason: reason.into(),
            message: message.into(),
        },
    }
}

/// When to look again without an event: when the next ready RayCluster turns available, or
/// when a progressing rollout hits its deadline.
fn requeue(
    s: &Settings,
    live: &[Observed],
    status: &super::RayClusterFleetStatus,
    now: Timestamp,
) -> Option<Duration> {
    let turning_available = live
        .iter()
        .filter(|c| c.ready && !c.available(s.min_ready_s, now))
        .filter_map(|c| c.ready_since)
        .map(|t| t.as_second() + s.min_ready_s - now.as_second());
    let deadline = status
        .conditions
        .iter()
        .find(|c| c.kind == "Progressing" && c.status == "True" && c.reason == "RayClustersUpdated")
        .and_then(|c| since(c.last_update_time.as_deref(), now))
        .map(|age| s.deadline_s - age + 1);
    turning_available
        .chain(deadline)
        .min()
        .map(|secs| Duration::from_secs(secs.max(1) as u64))
}
