//! The placement policy: keep what is placed, fill what is missing, drain what is not wanted.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    Action, ActionKind, AdapterStatus, AdapterView, Plan, PlanError, PodView, Reason, Shortfall,
    Snapshot,
};

/// Per-adapter working state while planning.
struct Want<'a> {
    traffic: f64,
    /// Eligible pods, ready or not, by name.
    eligible: Vec<&'a str>,
    /// Eligible ready pods.
    ready: Vec<&'a str>,
    wanted: u32,
    hot_extra: u32,
    spec: u32,
    hot: bool,
}

/// Computes the desired placement, the status per adapter and the actions to get there.
///
/// Deterministic: the order of `pods` and `adapters` in the snapshot does not matter.
pub fn plan(snap: &Snapshot) -> Result<Plan, PlanError> {
    let cfg = &snap.config;
    let hot_rps = cfg.hot_rps_per_replica;
    if !hot_rps.is_finite() || hot_rps <= 0.0 {
        return Err(PlanError::HotThreshold(hot_rps));
    }
    let mut pods: BTreeMap<&str, &PodView> = BTreeMap::new();
    for p in &snap.pods {
        if pods.insert(&p.name, p).is_some() {
            return Err(PlanError::DuplicatePod(p.name.clone()));
        }
    }
    let mut adapters: BTreeMap<&str, &AdapterView> = BTreeMap::new();
    for a in &snap.adapters {
        if adapters.insert(&a.name, a).is_some() {
            return Err(PlanError::DuplicateAdapter(a.name.clone()));
        }
    }
    // Everything resident per pod (known, unknown, draining): what capacity is measured in.
    let mut resident: BTreeMap<&str, BTreeSet<&str>> = pods
        .iter()
        .map(|(&n, p)| {
            let set = p
                .loaded
                .iter()
                .chain(p.draining.keys())
                .map(String::as_str)
                .collect();
            (n, set)
        })
        .collect();
    let room = |resident: &BTreeMap<&str, BTreeSet<&str>>, pod: &str| {
        resident[pod].len() < pods[pod].capacity() as usize
    };

    let mut wants: BTreeMap<&str, Want> = BTreeMap::new();
    for (&name, &a) in adapters.iter().filter(|(_, a)| !a.deleted) {
        let eligible: Vec<&str> = pods
            .values()
            .filter(|p| may_use(a, p))
            .map(|p| p.name.as_str())
            .collect();
        let ready: Vec<&str> = eligible.iter().copied().filter(|p| pods[p].ready).collect();
        let traffic = if a.traffic_rps.is_finite() && a.traffic_rps > 0.0 {
            a.traffic_rps
        } else {
            0.0
        };
        let (spec, hot_extra) = match a.replicas {
            None => (eligible.len() as u32, 0),
            Some(0) => (0, 0),
            Some(n) => {
                let need = (traffic / hot_rps).ceil() as u32;
                (n, need.saturating_sub(n).min(cfg.max_extra_replicas))
            }
        };
        let want = Want {
            traffic,
            eligible,
            ready,
            wanted: spec.saturating_add(hot_extra),
            hot_extra,
            spec,
            hot: traffic > hot_rps,
        };
        wants.insert(name, want);
    }

    let mut load_reason: BTreeMap<(&str, &str), Reason> = BTreeMap::new();
    let mut pod_traffic: BTreeMap<&str, f64> = pods.keys().map(|&p| (p, 0.0)).collect();
    let mut placed: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();

    // Stability first: keep copies that are resident (serving before draining) on pods still
    // eligible and ready, then copies the last plan asked for that are not loaded yet.
    for (&name, w) in &wants {
        let set = placed.entry(name).or_default();
        let mut keep: Vec<(u8, &str)> = w
            .ready
            .iter()
            .filter(|&&p| resident[p].contains(name))
            .map(|&p| (u8::from(pods[p].draining.contains_key(name)), p))
            .collect();
        keep.sort();
        for (_, p) in keep.into_iter().take(w.wanted as usize) {
            set.insert(p);
        }
    }
    for (&name, w) in &wants {
        let Some(prev) = snap.previous.get(name) else {
            continue;
        };
        for &p in &w.ready {
            let set = placed.entry(name).or_default();
            if set.len() >= w.wanted as usize {
                break;
            }
            if prev.contains(p) && !set.contains(p) && room(&resident, p) {
                set.insert(p);
                resident.get_mut(p).expect("pod").insert(name);
                load_reason.insert((name, p), Reason::Reload);
            }
        }
    }
    for (&name, w) in &wants {
        for &p in &placed[name] {
            *pod_traffic.get_mut(p).expect("pod") += w.traffic / f64::from(w.wanted.max(1));
        }
    }

    // New copies, one per adapter per round so every adapter gets its first replica before
    // any gets its second; hot adapters first (most traffic first), then by name.
    let mut order: Vec<&str> = wants.keys().copied().collect();
    order.sort_by(|a, b| {
        let (wa, wb) = (&wants[a], &wants[b]);
        wb.hot
            .cmp(&wa.hot)
            .then(wb.traffic.total_cmp(&wa.traffic))
            .then(a.cmp(b))
    });
    loop {
        let mut progressed = false;
        for &name in &order {
            let w = &wants[name];
            let set = &placed[name];
            if set.len() >= w.wanted as usize {
                continue;
            }
            let candidates = w
                .ready
                .iter()
                .copied()
                .filter(|&p| !set.contains(p) && room(&resident, p));
            let pick = if w.hot {
                // Spread: least adapter traffic, then fewest residents, then name.
                candidates.min_by(|&a, &b| {
                    pod_traffic[a]
                        .total_cmp(&pod_traffic[b])
                        .then(resident[a].len().cmp(&resident[b].len()))
                        .then(a.cmp(b))
                })
            } else {
                // Best fit: the fullest pod that still has room, ties by name.
                candidates.min_by(|&a, &b| resident[b].len().cmp(&resident[a].len()).then(a.cmp(b)))
            };
            let Some(p) = pick else { continue };
            let reason = if set.len() >= w.spec as usize {
                Reason::Hot
            } else {
                Reason::Spec
            };
            placed.get_mut(name).expect("adapter").insert(p);
            resident.get_mut(p).expect("pod").insert(name);
            *pod_traffic.get_mut(p).expect("pod") += w.traffic / f64::from(w.wanted.max(1));
            load_reason.insert((name, p), reason);
            progressed = true;
        }
        if !progressed {
            break;
        }
    }

    let mut status = BTreeMap::new();
    for &name in adapters.keys() {
        let resident_on: Vec<String> = pods
            .values()
            .filter(|p| p.loaded.contains(name) || p.draining.contains_key(name))
            .map(|p| p.name.clone())
            .collect();
        let st = match wants.get(name) {
            None => AdapterStatus {
                wanted: 0,
                placed: 0,
                hot_extra: 0,
                shortfall: None,
                resident_on,
            },
            Some(w) => {
                let n = placed[name].len();
                let shortfall = (n < w.wanted as usize).then_some({
                    if n < w.ready.len() {
                        Shortfall::CapacityExhausted
                    } else if w.eligible.is_empty() {
                        Shortfall::NoEligiblePod
                    } else if w.ready.len() < w.eligible.len() {
                        Shortfall::PodNotReady
                    } else {
                        Shortfall::TooFewEligiblePods
                    }
                });
                AdapterStatus {
                    wanted: w.wanted,
                    placed: n as u32,
                    hot_extra: w.hot_extra,
                    shortfall,
                    resident_on,
                }
            }
        };
        status.insert(name.to_string(), st);
    }

    let mut actions = Vec::new();
    for (&pname, &pod) in &pods {
        let held = pod
            .loaded
            .iter()
            .chain(pod.draining.keys())
            .map(String::as_str);
        let wanted_here = placed
            .iter()
            .filter(|(_, s)| s.contains(pname))
            .map(|(&a, _)| a);
        let names: BTreeSet<&str> = held.chain(wanted_here).collect();
        for a in names {
            let Some(&view) = adapters.get(a) else {
                continue;
            }; // someone else's adapter
            let desired = placed.get(a).is_some_and(|s| s.contains(pname));
            let is_resident = pod.loaded.contains(a) || pod.draining.contains_key(a);
            let step = match (desired, is_resident, pod.draining.get(a)) {
                (true, false, _) => {
                    let why = load_reason
                        .get(&(a, pname))
                        .copied()
                        .unwrap_or(Reason::Spec);
                    Some((ActionKind::Load, why))
                }
                (true, true, Some(_)) => Some((ActionKind::Resume, Reason::Wanted)),
                (false, true, None) => {
                    let why = if view.deleted {
                        Reason::Deleted
                    } else if !(pod.ready && may_use(view, pod)) {
                        Reason::NotEligible
                    } else {
                        Reason::Surplus
                    };
                    Some((ActionKind::Drain, why))
                }
                (false, true, Some(true)) => Some((ActionKind::Unload, Reason::Drained)),
                _ => None,
            };
            if let Some((kind, reason)) = step {
                actions.push(Action {
                    kind,
                    adapter: a.to_string(),
                    pod: pname.to_string(),
                    reason,
                });
            }
        }
    }
    actions.sort_by(|x, y| (x.kind, &x.pod, &x.adapter).cmp(&(y.kind, &y.pod, &y.adapter)));

    let placement = placed
        .into_iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(a, s)| (a.to_string(), s.into_iter().map(str::to_string).collect()))
        .collect();
    Ok(Plan {
        placement,
        status,
        actions,
    })
}

/// The pod serves the adapter's base model and its selector allows it.
fn may_use(a: &AdapterView, p: &PodView) -> bool {
    p.base_model == a.base_model && a.eligible.as_ref().is_none_or(|s| s.contains(&p.name))
}
