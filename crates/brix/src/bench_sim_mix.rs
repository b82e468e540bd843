//! `brix bench sim --mix A10:3,H100:1` and `--plan plan.json`: a mixed fleet of GPU types
//! (one group per type, engines named `<group>-<i>`), routed by the optimizer's plan with
//! `--plan`; and each run's per-group lines (requests, busy share, cost, SLO attainment).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use brix_bench::report::Slo;
use brix_bench::vsim::{self, GroupConfig, MixSpec, SimConfig, SimRun};
use brix_optimizer::Plan;
use brix_sim::{Catalog, EngineSettings, ModelProfile};
use clap::Args;

use super::SimCliError;

/// Largest plan file read.
const MAX_PLAN_BYTES: u64 = 16 << 20;

/// The mixed-fleet flags of `brix bench sim`.
#[derive(Debug, Args)]
pub(crate) struct MixArgs {
    /// A mixed fleet, `GPU:COUNT,...` (e.g. `A10:3,H100:1`; GPU profiles as `--gpu`), in
    /// place of `--engines` × `--gpu`; routed by the strategy over all engines.
    #[arg(long, conflicts_with_all = ["plan", "autoscaler", "scale_at", "engines", "gpu"])]
    pub(crate) mix: Option<MixSpec>,
    /// An optimizer plan (`brix optimize plan --json FILE`): its GPU types with replicas
    /// become the fleet, each billed at the plan's cost per replica, and requests go to a type
    /// by the plan's shares for their shape, then to an engine by the strategy.
    #[arg(long, conflicts_with_all = ["autoscaler", "scale_at", "engines", "gpu"])]
    pub(crate) plan: Option<PathBuf>,
}

impl MixArgs {
    /// Whether the fleet is mixed (`--mix` or `--plan`).
    pub(crate) fn is_set(&self) -> bool {
        self.mix.is_some() || self.plan.is_some()
    }

    /// Turns `cfg` (built for one GPU type from the other flags) into the mixed fleet the
    /// flags ask for, each group's engines with the flags' engine settings; unchanged without
    /// `--mix`/`--plan`.
    pub(crate) fn apply(
        &self,
        cfg: SimConfig,
        catalog: &Catalog,
        settings: &EngineSettings,
    ) -> Result<SimConfig, SimCliError> {
        let model = cfg.model.clone();
        let (groups, plan) = if let Some(mix) = &self.mix {
            (mix.groups(&model, catalog)?, None)
        } else if let Some(path) = &self.plan {
            let plan = read_plan(path)?;
            let routes = plan.routes();
            let fleet = vsim::plan_fleet(&plan, routes, &model, catalog)
                .map_err(|e| SimCliError::Flag(format!("--plan {}: {e}", path.display())))?;
            (fleet.groups, fleet.plan)
        } else {
            return Ok(cfg);
        };
        let groups = with_settings(groups, settings, &model);
        let mut mixed = SimConfig::mixed(model, groups, plan)?;
        mixed.prefix = cfg.prefix;
        mixed.scrape_interval_s = cfg.scrape_interval_s;
        mixed.kv_events = cfg.kv_events;
        mixed.seed = cfg.seed;
        mixed.kv_pool = cfg.kv_pool;
        mixed.replicas = cfg.replicas;
        Ok(mixed)
    }
}

/// The groups with the flags' engine settings over each GPU's vLLM defaults.
fn with_settings(
    groups: Vec<GroupConfig>,
    settings: &EngineSettings,
    model: &ModelProfile,
) -> Vec<GroupConfig> {
    groups
        .into_iter()
        .map(|mut g| {
            g.engine = settings.apply(brix_sim::EngineConfig::vllm_defaults(model, &g.gpu));
            g
        })
        .collect()
}

/// Reads a plan file (bounded), as `brix optimize plan --json` writes it.
fn read_plan(path: &Path) -> Result<Plan, SimCliError> {
    let flag =
        |e: &dyn std::fmt::Display| SimCliError::Flag(format!("--plan {}: {e}", path.display()));
    let len = std::fs::metadata(path).map_err(|e| flag(&e))?.len();
    if len > MAX_PLAN_BYTES {
        return Err(flag(&format!("{len} bytes (at most {MAX_PLAN_BYTES})")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| flag(&e))?;
    let plan: Plan = serde_json::from_str(&text).map_err(|e| flag(&e))?;
    let cells = plan.demand.grid.len();
    let columns_ok = plan.assign.iter().all(|row| row.len() == plan.gpus.len());
    if plan.assign.len() != cells || plan.demand.rates.len() != cells || !columns_ok {
        return Err(flag(
            &"assign and demand do not match the grid and GPU list",
        ));
    }
    Ok(plan)
}

/// The fleet in words: `3 × A10 + 1 × H100` for a mixed one, else `N × GPU`.
pub(crate) fn describe(cfg: &SimConfig, gpu: &str) -> String {
    if cfg.groups.is_empty() {
        return format!("{} × {gpu}", cfg.engines);
    }
    cfg.groups
        .iter()
        .map(|g| format!("{} × {}", g.count, g.name))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Per-group lines of the mixed runs, attainment against `slo` (the flags' bounds, else the
/// optimizer's default P90 TTFT ≤ 2 s, TPOT ≤ 100 ms); empty when no run is mixed.
pub(crate) fn table<'a>(runs: impl Iterator<Item = (&'a str, &'a SimRun)>, slo: Slo) -> String {
    let opt = optimizer_slo(slo);
    let mut out = String::new();
    for (label, r) in runs.filter(|(_, r)| !r.groups.is_empty()) {
        let attainment = vsim::attainment_by_group(r, |rec| vsim::slo_met(&opt, rec));
        for (g, a) in r.groups.iter().zip(attainment) {
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {} | {} | {:.1} % | {:.2} | {:.3} | {:.1} % |",
                g.name,
                g.gpu,
                g.engines,
                g.requests,
                100.0 * g.busy_share(),
                g.cost_per_hour,
                g.cost_usd,
                100.0 * a,
            );
        }
    }
    if out.is_empty() {
        return out;
    }
    format!(
        "\nPer GPU group (SLO attainment: share of its requests with {}):\n\n| run | group | GPU | engines | requests | busy | $/h | cost $ | SLO attainment |\n|---|---|---|---|---|---|---|---|---|\n{out}",
        slo_words(&opt)
    )
}

/// The optimizer's SLO from the flags' bounds (P90), or its default without any.
fn optimizer_slo(slo: Slo) -> brix_optimizer::Slo {
    if slo.ttft_ms.is_none() && slo.tpot_ms.is_none() {
        return brix_optimizer::Slo::default();
    }
    brix_optimizer::Slo {
        ttft: slo.ttft_ms.map(|ms| ms / 1000.0),
        tpot: slo.tpot_ms.map(|ms| ms / 1000.0),
        ..brix_optimizer::Slo::default()
    }
}

fn slo_words(s: &brix_optimizer::Slo) -> String {
    let mut parts = Vec::new();
    if let Some(t) = s.ttft {
        parts.push(format!("TTFT ≤ {:.0} ms", t * 1000.0));
    }
    if let Some(t) = s.tpot {
        parts.push(format!("TPOT ≤ {:.0} ms", t * 1000.0));
    }
    if let Some(t) = s.e2e {
        parts.push(format!("E2E ≤ {t} s"));
    }
    parts.join(" and ")
}
