//! Mixed fleets: engines of several GPU types (groups) behind one gateway, routed by the
//! optimizer's plan, and the replay of a plan in virtual time (`brix bench sim --mix/--plan`,
//! the study, `brix optimize plan --verify`).
//!
//! A group is `count` identical engines of one GPU profile and engine configuration, named
//! `<group>-<i>`; the routing core puts each engine in its group and, with
//! [`SimConfig::plan`], picks a group by the plan's shares before the strategy picks an engine
//! (`brix_router::fleet::Fleet::set_plan`). A mixed fleet is static: no autoscaler, adapters,
//! replica schedule, KV pool or extra gateways.

use std::str::FromStr;
use std::sync::Arc;

use brix_optimizer::{Plan, Slo};
use brix_router::PlanRoutes;
use brix_sim::{Catalog, EngineConfig, GpuProfile, ModelProfile, StepCost};
use serde::Serialize;

use super::{Release, SimConfig, SimError, SimRun, SimStrategy};
use crate::report::RequestRecord;
use crate::workload::Workload;

/// One GPU type's engines in a mixed fleet.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupConfig {
    /// Group name: the engines' name prefix and the plan's group (deployment or GPU type).
    pub name: String,
    /// The GPU profile of its engines.
    pub gpu: GpuProfile,
    /// Its engines' settings (vLLM's defaults for the model on this GPU unless set).
    pub engine: EngineConfig,
    /// Engines in the group.
    pub count: usize,
    /// Dollars per hour of one engine (all its tensor-parallel GPUs).
    pub cost_per_hour: f64,
}

impl GroupConfig {
    /// `count` engines of `model` on `gpu` with vLLM's defaults, billed at the GPU's price ×
    /// the model's tensor-parallel size; named after the GPU.
    pub fn new(model: &ModelProfile, gpu: GpuProfile, count: usize) -> Self {
        Self {
            name: gpu.name.clone(),
            engine: EngineConfig::vllm_defaults(model, &gpu),
            cost_per_hour: gpu.price_per_hour * f64::from(model.tensor_parallel_size),
            gpu,
            count,
        }
    }
}

/// A `--mix` value: `GPU:COUNT,...` (e.g. `A10:3,H100:1`), GPU names as the catalog's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MixSpec(pub Vec<(String, usize)>);

impl FromStr for MixSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (gpu, n) = part
                .rsplit_once(':')
                .ok_or_else(|| format!("'{part}' is not GPU:COUNT"))?;
            let n: usize = n
                .parse()
                .ok()
                .filter(|n| (1..=MAX_GROUP_ENGINES).contains(n))
                .ok_or_else(|| format!("'{n}' is not a count in 1..={MAX_GROUP_ENGINES}"))?;
            let gpu = gpu.trim();
            if gpu.is_empty() || out.iter().any(|(g, _)| g.eq_ignore_ascii_case(gpu)) {
                return Err(format!("'{part}': empty or repeated GPU type"));
            }
            out.push((gpu.to_string(), n));
        }
        if out.is_empty() {
            return Err("no GPU:COUNT group".into());
        }
        Ok(Self(out))
    }
}

/// Most engines one group may have (a bound on what a flag or plan file can ask for).
pub const MAX_GROUP_ENGINES: usize = 4096;

impl MixSpec {
    /// The groups, with the catalog's GPU profiles.
    pub fn groups(
        &self,
        model: &ModelProfile,
        catalog: &Catalog,
    ) -> Result<Vec<GroupConfig>, brix_sim::ProfileError> {
        self.0
            .iter()
            .map(|(g, n)| Ok(GroupConfig::new(model, catalog.gpu(g)?.clone(), *n)))
            .collect()
    }
}

impl SimConfig {
    /// A static fleet of `groups` (one gateway, the gateway's defaults); with `plan`, routed
    /// by it. `engine` and `gpu` are the first group's: the `ttft` strategy's step-cost
    /// profile is fitted on them (its online correction learns the others).
    pub fn mixed(
        model: ModelProfile,
        groups: Vec<GroupConfig>,
        plan: Option<Arc<PlanRoutes>>,
    ) -> Result<Self, SimError> {
        let first = groups.first().ok_or(SimError::NoEngines)?;
        let mut cfg = Self::new(
            groups.iter().map(|g| g.count).sum(),
            model,
            first.gpu.clone(),
        );
        cfg.engine = first.engine.clone();
        cfg.groups = groups;
        cfg.plan = plan;
        Ok(cfg)
    }

