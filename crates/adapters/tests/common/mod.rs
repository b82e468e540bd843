//! Builders for snapshots and a model of the driver that applies plans.
#![allow(dead_code)]

use brix_adapters::{ActionKind, AdapterView, Plan, PodView, Snapshot};

/// A ready pod of `base` holding `cap` adapters, with `loaded` reported by its engine.
pub fn pod(name: &str, base: &str, cap: u32, loaded: &[&str]) -> PodView {
    PodView {
        name: name.into(),
        base_model: base.into(),
        ready: true,
        max_loras: 1,
        max_cpu_loras: cap,
        loaded: loaded.iter().map(|s| s.to_string()).collect(),
        draining: Default::default(),
    }
}

/// An adapter of `base`, no selector, no traffic.
pub fn adapter(name: &str, base: &str, replicas: Option<u32>) -> AdapterView {
    AdapterView {
        name: name.into(),
        base_model: base.into(),
        replicas,
        eligible: None,
        traffic_rps: 0.0,
        deleted: false,
    }
}

/// Does what a driver does with a plan: loads, drains (routing stops, requests still in
/// flight), resumes, unloads; and remembers the placement.
pub fn apply(snap: &mut Snapshot, plan: &Plan) {
    for a in &plan.actions {
        let p = snap
            .pods
            .iter_mut()
            .find(|p| p.name == a.pod)
            .expect("pod in snapshot");
        match a.kind {
            ActionKind::Load => {
                p.loaded.insert(a.adapter.clone());
            }
            ActionKind::Drain => {
                p.draining.insert(a.adapter.clone(), false);
            }
            ActionKind::Resume => {
                p.draining.remove(&a.adapter);
            }
            ActionKind::Unload => {
                p.loaded.remove(&a.adapter);
                p.draining.remove(&a.adapter);
            }
        }
    }
    snap.previous = plan.placement.clone();
}

/// The driver reports every drain finished (no request in flight any more).
pub fn finish_drains(snap: &mut Snapshot) {
    for p in &mut snap.pods {
        p.draining.values_mut().for_each(|d| *d = true);
    }
}

/// The actions as `(kind, adapter, pod)` for compact assertions.
pub fn steps(plan: &Plan) -> Vec<(ActionKind, &str, &str)> {
    plan.actions
        .iter()
        .map(|a| (a.kind, a.adapter.as_str(), a.pod.as_str()))
        .collect()
}

/// The pods an adapter is placed on.
pub fn on<'a>(plan: &'a Plan, adapter: &str) -> Vec<&'a str> {
    plan.placement
        .get(adapter)
        .map(|s| s.iter().map(String::as_str).collect())
        .unwrap_or_default()
}
