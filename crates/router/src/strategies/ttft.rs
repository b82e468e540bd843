//! `ttft` (Brix's own): the seconds to this request's first token on each pod, estimated from
//! an engine step-cost profile, the prefill booked there, its decode load and this prompt's
//! uncached tokens, corrected per pod by what the gateway measured; the least wins.
//!
//! For pod `e`: `P` = prefill tokens booked there without a first token yet
//! ([`Pod::pending_prefill`], booked at the decision, so a burst is charged before any
//! response returns), `U` = this prompt's uncached tokens (prompt − the pod's cached tokens
//! from its KV events, else − the prefix index's match, in tokens), `D` = requests decoding there and `X` their context, `B` = the engine's token
//! budget per step. Then
//!
//! ```text
//! work   = P + U
//! ttft_e = work / (B − D) × t_step(D decodes over X, chunk min(work, B − D))
//!        + w × U × t_token
//! ```
//!
//! times the pod's correction (mean measured over mean predicted TTFT, smoothed, clamped to
//! [0.8, 1.25]). The first term is the oracle's own formula (`brix bench sim`'s `oracle`, which
//! reads the engines' truth) fed with what a gateway knows; the second (`w` = 1,
//! `t_token` = compute seconds per token) charges the compute this prompt adds to the pod once
//! more, since it delays every request that queues behind it there, which a greedy per-request
//! estimate ignores (on bursty multi-turn load it keeps conversations home a little longer).
//! Linear in the queue and in the uncached tokens, so a popular prefix spills over gradually
//! and there is no threshold to fall off.

use rand::RngCore;

use super::{Ctx, Scorer};
use crate::pod::{Pod, RouteRequest};
use crate::prefix::PrefixConfig;
use crate::strategy::Strategy;

/// An engine's step time as the sum of its parts (a linear roofline), so a gateway can price
/// queued prefill and decode load in seconds. Defaults: `brix-sim`'s roofline of Llama-3-8B on
/// one A100-80GB with vLLM's defaults (a test pins them to the engine model).
#[derive(Clone, Debug, PartialEq)]
pub struct TtftProfile {
    /// Seconds of fixed overhead per step (launch, scheduler).
    pub fixed_s: f64,
    /// Seconds of overhead per sequence in a step.
    pub per_seq_s: f64,
    /// Compute seconds per token computed in a step (prefill chunk or decode).
    pub compute_s_per_token: f64,
    /// Attention's compute within a prefill chunk, seconds per chunk token squared.
    pub attn_s_per_token2: f64,
    /// Seconds to read the weights once (every step does).
    pub weights_s: f64,
    /// Seconds to read one token's KV (context of the batch, and the new tokens).
    pub kv_s_per_token: f64,
    /// Tokens one step may compute (`max_num_batched_tokens`).
    pub budget_tokens: u32,
    /// Prompt units (the prefix index's bytes or tokens) per token, until the responses'
    /// usage teaches the pod's own ratio ([`crate::Observed::units_per_token`]).
    pub units_per_token: f64,
    /// Seconds of compute per uncached token charged on top of the request's own wait (its
    /// prefill delays the requests that queue behind it on that pod), as a multiple of
    /// `compute_s_per_token`.
    pub uncached_weight: f64,
    /// The per-pod correction is clamped to `[correction_min, correction_max]`.
    pub correction_min: f64,
    /// See `correction_min`.
    pub correction_max: f64,
}

impl Default for TtftProfile {
    fn default() -> Self {
        Self {
            fixed_s: 0.0015,
            per_seq_s: 0.000_01,
            compute_s_per_token: 6.863e-5,
            attn_s_per_token2: 1.12e-9,
            weights_s: 0.00895,
            kv_s_per_token: 7.305e-8,
            budget_tokens: 2048,
            units_per_token: 4.0,
            uncached_weight: 1.0,
            correction_min: 0.8,
            correction_max: 1.25,
        }
    }
}

