//! `brix optimize plan --verify`: every plan replayed in virtual time before it is printed.
//! A plan made from single-shape profiles can miss its SLO on a replica that serves mixed
//! shapes (they interfere more than one shape does); the replay finds that, the GPU type whose
//! requests missed is derated (its profile's capacities × 0.8, × 0.6 when it missed by more
//! than 25 points) and the problem solved again, up to `--verify-rounds` times. The best
//! single type goes through the same loop so that the saving printed compares two verified
//! plans. docs/optimizer.md ("Verification") has the rule and the numbers.

use std::fmt::Write as _;

use brix_bench::vsim::{self, SimStrategy};
use brix_bench::workload::{Arrival, WorkRequest, Workload, schedule, vocab};
use brix_optimizer::{Demand, Plan, Problem, Slo, SolveError, SolveOptions, single_type, solve};
use brix_sim::{Catalog, EngineConfig, ModelProfile};

use super::OptimizeError;
use super::plan::slo_text;

/// What `--verify` found: the plan to print and write, and the rounds in words.
pub(super) struct Outcome {
    /// The last round's plan, notes saying the derates and the verdict.
    pub plan: Plan,
    /// Whether it met the SLO on replay.
    pub ok: bool,
    /// Every round of the mix and of the single types tried, the verdict, the saving.
    pub text: String,
    /// The verdict in one line.
    pub verdict: String,
}

/// Verifies the mix (`solve`) and the cheapest single types (`single_type`, in order of
/// their unverified cost until a verified one is cheaper than the next one's unverified cost:
/// derating only raises a cost) by replay of `w` on `model_profile`'s simulated engines.
pub(super) fn check(
    model_profile: &str,
    problem: &Problem,
    opts: &SolveOptions,
    singles: &[(String, Result<Plan, String>)],
    mut w: Workload,
    slo: Slo,
    rounds: u32,
) -> Result<Outcome, OptimizeError> {
    let catalog = Catalog::builtin();
    let model = catalog
        .model(model_profile)
        .map_err(|e| {
            OptimizeError::Flag(format!(
                "--verify replays on simulated engines of {model_profile}, which the \
                 simulator does not know ({e}); pass --no-verify"
            ))
        })?
        .clone();
    let max_len = problem
        .gpus
        .iter()
        .filter_map(|g| catalog.gpu(&g.profile.gpu).ok())
        .map(|gpu| EngineConfig::vllm_defaults(&model, gpu).max_model_len)
        .min();
    if let Some(max) = max_len {
        vsim::fit_context(&mut w, max);
    }
    let v = Verifier {
        model,
        catalog,
        slo: slo.clone(),
        workload: &w,
        rounds,
    };
    let mix = v.run(problem, |p| solve(p, opts))?;
    let mut text = format!(
        "\nVerification: {} requests replayed in virtual time (plan routing across types, \
         least-request within one), against {}:\n",
        w.requests.len(),
        slo_text(&slo)
    );
    text += &describe("mix", &mix, &slo);
    let mut order: Vec<(usize, f64)> = singles
        .iter()
        .enumerate()
        .filter_map(|(g, (_, r))| r.as_ref().ok().map(|p| (g, p.cost_per_hour)))
        .collect();
    order.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut best: Option<(usize, f64, Verified)> = None;
    for (g, unverified) in order {
        if best.as_ref().is_some_and(|(_, b, _)| *b <= unverified) {
            break;
        }
        let sv = v.run(problem, |p| single_type(p, g))?;
        text += &describe(&singles[g].0, &sv, &slo);
        if let (true, Some(r)) = (sv.ok, sv.rounds.last()) {
            let c = r.plan.cost_per_hour;
            if best.as_ref().is_none_or(|(_, b, _)| c < *b) {
                best = Some((g, c, sv));
            }
        }
    }
    let mut plan = mix
        .plan(&slo)
        .ok_or_else(|| OptimizeError::Flag("verification ran no round".into()))?;
    let mut last = mix.rounds.last().map_or(0.0, |r| r.overall);
    let mut ok = mix.ok;
    let mut rounds = mix.rounds.len();
    // Derating is greedy, so the verified mix can cost more than a verified single type
    // (which is a plan of the same problem): the cheaper verified plan is the answer.
    if let Some((g, c, sv)) = &best
        && (!mix.ok || *c < plan.cost_per_hour)
        && let Some(mut single) = sv.plan(&slo)
    {
        single.notes.push(format!(
            "the verified single type {} (${c:.2}/h) is cheaper than any verified mix{}: \
             the plan is that type alone",
            singles[*g].0,
            if mix.ok {
                format!(" (${:.2}/h)", plan.cost_per_hour)
            } else {
                String::new()
            }
        ));
        last = sv.rounds.last().map_or(0.0, |r| r.overall);
        rounds = sv.rounds.len();
        ok = true;
        plan = single;
    }
    let verdict = if ok {
        format!(
            "verified: meets {} on replay (attainment {}) at ${:.2}/h after {} round(s)",
            slo_text(&slo),
            pct(last),
            plan.cost_per_hour,
            rounds
        )
    } else {
        format!(
            "NOT verified after {} round(s): replay attainment {} misses {}",
            rounds,
            pct(last),
            slo_text(&slo)
        )
    };
    let _ = writeln!(text, "{verdict}");
    match best.as_ref().map(|(g, c, _)| (*g, *c)) {
        Some((g, c)) if ok && c > 0.0 => {
            let _ = writeln!(
                text,
                "Verified best single type: {} at ${c:.2}/h; the verified plan saves {:.1} %",
                singles[g].0,
                100.0 * (c - plan.cost_per_hour) / c
            );
        }
        Some((g, c)) => {
            let _ = writeln!(
                text,
                "Verified best single type: {} at ${c:.2}/h",
                singles[g].0
            );
        }
        None => {
            let _ = writeln!(text, "No single type passed verification.");
        }
    }
    Ok(Outcome {
        plan,
        ok,
        text,
        verdict,
    })
}

