//! The heterogeneous GPU optimizer's two hooks on the request path (`brix up` sets them up):
//! a [`LoadMonitor`] per optimized model, fed with each finished request's prompt and
//! completion tokens, which the optimizer's driver reads as demand; and the plan's routes,
//! which narrow a request's candidates to the pods of one deployment (pod group) drawn by the
//! plan's shares for its shape, before the routing strategy picks a pod among them.
//!
//! Bounded by construction: only models the fleet file names get a monitor (a client's model
//! name never becomes a key here), and a monitor holds one count array per tick of its window.
//!
//! Pod groups: a pod belongs to deployment `d` when its name is `d-<n>` (how `brix up` names
//! replicas); the longest matching deployment wins, so `a` and `a-b` never share a pod.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use brix_optimizer::{Demand, Grid, LoadMonitor, MonitorConfig};
use brix_router::PlanRoutes;
use rand::Rng;

use crate::pool::PodState;

/// Per optimized model: its monitor and the plan's routes.
#[derive(Default)]
pub(crate) struct Optimized {
    models: RwLock<HashMap<String, Arc<ModelOpt>>>,
}

struct ModelOpt {
    monitor: Mutex<LoadMonitor>,
    routes: RwLock<Option<Arc<PlanRoutes>>>,
}

/// What the plan stage did with one request's candidates (the routing metric's label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Narrowed {
    /// No plan for the model: every candidate stays.
    NoPlan,
    /// Narrowed to the pods of the drawn group.
    Group,
    /// The plan has no share for this shape, or no planned group has a ready pod: every
    /// candidate stays.
    Fallback,
}

impl Narrowed {
    /// The metric label.
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            Self::NoPlan => "none",
            Self::Group => "group",
            Self::Fallback => "fallback",
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Optimized {
    fn get(&self, model: &str) -> Option<Arc<ModelOpt>> {
        self.models
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(model)
            .cloned()
    }

    /// Starts monitoring `model` (replaces an earlier monitor and plan).
    pub(crate) fn enable(&self, model: &str, grid: Grid, cfg: MonitorConfig) {
        let opt = Arc::new(ModelOpt {
            monitor: Mutex::new(LoadMonitor::new(grid, cfg)),
            routes: RwLock::default(),
        });
        self.models
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(model.to_string(), opt);
    }

    /// A request for `model` finished at `now_s` with `input` prompt and `output` completion
    /// tokens; ignored for a model nobody optimizes.
    pub(crate) fn observe(&self, model: &str, input: u64, output: u64, now_s: f64) {
        if let Some(m) = self.get(model) {
            let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
            lock(&m.monitor).observe(clamp(input), clamp(output), now_s);
        }
    }

    /// The demand of `model` at `now_s`, if it is monitored.
    pub(crate) fn demand(&self, model: &str, now_s: f64) -> Option<Demand> {
        self.get(model).map(|m| lock(&m.monitor).demand(now_s))
    }

    /// Sets (or clears) the routes requests for `model` follow; false if it is not monitored.
    pub(crate) fn set_routes(&self, model: &str, routes: Option<Arc<PlanRoutes>>) -> bool {
        let Some(m) = self.get(model) else {
            return false;
        };
        *m.routes.write().unwrap_or_else(|p| p.into_inner()) = routes;
        true
    }

    /// Narrows `candidates` (the healthy pods of base model `model`) to one plan group, drawn
    /// by the plan's shares for a prompt of `prompt_tokens` with output as `output` hints,
    /// each share discounted by the group's ready pods over its planned replicas (a group
    /// still starting gets less until it catches up).
    pub(crate) fn narrow(
        &self,
        model: &str,
        candidates: &mut Vec<Arc<PodState>>,
        prompt_tokens: u32,
        output: brix_router::OutputHint,
        rng: &mut impl Rng,
    ) -> Narrowed {
        let Some(routes) = self
            .get(model)
            .and_then(|m| m.routes.read().unwrap_or_else(|p| p.into_inner()).clone())
        else {
            return Narrowed::NoPlan;
        };
        let groups: Vec<Option<usize>> = candidates
            .iter()
            .map(|p| group_of(&routes.groups, &p.name))
            .collect();
        let mut ready = vec![0u32; routes.groups.len()];
        for g in groups.iter().flatten() {
            ready[*g] += 1;
        }
        // The router's own draw (shares × min(1, ready / planned)), as `brix bench sim` uses.
        let Some(pick) = routes.pick(prompt_tokens, output, &ready, rng) else {
            return Narrowed::Fallback;
        };
        let mut i = 0;
        candidates.retain(|_| {
            let keep = groups[i] == Some(pick);
            i += 1;
            keep
        });
        Narrowed::Group
    }
}

impl crate::GatewayHandle {
    /// Starts the optimizer's load monitor for served model `model` (from the fleet file,
    /// never from a request): from now on each finished request for it is counted in its
    /// bucket of `grid`, over `cfg`'s window.
    pub fn enable_optimizer(&self, model: &str, grid: Grid, cfg: MonitorConfig) {
        self.optimized.enable(model, grid, cfg);
    }

