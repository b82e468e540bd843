//! The heterogeneous GPU optimizer in `brix up`: every `optimizer.interval_s`, for each
//! optimized model, the gateway's monitor gives the demand per (input, output) bucket, the
//! [`Planner`] solves for replicas per deployment (one deployment per GPU type, AIBrix's
//! layout) with hysteresis, and the plan is applied: the gateway's routes follow its shares,
//! a deployment with a PodAutoscaler gets its target through `GET /metrics/{ns}/{deployment}`
//! (`vllm:deployment_replicas` × 100, what AIBrix's KPA wiring reads as an external source),
//! and one without is scaled directly.
//!
//! Guardrails: solves run off the async workers (`spawn_blocking`) within the solve options'
//! time budget and an outer timeout; a failed or panicking solve keeps the plan in force and
//! is reported (one bounded line); a window without finished requests keeps the replicas (the
//! optimizer never scales a model to zero for lack of observations); targets stay within
//! each deployment's `min_replicas` label, `max` and [`crate::MAX_REPLICAS`].

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brix_api::{EngineSpec, ModelSpec, Resource};
use brix_gateway::GatewayHandle;
use brix_optimizer::{
    GpuOption, Hysteresis, MonitorConfig, Plan, Planner, Problem, Profile, Slo, SolveOptions,
};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::fleet::{FleetError, FleetFile};
use crate::local::{LocalPlatform, MAX_REPLICAS};
use crate::platform::{Platform, ReplicaState};

/// Longest error line kept in a status.
const MAX_ERROR: usize = 400;

/// One optimized model, resolved from the fleet file (profiles read, costs known).
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The served name.
    pub model: String,
    /// The problem without demand (options in the section's order).
    pub problem: Problem,
    /// Per option: whether a PodAutoscaler scales that deployment (then the target goes out
    /// through the metrics endpoint).
    pub autoscaled: Vec<bool>,
    /// Per option: the deployment's GPU type (its price's source; the profile says which GPU
    /// it was measured on).
    pub gpu_types: Vec<String>,
    /// The SLO the plan is for.
    pub slo: Slo,
}

/// The whole section, resolved.
#[derive(Clone, Debug)]
pub struct PreparedOptimizer {
    /// Per model.
    pub models: Vec<Prepared>,
    /// Seconds between plans.
    pub interval: Duration,
    /// The monitors' window.
    pub monitor: MonitorConfig,
    /// Hysteresis of successive plans.
    pub hysteresis: Hysteresis,
    /// Solver limits.
    pub solve: SolveOptions,
}