/// A group that missed by more than this many points of attainment is derated harder.
const SEVERE_MISS: f64 = 0.25;
/// Capacity factor of a group that missed its SLO by a little / by much, per round.
const DERATE: f64 = 0.8;
const DERATE_SEVERE: f64 = 0.6;

/// What the verification replays against: the model's engines, the SLO, the workload.
pub(super) struct Verifier<'a> {
    /// The simulated engines' model.
    pub model: ModelProfile,
    /// GPU profiles of the plan's types.
    pub catalog: Catalog,
    /// The SLO the plan is for.
    pub slo: Slo,
    /// The requests to replay (the demand's own, or synthesised from it).
    pub workload: &'a Workload,
    /// Most solve-and-replay rounds.
    pub rounds: u32,
}

/// One solve and its replay.
pub(super) struct Round {
    /// The plan solved with the derates in force.
    pub plan: Plan,
    /// Capacity factor per option when it was solved (1 = the profile as measured).
    pub factors: Vec<f64>,
    /// Per option with replicas: its name and the share of its requests that met the SLO.
    pub attainment: Vec<(String, f64)>,
    /// Share of all requests that met the SLO.
    pub overall: f64,
    /// Whether every group and the whole reached the SLO's percentile.
    pub passed: bool,
}

/// The loop's outcome: every round, the last one's plan (verified when `ok`).
pub(super) struct Verified {
    /// Rounds in order; the last one's plan is the answer.
    pub rounds: Vec<Round>,
    /// Whether the last round passed.
    pub ok: bool,
    /// Why the loop stopped without a verified plan (a derated problem with no plan).
    pub stopped: Option<String>,
}

