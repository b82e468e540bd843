//! `lora-affinity`: for a request naming a LoRA adapter, among the pods that hold it, prefer
//! one whose running batch already has the adapter (no GPU-slot wait), then one with a free
//! GPU slot, then one where the request must wait for a slot — weighed against load, as one
//! linear cost (llm-d's LoRA affinity scorer ranks the same three tiers; here the tiers are
//! priced in queued requests so a hot pod spills to the others gradually).

use rand::RngCore;

use super::{Ctx, Scorer};
use crate::decision::{Decision, Fallback};
use crate::pod::{LoraState, Pod};
use crate::strategy::Strategy;

/// Cost = `in_flight + waiting + affinity`, with `affinity` 0 when the adapter is in the
/// pod's running batch, `lora_slot_cost` when the batch has a free slot (running adapters <
/// `max_lora`) or the pod exports no LoRA state, `lora_wait_cost` when every slot holds
/// another adapter.
pub(crate) struct LoraAffinity;

/// Where the adapter stands on one pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// In the running batch: the request joins it at once.
    Running,
    /// Not running, but the batch has room for one more adapter.
    Free,
    /// Every GPU slot holds another adapter: the request waits until one drains.
    Wait,
    /// The pod exports no (fresh) LoRA state.
    Unknown,
}

/// Where `adapter` stands in `state`.
pub(crate) fn slot(state: Option<&LoraState>, adapter: &str) -> Slot {
    match state {
        None => Slot::Unknown,
        Some(s) if s.running.iter().any(|a| a == adapter) => Slot::Running,
        Some(s) if (s.running.len() as u64) < u64::from(s.max_lora) => Slot::Free,
        Some(_) => Slot::Wait,
    }
}

fn cost(p: &Pod, adapter: &str, slot_cost: f64, wait_cost: f64) -> f64 {
    let queue = f64::from(p.in_flight) + p.metrics.waiting.unwrap_or(0.0);
    let affinity = match slot(p.lora.as_deref(), adapter) {
        Slot::Running => 0.0,
        Slot::Free | Slot::Unknown => slot_cost,
        Slot::Wait => wait_cost,
    };
    queue + affinity
}

impl Scorer for LoraAffinity {
    fn strategy(&self) -> Strategy {
        Strategy::LoraAffinity
    }

    fn costs(&self, cx: &Ctx<'_>, _rng: &mut dyn RngCore) -> Vec<Option<f64>> {
        let Some(adapter) = cx.req.adapter else {
            return vec![None; cx.pods.len()];
        };
        let cfg = cx.index.config();
        cx.pods
            .iter()
            .map(|p| Some(cost(p, adapter, cfg.lora_slot_cost, cfg.lora_wait_cost)))
            .collect()
    }