/// Reads the profiles and prices of `file`'s `optimizer:` section (None without one);
/// profile paths are relative to `base_dir`. Errors name the field.
pub fn prepare(
    file: &FleetFile,
    name: &str,
    base_dir: &Path,
) -> Result<Option<PreparedOptimizer>, FleetError> {
    let Some(spec) = &file.optimizer else {
        return Ok(None);
    };
    let fail = |field: String, why: String| FleetError::Invalid {
        path: name.to_string(),
        source: brix_api::FieldError::new(format!("optimizer.{field}"), why),
    };
    let mut models = Vec::new();
    for (i, m) in spec.models.iter().enumerate() {
        let mut gpus = Vec::new();
        let mut autoscaled = Vec::new();
        let mut gpu_types = Vec::new();
        for (j, d) in m.deployments.iter().enumerate() {
            let at = format!("models[{i}].deployments[{j}]");
            // Validated at parse: the entry exists and has a GPU.
            let Some(entry) = file.models.iter().find(|e| e.name == d.name) else {
                return Err(fail(format!("{at}.name"), "no such entry".into()));
            };
            let gpu = d.gpu_of(entry).unwrap_or_default();
            let profile = match &d.profile {
                Some(p) => Profile::load(&base_dir.join(p))
                    .map_err(|e| fail(format!("{at}.profile"), e.to_string()))?,
                None => builtin(entry, &gpu).ok_or_else(|| {
                    fail(
                        format!("{at}.profile"),
                        format!(
                            "no built-in profile for {} on {gpu}; give a profile file (brix optimize profile writes one)",
                            model_profile(entry)
                        ),
                    )
                })?,
            };
            if !profile.gpu.eq_ignore_ascii_case(&gpu) {
                tracing::warn!(deployment = %d.name, gpu = %gpu, profile_gpu = %profile.gpu, "optimizer: the profile was measured on another GPU type than the deployment's");
            }
            // A deployment's own utilisation: its capacities scaled so that the model's
            // utilisation of them is the deployment's share of the measured ones.
            let profile = match d.utilisation {
                Some(u) => with_utilisation(profile, u / m.utilisation),
                None => profile,
            };
            gpu_types.push(gpu.clone());
            let cost = d
                .cost
                .or_else(|| sim_price(entry, &gpu))
                .unwrap_or(profile.cost);
            gpus.push(GpuOption {
                name: d.name.clone(),
                profile,
                cost_per_hour: cost,
                min_replicas: entry.min_replicas(),
                max_replicas: Some(d.max.unwrap_or(MAX_REPLICAS).min(MAX_REPLICAS)),
            });
            autoscaled.push(file.resources.iter().any(|r| {
                matches!(r, Resource::PodAutoscaler(a) if a.spec.scale_target_ref.name == d.name)
            }));
        }
        let grid = gpus[0].profile.grid();
        if let Some((j, _)) = gpus
            .iter()
            .enumerate()
            .find(|(_, g)| g.profile.grid() != grid)
        {
            return Err(fail(
                format!("models[{i}].deployments[{j}].profile"),
                "its bucket grid differs from the first deployment's; all profiles of a model must share one grid".into(),
            ));
        }
        let slo = m.slo.as_ref().map_or_else(Slo::default, |s| Slo {
            percentile: s.percentile,
            ttft: s.ttft,
            tpot: s.tpot,
            e2e: s.e2e,
        });
        models.push(Prepared {
            model: m.name.clone(),
            problem: Problem {
                demand: brix_optimizer::Demand::zero(grid),
                gpus,
                budget_per_hour: m.budget,
                utilisation: m.utilisation,
            },
            autoscaled,
            gpu_types,
            slo,
        });
    }
    Ok(Some(PreparedOptimizer {
        models,
        interval: Duration::from_secs_f64(spec.interval_s),
        monitor: MonitorConfig {
            window_s: spec.window_s,
            tick_s: spec.tick_s,
        },
        hysteresis: Hysteresis {
            keep_within: spec.hysteresis.keep_within,
            down_delay_s: spec.hysteresis.down_delay_s,
        },
        solve: SolveOptions {
            time_budget: Duration::from_millis(spec.time_budget_ms),
            ..SolveOptions::default()
        },
    }))
}

fn model_profile(entry: &ModelSpec) -> String {
    match &entry.engine {
        EngineSpec::Sim(s) => s.model_profile.clone(),
        EngineSpec::Command(_) => entry.served_name().to_string(),
    }
}

/// The built-in profile of the entry's model profile on `gpu`, if Brix ships one.
fn builtin(entry: &ModelSpec, gpu: &str) -> Option<Profile> {
    brix_optimizer::builtin_profile(&model_profile(entry), gpu)
}

/// A simulated replica's price: the GPU's $/h × the model profile's tensor parallelism.
/// `p` with every capacity × `ratio` (a deployment's utilisation over its model's; may
/// exceed 1 when the deployment allows more than the model).
fn with_utilisation(mut p: Profile, ratio: f64) -> Profile {
    if ratio.is_finite() && ratio > 0.0 {
        for v in p.tputs.iter_mut().flatten() {
            *v *= ratio;
        }
    }
    p
}

fn sim_price(entry: &ModelSpec, gpu: &str) -> Option<f64> {
    let EngineSpec::Sim(s) = &entry.engine else {
        return None;
    };
    let catalog = brix_sim::Catalog::builtin();
    let g = catalog.gpu(gpu).ok()?;
    let m = catalog.model(&s.model_profile).ok()?;
    Some(g.price_per_hour * f64::from(m.tensor_parallel_size))
}

/// One deployment's target as the optimizer set it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct DeploymentTarget {
    /// The deployment (fleet entry).
    pub name: String,
    /// Its GPU type.
    pub gpu: String,
    /// Replicas the plan in force asks for (None before the first plan).
    pub target: Option<u32>,
    /// Whether a PodAutoscaler applies it (else the optimizer scales directly).
    pub autoscaled: bool,
    /// $/h of one replica.
    pub cost_per_replica: f64,
}