    /// Engine `i`'s group (position in `groups`); None in a single-group fleet.
    pub(crate) fn group_of(&self, i: usize) -> Option<usize> {
        let mut end = 0;
        for (g, group) in self.groups.iter().enumerate() {
            end += group.count;
            if i < end {
                return Some(g);
            }
        }
        None
    }

    /// Engine `i`'s settings and GPU.
    pub(crate) fn engine_spec(&self, i: usize) -> (&EngineConfig, &GpuProfile) {
        match self.group_of(i) {
            Some(g) => (&self.groups[g].engine, &self.groups[g].gpu),
            None => (&self.engine, &self.gpu),
        }
    }

    /// Engine `i`'s name: `<group>-<k>` (k counted within the group), else `engine-i`.
    pub(crate) fn engine_name(&self, i: usize) -> String {
        match self.group_of(i) {
            Some(g) => {
                let before: usize = self.groups[..g].iter().map(|x| x.count).sum();
                format!("{}-{}", self.groups[g].name, i - before)
            }
            None => format!("engine-{i}"),
        }
    }

    /// Per group (one entry for a single-group fleet: `single`, the fleet's own), the
    /// engines' step cost and token budget, for the oracle.
    pub(crate) fn group_costs(&self, single: StepCost) -> Vec<(StepCost, u32)> {
        if self.groups.is_empty() {
            return vec![(single, self.engine.max_num_batched_tokens)];
        }
        self.groups
            .iter()
            .map(|g| {
                let cost = StepCost::new(&self.model, &g.gpu);
                (cost, g.engine.max_num_batched_tokens)
            })
            .collect()
    }

    /// What a mixed fleet cannot combine with, or a group that is empty or repeated.
    pub(crate) fn mixed_problem(&self) -> Option<SimError> {
        if self.groups.is_empty() {
            return self.plan.is_some().then_some(SimError::Mixed);
        }
        let names_ok = self.groups.iter().enumerate().all(|(k, g)| {
            g.count > 0
                && !g.name.is_empty()
                && self.groups[..k].iter().all(|o| o.name != g.name)
                && g.cost_per_hour.is_finite()
                && g.cost_per_hour >= 0.0
        });
        let static_fleet = self.autoscaler.is_none()
            && self.adapters.is_none()
            && self.schedule.is_none()
            && self.kv_pool.is_none()
            && self.replicas.gateways <= 1;
        let total: usize = self.groups.iter().map(|g| g.count).sum();
        (!names_ok || !static_fleet || total != self.engines).then_some(SimError::Mixed)
    }
}

/// One group of a mixed run: what it served and what it cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GroupReport {
    /// Group name.
    pub name: String,
    /// Its GPU type.
    pub gpu: String,
    /// Engines in it.
    pub engines: usize,
    /// Requests routed to it.
    pub requests: u64,
    /// Virtual seconds its engines spent in steps, summed.
    pub busy_s: f64,
    /// Engine seconds billed (each engine for the whole run).
    pub replica_seconds: f64,
    /// Dollars per hour of the group (engines × cost per engine).
    pub cost_per_hour: f64,
    /// `replica_seconds` at the cost per engine-hour.
    pub cost_usd: f64,
}

impl GroupReport {
    /// Share of its engines' billed time spent in steps.
    pub fn busy_share(&self) -> f64 {
        if self.replica_seconds > 0.0 {
            self.busy_s / self.replica_seconds
        } else {
            0.0
        }
    }
}

/// A plan's fleet: one group per GPU option with replicas (named as the option, billed at the
/// plan's cost per replica), and its routes.
pub fn plan_fleet(
    plan: &Plan,
    routes: PlanRoutes,
    model: &ModelProfile,
    catalog: &Catalog,
) -> Result<SimConfig, ReplayError> {
    let mut groups = Vec::new();
    for g in plan.gpus.iter().filter(|g| g.replicas > 0) {
        let gpu = catalog.gpu(&g.gpu).map_err(ReplayError::Profile)?.clone();
        let count = g.replicas as usize;
        if count > MAX_GROUP_ENGINES {
            return Err(ReplayError::Plan(format!(
                "{} replicas of {} (at most {MAX_GROUP_ENGINES})",
                g.replicas, g.name
            )));
        }
        let mut group = GroupConfig::new(model, gpu, count);
        group.name = g.name.clone();
        if g.cost_per_replica.is_finite() && g.cost_per_replica >= 0.0 {
            group.cost_per_hour = g.cost_per_replica;
        }
        groups.push(group);
    }
    if groups.is_empty() {
        return Err(ReplayError::Plan("the plan runs no replica".into()));
    }
    Ok(SimConfig::mixed(
        model.clone(),
        groups,
        Some(Arc::new(routes)),
    )?)
}

