//! Plan routing: the optimizer's per-bucket shares of GPU types (pod groups), as the gateway and
//! the virtual-time fleet both use them before a strategy picks a pod within the group.

use rand::Rng;

use crate::pod::RouteRequest;

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
    /// before the answer unless the request fixes it ([`OutputHint`]).
    pub demand: Vec<f64>,
}

/// What the router knows of a request's output length before the answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputHint {
    /// Nothing: every output bucket, weighted by planned demand.
    #[default]
    Unknown,
    /// `max_tokens` bounds it: the output buckets up to that one, weighted by planned demand.
    AtMost(u32),
    /// It will be exactly this long (`ignore_eos`, or `min_tokens` ≥ `max_tokens`): that
    /// bucket alone when the plan has demand there, else as [`Self::AtMost`].
    Exactly(u32),
}

impl From<Option<u32>> for OutputHint {
    /// `max_tokens` as a bound (`None`: unknown).
    fn from(max_tokens: Option<u32>) -> Self {
        max_tokens.map_or(Self::Unknown, Self::AtMost)
    }
}

impl PlanRoutes {
    /// Shares per group for a prompt of `prompt_tokens` with output `output` (a
    /// [`OutputHint`], or `max_tokens` as a bound): the cells of its input tick the hint
    /// allows, weighted by planned demand. All zero when the plan has no demand there (the
    /// caller then routes over every pod).
    pub fn shares(&self, prompt_tokens: u32, output: impl Into<OutputHint>) -> Vec<f64> {
        let mut out = vec![0.0; self.groups.len()];
        self.shares_into(prompt_tokens, output.into(), &mut out);
        out
    }

    /// [`Self::shares`] into `out` (one slot per group), so a router reuses one buffer.
    pub fn shares_into(&self, prompt_tokens: u32, output: OutputHint, out: &mut [f64]) {
        out.iter_mut().for_each(|s| *s = 0.0);
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return;
        }
        let inp = nearest(&self.inputs, prompt_tokens);
        let (lo, top) = match output {
            OutputHint::Unknown => (0, self.outputs.len() - 1),
            OutputHint::AtMost(m) => (0, nearest(&self.outputs, m)),
            OutputHint::Exactly(m) => {
                let o = nearest(&self.outputs, m);
                let planned = self.demand.get(o * self.inputs.len() + inp);
                if planned.is_some_and(|d| *d > 0.0) {
                    (o, o)
                } else {
                    (0, o)
                }
            }
        };
        let mut total = 0.0;
        for o in lo..=top {
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
    }

    /// Position of group `name` in [`Self::groups`]: how a pod's group becomes a share slot.
    pub fn group(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|g| g == name)
    }

    /// Turns `shares` (one per group, from [`Self::shares_into`]) into pick weights: each
    /// group's share × min(1, ready / planned), so a group still starting its replicas takes
    /// only what its ready pods can serve and the rest goes to the others; a group with no
    /// ready pod gets 0 (with `planned` 0, any ready pod counts in full). Returns the total.
    pub fn discount(&self, shares: &mut [f64], ready: &[u32]) -> f64 {
        let mut total = 0.0;
        for (g, s) in shares.iter_mut().enumerate() {
            let r = ready.get(g).copied().unwrap_or(0);
            let p = self.planned.get(g).copied().unwrap_or(0);
            let factor = match (r, p) {
                (0, _) => 0.0,
                (_, 0) => 1.0,
                (r, p) => (f64::from(r) / f64::from(p)).min(1.0),
            };
            *s = if s.is_finite() && *s > 0.0 {
                *s * factor
            } else {
                0.0
            };
            total += *s;
        }
        total
    }

    /// The group a request of `prompt_tokens` (output as `output` hints) goes to, drawn with
    /// `rng` from its shares discounted by readiness (`ready[g]`: pods of group g that may take
    /// it; see [`Self::discount`]); None when no group has weight (no planned demand for the
    /// shape, or no ready pod where it is planned): the caller routes over every pod and
    /// reports [`crate::Fallback::PlanGroup`].
    pub fn pick(
        &self,
        prompt_tokens: u32,
        output: impl Into<OutputHint>,
        ready: &[u32],
        rng: &mut impl Rng,
    ) -> Option<usize> {
        let mut w = self.shares(prompt_tokens, output);
        let total = self.discount(&mut w, ready);
        draw(&w, total, rng)
    }
}

/// Index drawn with probability `w[i] / total`; None when `total` is not positive.
pub(crate) fn draw(w: &[f64], total: f64, rng: &mut impl Rng) -> Option<usize> {
    if !(total.is_finite() && total > 0.0) {
        return None;
    }
    let mut x = rng.random::<f64>() * total;
    let mut last = None;
    for (i, &s) in w.iter().enumerate() {
        if s <= 0.0 {
            continue;
        }
        if x < s {
            return Some(i);
        }
        x -= s;
        last = Some(i);
    }
    // Rounding left x just above the sum: the last group with weight.
    last
}

/// A request's prompt length in tokens for plan routing: the count the driver knows
/// ([`RouteRequest::prompt_token_count`]), else its prompt units read as bytes at about 4
/// bytes per token (the gateway keys untokenized prompts by their text).
pub fn plan_tokens(req: &RouteRequest<'_>) -> u32 {
    req.prompt_token_count()
        .unwrap_or(req.prompt_units / BYTES_PER_TOKEN)
}

/// Bytes per token assumed for an untokenized prompt (English BPE text averages about 4).
pub const BYTES_PER_TOKEN: u32 = 4;

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