/// One optimized model as `GET /brix/optimizer` and `brix status` show it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct OptimizerStatus {
    /// The served name.
    pub model: String,
    /// Its deployments and their targets.
    pub deployments: Vec<DeploymentTarget>,
    /// The plan in force.
    pub plan: Option<Plan>,
    /// Why the plan in force is what it is (the planner's words), or why there is none.
    pub reason: String,
    /// Plans made (solves that succeeded).
    pub plans: u64,
    /// Solves that failed; the plan in force was kept.
    pub failures: u64,
    /// The last failure, bounded.
    pub last_error: Option<String>,
    /// Seconds since `brix up` started when the targets last changed.
    pub changed_at_s: Option<f64>,
}

struct Model {
    prepared: Prepared,
    planner: Arc<Mutex<Planner>>,
    /// A solve is running (one that outlived its timeout still holds the planner): the next
    /// ticks skip instead of piling blocking threads up behind it.
    solving: Arc<std::sync::atomic::AtomicBool>,
    status: Mutex<OptimizerStatus>,
}

/// The running optimizer: its status, and its task (stopped by [`Optimizer::stop`]).
#[derive(Clone, Default)]
pub struct Optimizer {
    models: Arc<Vec<Model>>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn bounded(s: String) -> String {
    if s.len() <= MAX_ERROR {
        return s;
    }
    let mut end = MAX_ERROR;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Optimizer {
    /// Starts monitoring each optimized model in the gateway and plans on a tokio interval.
    pub fn start(
        prepared: PreparedOptimizer,
        platform: LocalPlatform,
        gateway: GatewayHandle,
    ) -> Self {
        let models: Vec<Model> = prepared
            .models
            .into_iter()
            .map(|p| {
                gateway.enable_optimizer(
                    &p.model,
                    p.problem.demand.grid.clone(),
                    prepared.monitor.clone(),
                );
                let deployments = p
                    .problem
                    .gpus
                    .iter()
                    .zip(&p.autoscaled)
                    .zip(&p.gpu_types)
                    .map(|((g, a), gpu)| DeploymentTarget {
                        name: g.name.clone(),
                        gpu: gpu.clone(),
                        target: None,
                        autoscaled: *a,
                        cost_per_replica: g.cost_per_hour,
                    })
                    .collect();
                Model {
                    planner: Arc::new(Mutex::new(Planner::new(prepared.hysteresis.clone()))),
                    solving: Arc::default(),
                    status: Mutex::new(OptimizerStatus {
                        model: p.model.clone(),
                        deployments,
                        plan: None,
                        reason: "no plan yet".into(),
                        plans: 0,
                        failures: 0,
                        last_error: None,
                        changed_at_s: None,
                    }),
                    prepared: p,
                }
            })
            .collect();
        let this = Self {
            models: Arc::new(models),
            tasks: Arc::default(),
        };
        let me = this.clone();
        let epoch = Instant::now();
        let (interval, solve) = (prepared.interval, prepared.solve);
        lock(&this.tasks).spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                for m in me.models.iter() {
                    m.tick(&platform, &gateway, &solve, epoch).await;
                }
            }
        });
        this
    }

    /// Stops planning (targets stay where they are).
    pub fn stop(&self) {
        lock(&self.tasks).abort_all();
    }

    /// Every optimized model's status.
    pub fn status(&self) -> Vec<OptimizerStatus> {
        self.models
            .iter()
            .map(|m| lock(&m.status).clone())
            .collect()
    }

    /// The status of served model `model`.
    pub fn model(&self, model: &str) -> Option<OptimizerStatus> {
        self.models
            .iter()
            .find(|m| m.prepared.model == model)
            .map(|m| lock(&m.status).clone())
    }

    /// (served model, target) of deployment `name`: the plan's replicas, or None before a plan.
    pub fn deployment(&self, name: &str) -> Option<(String, Option<u32>)> {
        self.models.iter().find_map(|m| {
            let s = lock(&m.status);
            s.deployments
                .iter()
                .find(|d| d.name == name)
                .map(|d| (s.model.clone(), d.target))
        })
    }
}