impl Verified {
    /// The plan of the last round, its notes extended with the verification's outcome.
    pub fn plan(&self, slo: &Slo) -> Option<Plan> {
        let last = self.rounds.last()?;
        let mut plan = last.plan.clone();
        let derates: Vec<String> = plan
            .gpus
            .iter()
            .zip(&last.factors)
            .filter(|(_, f)| **f < 1.0)
            .map(|(g, f)| format!("{} × {f:.2}", g.name))
            .collect();
        if !derates.is_empty() {
            plan.notes.push(format!(
                "verification derated profile capacities ({}) after replays missed the SLO",
                derates.join(", ")
            ));
        }
        plan.notes.push(if self.ok {
            format!(
                "verified: meets P{} on replay in virtual time (attainment {}) after {} round(s)",
                slo.percentile,
                pct(last.overall),
                self.rounds.len()
            )
        } else {
            format!(
                "NOT verified after {} round(s): replay attainment {} below P{}",
                self.rounds.len(),
                pct(last.overall),
                slo.percentile
            )
        });
        Some(plan)
    }
}

impl Verifier<'_> {
    /// Solves `base` with `solve`, replays, derates the options whose requests missed the
    /// SLO and solves again, until a plan passes or the rounds are spent.
    pub fn run(
        &self,
        base: &Problem,
        solve: impl Fn(&Problem) -> Result<Plan, SolveError>,
    ) -> Result<Verified, OptimizeError> {
        let p = self.slo.percentile / 100.0;
        let mut factors = vec![1.0_f64; base.gpus.len()];
        let mut rounds: Vec<Round> = Vec::new();
        let strategy: SimStrategy = "least-request"
            .parse()
            .map_err(|e| OptimizeError::Flag(format!("replay strategy: {e}")))?;
        for r in 0..self.rounds.max(1) {
            let problem = derate(base, &factors);
            let plan = match solve(&problem) {
                Ok(plan) => plan,
                Err(e) if r == 0 => return Err(e.into()),
                Err(e) => {
                    return Ok(Verified {
                        rounds,
                        ok: false,
                        stopped: Some(format!("derated problem has no plan: {e}")),
                    });
                }
            };
            let rep = vsim::replay_plan(
                self.workload,
                &plan,
                &self.model,
                &self.catalog,
                &strategy,
                &self.slo,
            )
            .map_err(|e| OptimizeError::Flag(format!("replay of the plan: {e}")))?;
            let attainment: Vec<(String, f64)> = rep
                .run
                .groups
                .iter()
                .map(|g| g.name.clone())
                .zip(rep.attainment.iter().copied())
                .collect();
            let mut passed = rep.met;
            let mut next = factors.clone();
            for (name, a) in &attainment {
                if *a + 1e-12 >= p {
                    continue;
                }
                passed = false;
                if let Some(g) = base.gpus.iter().position(|o| &o.name == name) {
                    let step = if p - a > SEVERE_MISS {
                        DERATE_SEVERE
                    } else {
                        DERATE
                    };
                    next[g] *= step.min(forcing(&plan.gpus[g], base.utilisation));
                }
            }
            // The whole missed though each group met it (requests no group served): derate
            // every type in use.
            if !passed && next == factors {
                for (g, pg) in plan.gpus.iter().enumerate() {
                    if pg.replicas > 0 {
                        next[g] *= DERATE;
                    }
                }
            }
            rounds.push(Round {
                plan,
                factors: factors.clone(),
                attainment,
                overall: rep.overall,
                passed,
            });
            if passed {
                return Ok(Verified {
                    rounds,
                    ok: true,
                    stopped: None,
                });
            }
            factors = next;
        }
        Ok(Verified {
            rounds,
            ok: false,
            stopped: None,
        })
    }
}

