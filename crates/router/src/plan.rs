//! Plan routing: the optimizer's per-bucket shares of GPU types (pod groups), as the gateway and
//! the virtual-time fleet both use them before a strategy picks a pod within the group.

/// Which share of each request shape each pod group (GPU type, deployment) should serve.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlanRoutes {
    /// Input-token ticks (log2 buckets, as the optimizer's grid).
    pub inputs: Vec<u32>,
    /// Output-token ticks.
    pub outputs: Vec<u32>,
    /// Group names, the pods' `group` (deployment names in `brix up`).
    pub groups: Vec<String>,
    /// Replicas the plan gives each group: a group with fewer ready pods gets a
    /// proportionally smaller share until it catches up.
    pub planned: Vec<u32>,
    /// `weights[cell][group]`, cell = out × inputs.len() + in; rows sum to 1 where the plan
    /// has demand, else all 0.
    pub weights: Vec<Vec<f64>>,
    /// Planned req/s per cell: marginalises the output dimension, which a router cannot see
    /// before the answer (only `max_tokens` bounds it).
    pub demand: Vec<f64>,
}

impl PlanRoutes {
    /// Shares per group for a prompt of `prompt_tokens` with at most `max_tokens` output:
    /// the cells of its input tick with outputs up to `max_tokens`, weighted by planned
    /// demand (all outputs when `max_tokens` is absent). All zero when the plan has no demand
    /// for that input tick (the caller then routes over every pod).
    pub fn shares(&self, prompt_tokens: u32, max_tokens: Option<u32>) -> Vec<f64> {
        let mut out = vec![0.0; self.groups.len()];
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return out;
        }
        let inp = nearest(&self.inputs, prompt_tokens);
        let top = max_tokens.map_or(self.outputs.len() - 1, |m| nearest(&self.outputs, m));
        let mut total = 0.0;
        for o in 0..=top {
            let cell = o * self.inputs.len() + inp;
            let (Some(w), Some(&d)) = (self.weights.get(cell), self.demand.get(cell)) else {
                continue;
            };
            for (s, x) in out.iter_mut().zip(w) {
                *s += d * x;
            }
            total += d;
        }
        if total > 0.0 {
            out.iter_mut().for_each(|s| *s /= total);
        }
        out
    }
}

/// Index of the tick nearest `v` in log2 space (ties to the larger tick): how the optimizer's
/// grid buckets requests, shared so the router buckets them the same way.
pub fn nearest(ticks: &[u32], v: u32) -> usize {
    let lv = f64::from(v.max(1)).log2();
    let mut best = 0;
    let mut gap = f64::INFINITY;
    for (i, &t) in ticks.iter().enumerate() {
        let d = (f64::from(t).log2() - lv).abs();
        if d <= gap {
            best = i;
            gap = d;
        }
    }
    best
}