impl Model {
    async fn tick(
        &self,
        platform: &LocalPlatform,
        gateway: &GatewayHandle,
        solve: &SolveOptions,
        epoch: Instant,
    ) {
        let name = self.prepared.model.clone();
        let Some(demand) = gateway.demand(&name) else {
            return;
        };
        if demand.total() <= 0.0 {
            lock(&self.status).reason = "no finished requests in the window: replicas kept".into();
            return;
        }
        let mut problem = self.prepared.problem.clone();
        problem.demand = demand;
        use std::sync::atomic::Ordering;
        if self.solving.swap(true, Ordering::SeqCst) {
            let mut s = lock(&self.status);
            s.failures += 1;
            s.last_error = Some("the previous solve is still running; this tick skipped".into());
            return;
        }
        let (planner, opts, solving) = (self.planner.clone(), solve.clone(), self.solving.clone());
        let now_s = epoch.elapsed().as_secs_f64();
        let limit = opts.time_budget * 4 + Duration::from_secs(2);
        let job = tokio::task::spawn_blocking(move || {
            // Cleared however the solve ends (a panic included).
            struct Done(Arc<std::sync::atomic::AtomicBool>);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.store(false, std::sync::atomic::Ordering::SeqCst);
                }
            }
            let _done = Done(solving);
            let decision = lock(&planner).decide(&problem, &opts, now_s)?;
            let routes = decision.plan.routes();
            Ok::<_, brix_optimizer::SolveError>((decision, routes))
        });
        let outcome = match tokio::time::timeout(limit, job).await {
            Err(_) => Err(format!("the solve took longer than {} s", limit.as_secs())),
            Ok(Err(join)) => Err(format!("the solver failed: {join}")),
            Ok(Ok(Err(e))) => Err(e.to_string()),
            Ok(Ok(Ok(d))) => Ok(d),
        };
        let (decision, routes) = match outcome {
            Ok(d) => d,
            Err(why) => {
                tracing::warn!(model = %name, why = %why, "optimizer: no new plan; the plan in force is kept");
                let mut s = lock(&self.status);
                s.failures += 1;
                s.last_error = Some(bounded(why));
                return;
            }
        };
        gateway.set_plan_routes(&name, Some(Arc::new(routes)));
        let targets: Vec<u32> = decision
            .plan
            .gpus
            .iter()
            .map(|g| g.replicas.min(MAX_REPLICAS))
            .collect();
        let changed = {
            let mut s = lock(&self.status);
            let changed = s
                .deployments
                .iter()
                .zip(&targets)
                .any(|(d, t)| d.target != Some(*t));
            for (d, t) in s.deployments.iter_mut().zip(&targets) {
                d.target = Some(*t);
            }
            if changed {
                s.changed_at_s = Some(now_s);
                tracing::info!(model = %name, targets = ?targets, reason = %decision.reason, "optimizer: new targets");
            }
            s.plans += 1;
            s.reason = bounded(decision.reason.clone());
            s.plan = Some(decision.plan);
            changed
        };
        // Direct scaling for deployments without an autoscaler; again each tick while the
        // live count differs (a crash or a `brix scale` is corrected at the next plan).
        for ((g, t), autoscaled) in self
            .prepared
            .problem
            .gpus
            .iter()
            .zip(&targets)
            .zip(&self.prepared.autoscaled)
        {
            if *autoscaled {
                continue;
            }
            let live = platform.replicas(&g.name).await.map_or(0, |r| {
                r.iter()
                    .filter(|x| x.state != ReplicaState::Draining)
                    .count()
            });
            if (changed || live != *t as usize)
                && let Err(e) = platform.scale(&g.name, *t).await
            {
                let mut s = lock(&self.status);
                s.failures += 1;
                s.last_error = Some(bounded(format!("scaling {}: {e}", g.name)));
            }
        }
    }
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]
mod tests {
    use super::*;

    fn profile(gpu: &str, inputs: &str) -> String {
        format!(
            "{{\"gpu\": \"{gpu}\", \"cost\": 7.5, \"indexes\": [[8], {inputs}], \"tputs\": [[1, 1]]}}"
        )
    }