impl TtftProfile {
    /// The profile of an engine whose step time is `step` (items as `(new tokens, context)`),
    /// with `budget` tokens a step: the linear parts read off a few probe batches (the overheads
    /// from two one-token steps, the KV slope from a long context, the compute slope from a
    /// half and a full prefill chunk). Used with `brix-sim`'s roofline where the model and GPU
    /// are known.
    pub fn fit(step: impl Fn(&[(u32, u32)]) -> f64, budget: u32) -> Self {
        let budget = budget.max(2);
        let one = step(&[(1, 0)]);
        let kv = ((step(&[(1, 100_000)]) - one) / 100_000.0).max(0.0);
        let per_seq = (step(&[(1, 0), (1, 0)]) - one - kv).max(0.0);
        // a + b·q + c·q² through three compute-bound chunks (q, 2q, 4q = budget).
        let q = f64::from((budget / 4).max(1));
        let t = |n: f64| step(&[(n as u32, 0)]);
        let (t1, t2, t4) = (t(q), t(2.0 * q), t(4.0 * q));
        let attn = ((t4 - 3.0 * t2 + 2.0 * t1) / (6.0 * q * q)).max(0.0);
        let compute = ((t2 - t1) / q - 3.0 * attn * q).max(0.0);
        let overhead = (t1 - compute * q - attn * q * q).max(0.0);
        let fixed = (overhead - per_seq).max(0.0);
        Self {
            fixed_s: fixed,
            per_seq_s: per_seq,
            compute_s_per_token: compute,
            attn_s_per_token2: attn,
            weights_s: (one - overhead - kv).max(0.0),
            kv_s_per_token: kv,
            budget_tokens: budget,
            ..Self::default()
        }
    }

    /// Seconds of one step computing `chunk` prefill tokens beside `decodes` decoding requests
    /// whose contexts sum to `context` tokens.
    pub fn step_s(&self, chunk: f64, decodes: f64, context: f64) -> f64 {
        let tokens = chunk + decodes;
        let compute = tokens * self.compute_s_per_token + chunk * chunk * self.attn_s_per_token2;
        let memory = self.weights_s + (context + tokens) * self.kv_s_per_token;
        let seqs = decodes + if chunk > 0.0 { 1.0 } else { 0.0 };
        compute.max(memory) + self.fixed_s + self.per_seq_s * seqs
    }
}

/// One candidate's estimate, kept for the booking and the explanation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Estimate {
    /// The prompt's tokens (its units over the pod's units per token).
    pub prompt_tokens: f64,
    /// Of those, the tokens the pod does not hold in its cache (as the index tells).
    pub uncached_tokens: f64,
    /// Prefill tokens booked ahead of it there.
    pub queued_tokens: f64,
    /// Seconds to the first token before the pod's correction.
    pub predicted_s: f64,
    /// The correction applied (clamped).
    pub correction: f64,
    /// `predicted_s × correction`: what the strategy compares.
    pub ttft_s: f64,
}

/// What a pod without its own measurements borrows: the mean over the candidates that have
/// them. A new pod judged by the profile's neutral defaults while the others carry measured
/// corrections looks dearer (or cheaper) for no reason of its own; dearer means it never gets
/// the requests that would measure it, and stays idle for good.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Borrowed {
    /// Mean measured / predicted TTFT of the measured candidates.
    pub ttft_ratio: Option<f64>,
    /// Mean prompt units per token of the measured candidates.
    pub units_per_token: Option<f64>,
}

impl Borrowed {
    /// The means over `pods` of what each has measured.
    pub fn of(pods: &[Pod]) -> Self {
        fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
            let (sum, n) = xs
                .filter(|x| x.is_finite() && *x > 0.0)
                .fold((0.0, 0u32), |(s, n), x| (s + x, n + 1));
            (n > 0).then(|| sum / f64::from(n))
        }
        Self {
            ttft_ratio: mean(pods.iter().filter_map(|p| p.observed.ttft_ratio)),
            units_per_token: mean(pods.iter().filter_map(|p| p.observed.units_per_token)),
        }
    }
}