    /// The demand `model`'s monitor sees now; None if no optimizer runs for it.
    pub fn demand(&self, model: &str) -> Option<Demand> {
        self.optimized
            .demand(model, self.epoch.elapsed().as_secs_f64())
    }

    /// Makes requests for `model` follow `routes` (groups = deployment names, whose pods are
    /// named `<deployment>-<n>`); None routes over every pod again. False if no optimizer
    /// runs for `model`.
    pub fn set_plan_routes(&self, model: &str, routes: Option<Arc<PlanRoutes>>) -> bool {
        self.optimized.set_routes(model, routes)
    }
}

/// The group (deployment) of pod `name`: the longest group `g` with `name == g-<digits>`.
pub(crate) fn group_of(groups: &[String], name: &str) -> Option<usize> {
    groups
        .iter()
        .enumerate()
        .filter(|(_, g)| {
            name.strip_prefix(g.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .max_by_key(|(_, g)| g.len())
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn pods_belong_to_the_longest_matching_deployment() {
        let groups = vec!["a".to_string(), "a-b".to_string()];
        assert_eq!(group_of(&groups, "a-0"), Some(0));
        assert_eq!(group_of(&groups, "a-b-12"), Some(1));
        assert_eq!(group_of(&groups, "a-"), None);
        assert_eq!(group_of(&groups, "a-c-0"), None);
        assert_eq!(group_of(&groups, "b-0"), None);
    }

    fn pod(name: &str, i: u16) -> Arc<PodState> {
        let t = crate::Target {
            name: name.into(),
            address: format!("127.0.0.1:{i}"),
            kv_events: None,
            metrics: None,
        };
        let pool = crate::pool::Pool::new(
            Default::default(),
            Default::default(),
            std::time::Instant::now(),
        );
        let mut all = crate::Targets::new();
        all.insert("m".into(), vec![t]);
        pool.apply(&all);
        pool.pod(&format!("127.0.0.1:{i}")).expect("applied")
    }

    #[test]
    fn shapes_follow_the_plan_and_readiness() {
        let opt = Optimized::default();
        let grid = Grid {
            inputs: vec![32, 4096],
            outputs: vec![16],
        };
        opt.enable("m", grid, MonitorConfig::default());
        let routes = PlanRoutes {
            inputs: vec![32, 4096],
            outputs: vec![16],
            groups: vec!["m-a".into(), "m-b".into()],
            planned: vec![2, 2],
            weights: vec![vec![1.0, 0.0], vec![0.25, 0.75]],
            demand: vec![1.0, 1.0],
        };
        let all = vec![
            pod("m-a-0", 1),
            pod("m-a-1", 2),
            pod("m-b-0", 3),
            pod("m-b-1", 4),
        ];
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut c = all.clone();
        assert_eq!(
            opt.narrow("m", &mut c, 30, None.into(), &mut rng),
            Narrowed::NoPlan
        );
        assert_eq!(c.len(), 4);
        assert!(opt.set_routes("m", Some(Arc::new(routes))));
        assert!(!opt.set_routes("other", None), "only monitored models");
        for _ in 0..50 {
            let mut c = all.clone();
            assert_eq!(
                opt.narrow("m", &mut c, 30, None.into(), &mut rng),
                Narrowed::Group
            );
            assert!(c.iter().all(|p| p.name.starts_with("m-a-")), "short → a");
        }
        // Long prompts: 1/4 to a, 3/4 to b; with one of b's two planned pods ready, b's share
        // halves: 0.25 vs 0.375, so a gets 40 %.
        let partial: Vec<_> = all.iter().take(3).cloned().collect();
        let mut to_a = 0;
        let n = 2000;
        for _ in 0..n {
            let mut c = partial.clone();
            opt.narrow("m", &mut c, 5000, None.into(), &mut rng);
            if c[0].name.starts_with("m-a-") {
                to_a += 1;
            }
        }
        let share = f64::from(to_a) / f64::from(n);
        // Binomial sd at n = 2000 is about 0.011: 5 sd either side.
        assert!((share - 0.4).abs() < 0.055, "share to a {share}");
        // No pod of any planned group: all stay.
        let mut c = vec![pod("x-0", 9)];
        assert_eq!(
            opt.narrow("m", &mut c, 30, None.into(), &mut rng),
            Narrowed::Fallback
        );
        assert_eq!(c.len(), 1);
    }
}