    #[test]
    fn prepare_prices_options_and_refuses_mixed_grids() {
        let dir = std::env::temp_dir().join(format!("brix-opt-prepare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.json"), profile("A10", "[32, 1024]")).unwrap();
        std::fs::write(dir.join("b.json"), profile("H100", "[32, 1024]")).unwrap();
        std::fs::write(dir.join("c.json"), profile("H100", "[64, 1024]")).unwrap();
        let file = |b: &str| {
            format!(
                "models:
  - {{name: m-a, labels: {{model.aibrix.ai/name: m, model.aibrix.ai/min_replicas: '2'}}, engine: {{sim: {{gpu: A10}}}}}}
  - {{name: m-b, labels: {{model.aibrix.ai/name: m}}, engine: {{command: {{command: 'x --port {{port}}'}}}}}}
optimizer:
  models: [{{name: m, deployments: [{{name: m-a, profile: a.json}}, {{name: m-b, gpu: H100, max: 3, profile: {b}}}]}}]
"
            )
        };
        let f = FleetFile::parse("f.yaml", &file("b.json")).unwrap();
        let p = prepare(&f, "f.yaml", &dir).unwrap().unwrap();
        let g = &p.models[0].problem.gpus;
        // A sim A10 replica: the catalog's $0.86/h × TP 1; a command engine: the profile's cost.
        assert!(
            (g[0].cost_per_hour - 0.86).abs() < 1e-9,
            "{}",
            g[0].cost_per_hour
        );
        assert_eq!(g[1].cost_per_hour, 7.5);
        assert_eq!((g[0].min_replicas, g[0].max_replicas), (2, Some(64)));
        assert_eq!((g[1].min_replicas, g[1].max_replicas), (0, Some(3)));
        assert_eq!(p.models[0].gpu_types, ["A10", "H100"]);
        assert_eq!(p.models[0].autoscaled, [false, false]);
        // No profile file: the built-in one of the sim engine's model profile on its GPU.
        let f = FleetFile::parse(
            "f.yaml",
            &file("b.json").replace("{name: m-a, profile: a.json}", "{name: m-a}"),
        )
        .unwrap();
        let e = prepare(&f, "f.yaml", &dir).unwrap_err().to_string();
        assert!(e.contains("grid"), "the built-in grid is not b.json's: {e}");
        let builtin = "models:\n  - {name: m-a, labels: {model.aibrix.ai/name: m}, engine: {sim: {gpu: A10}}}\n  - {name: m-b, labels: {model.aibrix.ai/name: m}, engine: {sim: {gpu: H100}}}\noptimizer:\n  models: [{name: m, deployments: [{name: m-a}, {name: m-b}]}]\n";
        let p = prepare(
            &FleetFile::parse("f.yaml", builtin).unwrap(),
            "f.yaml",
            &dir,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.models[0].problem.gpus[1].profile.gpu, "H100");
        // A deployment's own utilisation (0.45 against the model's default 0.9) halves what
        // the plan may put on each of its replicas; the other deployment keeps its profile.
        let headroom = builtin.replace("{name: m-a}", "{name: m-a, utilisation: 0.45}");
        let q = prepare(
            &FleetFile::parse("f.yaml", &headroom).unwrap(),
            "f.yaml",
            &dir,
        )
        .unwrap()
        .unwrap();
        let (full, half) = (&p.models[0].problem.gpus, &q.models[0].problem.gpus);
        let cell = full[0].profile.grid().cell(1024, 128);
        assert!(full[0].profile.capacity(cell) > 0.0);
        assert!(
            (half[0].profile.capacity(cell) - 0.5 * full[0].profile.capacity(cell)).abs() < 1e-9
        );
        assert_eq!(half[1].profile, full[1].profile);
        let unknown = builtin.replace("gpu: H100", "gpu: V100");
        let e = prepare(
            &FleetFile::parse("f.yaml", &unknown).unwrap(),
            "f.yaml",
            &dir,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("optimizer.models[0].deployments[1].profile") && e.contains("V100"),
            "{e}"
        );
        let f = FleetFile::parse("f.yaml", &file("c.json")).unwrap();
        let e = prepare(&f, "f.yaml", &dir).unwrap_err().to_string();
        assert!(
            e.contains("optimizer.models[0].deployments[1].profile"),
            "{e}"
        );
        assert!(e.contains("grid"), "{e}");
        let f = FleetFile::parse("f.yaml", &file("nope.json")).unwrap();
        let e = prepare(&f, "f.yaml", &dir).unwrap_err().to_string();
        assert!(e.contains("nope.json"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
