//! The `oracle` router: what cache-aware routing could do if it saw every engine's true state.
//!
//! For engine `e` it reads, at the instant of the decision:
//! - `U_e`: this prompt's uncached tokens, `prompt − Engine::cached_prefix_tokens` (the
//!   engine's own prefix cache, evictions included; no index, no estimate);
//! - `P_e`: prefill tokens already queued there: for every request routed to `e` that has not
//!   produced its first token, its uncached tokens as the oracle saw them when it routed it;
//! - `D_e`: requests decoding there (first token out, not finished), and `C_e` their mean
//!   context (prompt + tokens so far).
//!
//! and picks the least
//!
//! ```text
//! cost_e = (P_e + U_e) / (B − D_e) × t_step(D_e decodes at context C_e + one chunk of min(B − D_e, P_e + U_e) tokens)
//! ```
//!
//! with `B = max_num_batched_tokens` and `t_step` the engine model's own roofline: the seconds
//! until this request's first token if the engine spent every step's budget, less one token per
//! decoding request, on the prefill queued ahead of it and then on this one. Ties go to the
//! first engine in a seeded shuffle, as the router's do. It is an upper bound for routing on
//! information, not an optimal schedule: it looks at one request at a time and ignores KV
//! pressure, preemptions and the decode slow-down its choice causes to others.

use brix_sim::{BatchItem, StepCost};

/// What the oracle reads on one engine.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct EngineLoad {
    /// `U_e`: this prompt's tokens the engine's cache does not hold.
    pub(crate) uncached: u32,
    /// `P_e`: prefill tokens queued ahead.
    pub(crate) queued_prefill: u64,
    /// `D_e`: requests decoding.
    pub(crate) decoding: u32,
    /// Σ context of the decoding requests (`D_e · C_e`).
    pub(crate) decode_context: u64,
}

/// `cost_e` above, in seconds.
pub(crate) fn cost(load: &EngineLoad, budget: u32, step: &StepCost) -> f64 {
    let free = budget.saturating_sub(load.decoding).max(1);
    let work = load.queued_prefill + u64::from(load.uncached);
    let chunk = work.min(u64::from(free)) as u32;
    let mean_ctx = if load.decoding > 0 {
        (load.decode_context / u64::from(load.decoding)).min(u64::from(u32::MAX)) as u32
    } else {
        0
    };
    let decodes = std::iter::repeat_n(
        BatchItem {
            new_tokens: 1,
            context: mean_ctx,
        },
        load.decoding as usize,
    );
    let prefill = BatchItem {
        new_tokens: chunk,
        context: 0,
    };
    let t = step.step_time(decodes.chain(std::iter::once(prefill)), 0.0);
    work as f64 / f64::from(free) * t
}

/// The engine with the least cost, the first in `order` among equals.
pub(crate) fn choose(costs: &[f64], order: &[usize]) -> usize {
    order
        .iter()
        .copied()
        .reduce(|a, b| if costs[b] < costs[a] { b } else { a })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use brix_sim::Catalog;

    use super::*;

    fn step() -> StepCost {
        let c = Catalog::builtin();
        match (c.model("llama-3-8b"), c.gpu("A100-80GB")) {
            (Ok(m), Ok(g)) => StepCost::new(m, g),
            _ => panic!("missing profile"),
        }
    }

    #[test]
    fn cost_grows_with_uncached_queue_and_decodes() {
        let s = step();
        let load = |uncached, queued_prefill, decoding| EngineLoad {
            uncached,
            queued_prefill,
            decoding,
            decode_context: u64::from(decoding) * 4000,
        };
        let idle_cached = cost(&load(16, 0, 0), 2048, &s);
        let idle_cold = cost(&load(4000, 0, 0), 2048, &s);
        let queued = cost(&load(16, 6000, 0), 2048, &s);
        let decoding = cost(&load(4000, 0, 64), 2048, &s);
        assert!(idle_cached < idle_cold, "{idle_cached} {idle_cold}");
        assert!(
            idle_cold < queued,
            "a cache hit behind 6,000 queued tokens loses"
        );
        assert!(idle_cold < decoding, "decodes take budget and bandwidth");
        // Same work, same cost: the seeded order breaks the tie.
        assert_eq!(choose(&[1.0, 0.5, 0.5], &[2, 1, 0]), 2);
        assert_eq!(choose(&[1.0, 0.5, 0.5], &[0, 1, 2]), 1);
    }
}