/// Why a plan could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A GPU type of the plan is not in the catalog.
    #[error(transparent)]
    Profile(brix_sim::ProfileError),
    /// The plan runs nothing, or more than a group may have.
    #[error("plan: {0}")]
    Plan(String),
    /// The simulation failed.
    #[error(transparent)]
    Sim(#[from] SimError),
}

/// How a plan did in virtual time.
#[derive(Clone, Debug)]
pub struct PlanReplay {
    /// The run: records (`target_pod` = `<group>-<i>`), engines, per-group reports.
    pub run: SimRun,
    /// Per group (the plan's options with replicas, in its order): the share of its
    /// requests that met every bound of the SLO.
    pub attainment: Vec<f64>,
    /// Share of all requests that met every bound (a failed request meets none).
    pub overall: f64,
    /// Whether `overall` reaches the SLO's percentile.
    pub met: bool,
    /// The fleet's cost per hour (Σ engines × cost per engine).
    pub cost_per_hour: f64,
    /// What the run cost: every engine billed from 0 to the run's end.
    pub cost_usd: f64,
}

/// Replays `w` (its arrival times, open loop) on the fleet `plan` describes, routed by the
/// plan's routes (`plan.routes()`) and `strategy` within each group, and scores it against
/// `slo`. Deterministic.
pub fn replay_plan(
    w: &Workload,
    plan: &Plan,
    model: &ModelProfile,
    catalog: &Catalog,
    strategy: &SimStrategy,
    slo: &Slo,
) -> Result<PlanReplay, ReplayError> {
    replay_routes(w, plan, plan.routes(), model, catalog, strategy, slo)
}

/// [`replay_plan`] with routes given (hand-written, or changed from the plan's).
pub fn replay_routes(
    w: &Workload,
    plan: &Plan,
    routes: PlanRoutes,
    model: &ModelProfile,
    catalog: &Catalog,
    strategy: &SimStrategy,
    slo: &Slo,
) -> Result<PlanReplay, ReplayError> {
    let cfg = plan_fleet(plan, routes, model, catalog)?;
    let keys = super::route_keys(w, cfg.prefix.block_units as usize);
    let run = super::run(w, &keys, Release::Open, &cfg, strategy)?;
    let met = |r: &RequestRecord| slo_met(slo, r);
    let attainment = attainment_by_group(&run, met);
    let overall = share(run.records.iter().map(met));
    Ok(PlanReplay {
        attainment,
        overall,
        met: overall >= slo.percentile / 100.0,
        cost_per_hour: run.groups.iter().map(|g| g.cost_per_hour).sum(),
        cost_usd: run.fleet.cost_usd,
        run,
    })
}

/// Whether request `r` succeeded and met every bound of `slo` (the optimizer's, seconds).
pub fn slo_met(slo: &Slo, r: &RequestRecord) -> bool {
    let s = |ms: Option<f64>| ms.map(|v| v / 1000.0);
    r.ok() && slo.met(s(r.ttft_ms), s(r.tpot_ms), s(r.e2e_ms))
}

/// Per group of `run` (in its order), the share of the requests it served for which `met`
/// holds; 1 for a group that served none.
pub fn attainment_by_group(run: &SimRun, met: impl Fn(&RequestRecord) -> bool) -> Vec<f64> {
    let mut counts = vec![(0u64, 0u64); run.groups.len()];
    for r in &run.records {
        let Some(g) = r
            .target_pod
            .as_deref()
            .and_then(|pod| group_of_pod(&run.groups, pod))
        else {
            continue;
        };
        counts[g].0 += u64::from(met(r));
        counts[g].1 += 1;
    }
    counts
        .iter()
        .map(|&(ok, n)| if n == 0 { 1.0 } else { ok as f64 / n as f64 })
        .collect()
}

/// The group whose engines are named `<group>-<i>`, for pod `pod`.
fn group_of_pod(groups: &[GroupReport], pod: &str) -> Option<usize> {
    let (prefix, i) = pod.rsplit_once('-')?;
    i.parse::<usize>().ok()?;
    groups.iter().position(|g| g.name == prefix)
}

/// Share of `true` (1 when empty).
fn share(it: impl Iterator<Item = bool>) -> f64 {
    let (ok, n) = it.fold((0u64, 0u64), |(ok, n), m| (ok + u64::from(m), n + 1));
    if n == 0 { 1.0 } else { ok as f64 / n as f64 }
}