    /// The cheapest pod; least-request when the request names no adapter (`no_adapter`) or no
    /// pod exports LoRA state (`missing_signal`).
    fn decide(&self, cx: &Ctx<'_>, rng: &mut dyn RngCore) -> Decision {
        if cx.req.adapter.is_none() {
            return cx.fallback(Fallback::NoAdapter);
        }
        if cx.pods.iter().all(|p| p.lora.is_none()) {
            return cx.fallback(Fallback::MissingSignal(Strategy::LoraAffinity));
        }
        match cx.cheapest(&self.costs(cx, rng)) {
            Some(pod) => Decision::chose(pod),
            None => cx.fallback(Fallback::MissingSignal(Strategy::LoraAffinity)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::pod::RouteRequest;
    use crate::testing::{empty, pick, pods};

    fn state(max_lora: u32, running: &[&str], waiting: &[&str]) -> Option<Arc<LoraState>> {
        let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect();
        Some(Arc::new(LoraState {
            max_lora,
            running: v(running),
            waiting: v(waiting),
        }))
    }

    fn sql() -> RouteRequest<'static> {
        RouteRequest {
            adapter: Some("sql"),
            ..RouteRequest::default()
        }
    }

    #[test]
    fn slots_table() {
        let s = |m, r: &[&str], w: &[&str]| state(m, r, w);
        let cases = [
            (s(2, &["sql"], &[]), Slot::Running),
            (s(1, &["sql"], &["chat"]), Slot::Running),
            (s(2, &["chat"], &[]), Slot::Free),
            (s(2, &[], &["sql"]), Slot::Free),
            (s(1, &["chat"], &[]), Slot::Wait),
            (s(1, &["chat"], &["sql"]), Slot::Wait),
            (s(0, &[], &[]), Slot::Wait),
            (None, Slot::Unknown),
        ];
        for (st, want) in cases {
            assert_eq!(slot(st.as_deref(), "sql"), want, "{st:?}");
        }
    }

    #[test]
    fn running_beats_free_beats_wait_until_load_outweighs_it() {
        // Defaults: a free slot costs 1 queued request, a slot wait 8.
        // (in-flight per pod, state per pod, winner)
        type Case = ([u32; 3], [Option<Arc<LoraState>>; 3], usize);
        let running = || state(2, &["sql"], &[]);
        let free = || state(2, &["chat"], &[]);
        let full = || state(2, &["chat", "code"], &["sql"]);
        let cases: Vec<Case> = vec![
            ([0, 0, 0], [full(), free(), running()], 2),
            ([1, 0, 0], [running(), free(), full()], 1), // 1 + 0 vs 0 + 1: tie, shuffle decides
            ([0, 0, 0], [full(), free(), full()], 1),
            ([2, 0, 0], [running(), free(), full()], 1), // 2 vs 1 vs 8
            ([8, 8, 0], [running(), free(), full()], 2), // 8 vs 9 vs 8: tie 0/2
            ([9, 9, 0], [running(), free(), full()], 2), // 9 vs 10 vs 8
            ([0, 0, 0], [None, free(), full()], 0),      // unknown costs as a free slot: tie 0/1
        ];
        let idx = empty();
        for (loads, states, want) in cases {
            let mut ps = pods(&loads);
            for (p, s) in ps.iter_mut().zip(states.iter()) {
                p.lora = s.clone();
            }
            let costs: Vec<f64> = ps.iter().map(|p| cost(p, "sql", 1.0, 8.0)).collect();
            let best = costs.iter().copied().fold(f64::INFINITY, f64::min);
            for seed in 0..20 {
                let d = pick("lora-affinity", &sql(), &ps, &idx, seed);
                assert_eq!(d.fallback, None);
                assert_eq!(costs[d.pod], best, "{loads:?} seed {seed}: {costs:?}");
            }
            let d = pick("lora-affinity", &sql(), &ps, &idx, 0);
            assert!(
                costs[d.pod] == costs[want],
                "{loads:?}: chose {} ({costs:?}), want {want}",
                d.pod
            );
        }
    }

    #[test]
    fn the_engine_queue_counts_as_load() {
        let idx = empty();
        let mut ps = pods(&[0, 0]);
        ps[0].lora = state(2, &["sql"], &[]);
        ps[0].metrics.waiting = Some(3.0);
        ps[1].lora = state(2, &[], &[]);
        // 3 + 0 against 0 + 1.
        assert_eq!(pick("lora-affinity", &sql(), &ps, &idx, 1).pod, 1);
        ps[0].metrics.waiting = Some(0.5);
        assert_eq!(pick("lora-affinity", &sql(), &ps, &idx, 1).pod, 0);
    }

    #[test]
    fn falls_back_visibly_without_an_adapter_or_any_lora_state() {
        let idx = empty();
        let mut ps = pods(&[3, 1, 2]);
        let d = pick("lora-affinity", &RouteRequest::default(), &ps, &idx, 4);
        assert_eq!((d.pod, d.fallback), (1, Some(Fallback::NoAdapter)));
        let d = pick("lora-affinity", &sql(), &ps, &idx, 4);
        assert_eq!(
            (d.pod, d.fallback),
            (1, Some(Fallback::MissingSignal(Strategy::LoraAffinity)))
        );
        // In a mix without an adapter it adds nothing.
        ps[0].lora = state(2, &["sql"], &[]);
        let req = RouteRequest::default();
        for seed in 0..10 {
            let d = pick("lora-affinity:5,least-request:1", &req, &ps, &idx, seed);
            assert_eq!(d.pod, 1, "seed {seed}");
        }
    }

    #[test]
    fn costs_follow_the_configured_weights() {
        let cfg = crate::prefix::PrefixConfig {
            lora_wait_cost: 0.5,
            ..crate::prefix::PrefixConfig::default()
        };
        let idx = crate::prefix::PrefixIndex::new(cfg);
        let mut ps = pods(&[0, 0]);
        ps[0].lora = state(1, &["chat"], &[]);
        ps[1].lora = state(2, &["chat"], &[]);
        // Waiting now costs 0.5 < a free slot's 1.
        assert_eq!(pick("lora-affinity", &sql(), &ps, &idx, 2).pod, 0);
    }
}