/// The estimate for `req` on `pod` with nothing borrowed ([`estimate_among`]).
pub fn estimate(req: &RouteRequest<'_>, pod: &Pod, matched: usize, cfg: &PrefixConfig) -> Estimate {
    estimate_among(req, pod, matched, cfg, Borrowed::default())
}

/// The estimate for `req` on `pod`, which holds `matched` of the prompt's leading blocks in
/// the approximate index; where the pod has KV events (`Pod::cached_tokens`) and the request
/// its token count, the exact cached tokens count instead. What the pod has not measured yet
/// comes from `borrowed`, else from the profile.
pub fn estimate_among(
    req: &RouteRequest<'_>,
    pod: &Pod,
    matched: usize,
    cfg: &PrefixConfig,
    borrowed: Borrowed,
) -> Estimate {
    let p = &cfg.ttft;
    let upt = pod
        .observed
        .units_per_token
        .filter(|u| u.is_finite() && *u > 0.0)
        .or(borrowed.units_per_token)
        .unwrap_or(p.units_per_token)
        .max(1e-3);
    let units = f64::from(req.prompt_units);
    let tokens = req.prompt_token_count().filter(|&t| t > 0);
    let prompt_tokens = tokens.map_or(units / upt, f64::from);
    let uncached = match (tokens, pod.cached_tokens) {
        // The pod's KV events: its exact cached prefix of this prompt's tokens.
        (Some(t), Some(c)) => f64::from(t - c.min(t)),
        // The approximate index: matched blocks as a share of the prompt.
        _ => {
            let cached = (matched as f64 * f64::from(cfg.block_units)).min(units);
            let share = if units > 0.0 {
                (units - cached) / units
            } else {
                1.0
            };
            prompt_tokens * share
        }
    };
    let queued = pod.pending_prefill.max(0.0);
    let decodes = f64::from(pod.decoding);
    let free = (f64::from(p.budget_tokens) - decodes).max(1.0);
    let work = queued + uncached;
    let ctx = pod.decode_context.max(0.0);
    let ahead = work / free * p.step_s(work.min(free), decodes, ctx);
    // The compute this prompt adds to the pod delays whatever queues behind it there; the
    // greedy first term ignores that, so a cold prefill is charged once more.
    let predicted = ahead + p.uncached_weight * uncached * p.compute_s_per_token;
    let lo = p.correction_min.min(p.correction_max);
    let correction = pod
        .observed
        .ttft_ratio
        .filter(|r| r.is_finite())
        .or(borrowed.ttft_ratio)
        .map_or(1.0, |r| r.clamp(lo, p.correction_max));
    Estimate {
        prompt_tokens,
        uncached_tokens: uncached,
        queued_tokens: queued,
        predicted_s: predicted,
        correction,
        ttft_s: predicted * correction,
    }
}

/// Least estimated time to first token (see the module docs).
pub(crate) struct Ttft;

impl Scorer for Ttft {
    fn strategy(&self) -> Strategy {
        Strategy::Ttft
    }

    fn costs(&self, cx: &Ctx<'_>, _rng: &mut dyn RngCore) -> Vec<Option<f64>> {
        let cfg = cx.index.config();
        let borrowed = Borrowed::of(cx.pods);
        let exact = cx.req.prompt_token_count().is_some_and(|t| t > 0)
            && cx.pods.iter().all(|p| p.cached_tokens.is_some());
        let matched = if exact {
            vec![0; cx.pods.len()]
        } else {
            cx.index.matched(cx.req.blocks, cx.pods, cx.now)
        };
        matched
            .into_iter()
            .zip(cx.pods)
            .map(|(m, p)| Some(estimate_among(cx.req, p, m, cfg, borrowed).ttft_s))
            .collect()
    }
}