/// The largest factor that no longer lets `g`'s planned load fit its replicas (load ≤
/// utilisation × replicas): a derate that leaves the replica count as it was changes nothing
/// (one replica at 40 % load misses on bursts however its profile is scaled by 0.8).
fn forcing(g: &brix_optimizer::PlanGpu, utilisation: f64) -> f64 {
    let room = utilisation * f64::from(g.replicas);
    if g.load > 0.0 && room > 0.0 {
        (0.999 * g.load / room).min(1.0)
    } else {
        1.0
    }
}

/// `base` with each option's profile capacities × its factor.
fn derate(base: &Problem, factors: &[f64]) -> Problem {
    let mut p = base.clone();
    for (g, f) in p.gpus.iter_mut().zip(factors) {
        if *f < 1.0 {
            g.profile = g.profile.derated(*f);
        }
    }
    p
}

/// A Poisson workload whose mix is `d`'s over `duration_s` seconds: each request's bucket
/// drawn by the demand's shares (a low-discrepancy sequence, so the mix is exact to one
/// request), its prompt and output the bucket's ticks, prompts distinct (no prefix sharing).
pub(super) fn synthesise(d: &Demand, duration_s: f64, seed: u64) -> Workload {
    let total = d.total();
    let n = (total * duration_s).round().clamp(0.0, 2_000_000.0) as u64;
    let mut cdf = Vec::with_capacity(d.rates.len());
    let mut acc = 0.0;
    for r in &d.rates {
        acc += r / total;
        cdf.push(acc);
    }
    const PHI: f64 = 0.618_033_988_749_894_9;
    let requests = (0..n)
        .map(|id| {
            let u = ((id as f64 + 0.5) * PHI).fract();
            let i = cdf.partition_point(|c| *c < u).min(d.rates.len() - 1);
            let cell = d.grid.cell_at(i);
            let len = d.grid.inputs[cell.inp] as usize;
            // A different first word per request keeps prompts from sharing a cached prefix.
            let prompt = (0..len)
                .map(|j| ((id as usize).wrapping_mul(7919) + j * 31) as u32 % vocab::VOCAB_LEN)
                .collect();
            WorkRequest {
                id,
                at_s: 0.0,
                session: None,
                prompt,
                output_tokens: d.grid.outputs[cell.out],
            }
        })
        .collect();
    schedule(
        Workload { requests },
        &Arrival::Poisson { rate: total },
        seed,
        None,
        None,
    )
}

fn pct(x: f64) -> String {
    format!("{:.1} %", 100.0 * x)
}

/// The rounds of one verification as lines (`label`: the mix or the single type).
pub(super) fn describe(label: &str, v: &Verified, slo: &Slo) -> String {
    let mut s = String::new();
    for (i, r) in v.rounds.iter().enumerate() {
        let fleet: Vec<String> = r
            .plan
            .gpus
            .iter()
            .filter(|g| g.replicas > 0)
            .map(|g| format!("{}×{}", g.replicas, g.name))
            .collect();
        let att: Vec<String> = r
            .attainment
            .iter()
            .map(|(n, a)| format!("{n} {}", pct(*a)))
            .collect();
        let der: Vec<String> = r
            .plan
            .gpus
            .iter()
            .zip(&r.factors)
            .filter(|(_, f)| **f < 1.0)
            .map(|(g, f)| format!("{} ×{f:.2}", g.name))
            .collect();
        let _ = writeln!(
            s,
            "  {label} round {}: {} ${:.2}/h{} → attainment {} (overall {}): {}",
            i + 1,
            fleet.join(" + "),
            r.plan.cost_per_hour,
            if der.is_empty() {
                String::new()
            } else {
                format!(" [derated {}]", der.join(", "))
            },
            att.join(", "),
            pct(r.overall),
            if r.passed {
                format!("meets P{}", slo.percentile)
            } else {
                format!("misses P{}", slo.percentile)
            }
        );
    }
    if let Some(why) = &v.stopped {
        let _ = writeln!(s, "  {label}: stopped: {why}");
    }
    s
}
