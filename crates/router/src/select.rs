//! Picking a pod: one strategy's own rule, or a weighted mix of normalised scores.
//!
//! Fallback rules (each reported in [`Decision::fallback`] so the gateway counts and logs
//! it; none is silent, and none falls back to random):
//! - a strategy whose signal no pod exports (`least-kv-cache` without KV metrics) routes
//!   least-request;
//! - `session-affinity` without a pinned pod or a session key routes least-request;
//! - `prefix-cache` with no usable match, or under load imbalance, routes least-request.

use rand::Rng;
use rand::seq::SliceRandom;

use crate::pod::{Pod, RouteRequest};
use crate::prefix::PrefixIndex;
use crate::score::normalise;
use crate::strategy::{Strategy, Weighted};

/// Why the chosen strategy's own rule did not decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// The strategy's signal is missing on every pod.
    MissingSignal(Strategy),
    /// No session pin or key was given.
    NoSession,
    /// No pod holds a prefix of the prompt (or none within the load cap).
    NoPrefixMatch,
    /// In-flight spread exceeded the imbalance threshold.
    LoadImbalance,
}

impl Fallback {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingSignal(_) => "missing_signal",
            Self::NoSession => "no_session",
            Self::NoPrefixMatch => "no_prefix_match",
            Self::LoadImbalance => "load_imbalance",
        }
    }
}

/// The pod to use and how it was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Index into the pods slice.
    pub pod: usize,
    /// Set when the strategy fell back to least-request.
    pub fallback: Option<Fallback>,
}

/// Why no pod could be chosen.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoRoute {
    /// The model has no ready pod.
    #[error("no ready pod serves this model")]
    NoPods,
}

/// Chooses a pod for `req` among `pods` (all ready, all serving the model).
pub fn route(
    strategy: &Weighted,
    req: &RouteRequest<'_>,
    pods: &[Pod],
    index: &PrefixIndex,
    now: f64,
    rng: &mut impl Rng,
) -> Result<Decision, NoRoute> {
    if pods.is_empty() {
        return Err(NoRoute::NoPods);
    }
    // A seeded shuffle decides every tie, so no pod is favoured by its position.
    let mut order: Vec<usize> = (0..pods.len()).collect();
    order.shuffle(rng);
    let cx = Ctx {
        req,
        pods,
        index,
        now,
        order: &order,
    };
    let decided = |pod| {
        Ok(Decision {
            pod,
            fallback: None,
        })
    };
    match strategy.0.as_slice() {
        [(Strategy::Random, _)] => decided(order[0]),
        [(Strategy::LeastRequest, _)] => decided(least_request(pods, &order)),
        [(Strategy::PowerOfTwo, _)] => {
            let (a, b) = (order[0], *order.get(1).unwrap_or(&order[0]));
            decided(if pods[b].in_flight < pods[a].in_flight {
                b
            } else {
                a
            })
        }
        [(Strategy::LeastKvCache, _)] => {
            let costs = kv_costs(pods);
            if costs.iter().all(Option::is_none) {
                return fallback(
                    pods,
                    &order,
                    Fallback::MissingSignal(Strategy::LeastKvCache),
                );
            }
            decided(best(&normalise(&costs), &order).unwrap_or(order[0]))
        }
        [(Strategy::SessionAffinity, _)] => match session_pod(req, pods) {
            Some(pod) => decided(pod),
            None => fallback(pods, &order, Fallback::NoSession),
        },
        [(Strategy::PrefixCache, _)] => prefix_cache(&cx),
        [(Strategy::KvCost, _)] => {
            let costs: Vec<Option<f64>> = kv_cost(&cx).into_iter().map(Some).collect();
            decided(best(&normalise(&costs), &order).unwrap_or(order[0]))
        }
        mix => Ok(weighted(mix, &cx, rng)),
    }
}

/// One routing call's inputs, shared by the strategies that need more than the pods.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    req: &'a RouteRequest<'a>,
    pods: &'a [Pod],
    index: &'a PrefixIndex,
    now: f64,
    /// Pod indices in the seeded shuffle that breaks ties.
    order: &'a [usize],
}

fn fallback(pods: &[Pod], order: &[usize], why: Fallback) -> Result<Decision, NoRoute> {
    Ok(Decision {
        pod: least_request(pods, order),
        fallback: Some(why),
    })
}

/// Fewest in flight; the first in `order` among equals.
fn least_request(pods: &[Pod], order: &[usize]) -> usize {
    order
        .iter()
        .copied()
        .min_by_key(|&p| pods[p].in_flight)
        .unwrap_or(0)
}

fn kv_costs(pods: &[Pod]) -> Vec<Option<f64>> {
    pods.iter().map(|p| p.metrics.kv_usage).collect()
}

/// The first pod in `order` with the highest score.
fn best(scores: &[f64], order: &[usize]) -> Option<usize> {
    order
        .iter()
        .copied()
        .reduce(|a, b| if scores[b] > scores[a] { b } else { a })
}

/// The pinned pod (`x-session-id` = its address), else the rendezvous-hash winner for the key.
fn session_pod(req: &RouteRequest<'_>, pods: &[Pod]) -> Option<usize> {
    if let Some(pin) = req.session_pod
        && let Some(p) = pods.iter().position(|p| p.address == pin)
    {
        return Some(p);
    }
    let key = req.session_key?;
    (0..pods.len()).max_by(|&a, &b| {
        let (ha, hb) = (
            rendezvous(key, &pods[a].address),
            rendezvous(key, &pods[b].address),
        );
        // Highest hash wins; on a tie the smaller address.
        ha.cmp(&hb)
            .then_with(|| pods[b].address.cmp(&pods[a].address))
    })
}

/// FNV-1a 64 over `key ‖ '|' ‖ address`, as AIBrix's session router hashes.
fn rendezvous(key: &str, address: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain([b'|']).chain(address.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// AIBrix's `prefix-cache`: imbalance guard, best match within mean + k·σ load, else least-request.
fn prefix_cache(cx: &Ctx<'_>) -> Result<Decision, NoRoute> {
    let Ctx {
        req,
        pods,
        index,
        now,
        order,
    } = *cx;
    let cfg = index.config();
    let loads: Vec<f64> = pods.iter().map(|p| f64::from(p.in_flight)).collect();
    let (min, max) = loads
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    if max - min > f64::from(cfg.imbalance_abs) {
        return fallback(pods, order, Fallback::LoadImbalance);
    }
    let n = loads.len() as f64;
    let mean = loads.iter().sum::<f64>() / n;
    let sd = (loads.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    let cap = mean + cfg.std_dev_factor * sd;
    let matched = index.matched(req.blocks, pods, now);
    let mut candidates: Vec<usize> = order.iter().copied().filter(|&p| matched[p] > 0).collect();
    // Longest match first, then least loaded; the stable sort keeps the shuffled order for ties.
    candidates.sort_by_key(|&p| (std::cmp::Reverse(matched[p]), pods[p].in_flight));
    match candidates.into_iter().find(|&p| loads[p] <= cap) {
        Some(pod) => Ok(Decision {
            pod,
            fallback: None,
        }),
        None => fallback(pods, order, Fallback::NoPrefixMatch),
    }
}

/// `kv-cost`: prefill units the pod would still have to compute for this prompt, plus its
/// load (in flight from this gateway, and the engine's own waiting queue) in the same units.
/// Linear in both, so a popular prefix spills over gradually instead of at a threshold.
fn kv_cost(cx: &Ctx<'_>) -> Vec<f64> {
    let Ctx {
        req,
        pods,
        index,
        now,
        ..
    } = *cx;
    let cfg = index.config();
    let prompt = f64::from(req.prompt_units);
    index
        .matched(req.blocks, pods, now)
        .into_iter()
        .zip(pods)
        .map(|(m, p)| {
            let cached = (m as f64 * f64::from(cfg.block_units)).min(prompt);
            let queue = f64::from(p.in_flight) + p.metrics.waiting.unwrap_or(0.0);
            (prompt - cached) + cfg.load_units_per_request * queue
        })
        .collect()
}

/// Σ weight × normalised score over the mix's strategies; the best total wins.
fn weighted(mix: &[(Strategy, u32)], cx: &Ctx<'_>, rng: &mut impl Rng) -> Decision {
    let mut total = vec![0.0; cx.pods.len()];
    let weights: f64 = mix.iter().map(|(_, w)| f64::from(*w)).sum();
    for &(strategy, w) in mix {
        let costs = costs(strategy, cx, rng);
        for (t, s) in total.iter_mut().zip(normalise(&costs)) {
            *t += s * f64::from(w) / weights;
        }
    }
    Decision {
        pod: best(&total, cx.order).unwrap_or(0),
        fallback: None,
    }
}

/// One strategy's lower-is-better cost per pod, for mixing.
fn costs(strategy: Strategy, cx: &Ctx<'_>, rng: &mut impl Rng) -> Vec<Option<f64>> {
    let Ctx {
        req,
        pods,
        index,
        now,
        order,
    } = *cx;
    let in_flight = |p: &Pod| Some(f64::from(p.in_flight));
    match strategy {
        Strategy::Random => pods.iter().map(|_| Some(rng.random::<f64>())).collect(),
        Strategy::LeastRequest => pods.iter().map(in_flight).collect(),
        Strategy::LeastKvCache => kv_costs(pods),
        Strategy::PowerOfTwo => {
            let pair = [order[0], *order.get(1).unwrap_or(&order[0])];
            (0..pods.len())
                .map(|p| {
                    if pair.contains(&p) {
                        in_flight(&pods[p])
                    } else {
                        None
                    }
                })
                .collect()
        }
        Strategy::SessionAffinity => {
            let pinned = session_pod(req, pods);
            (0..pods.len())
                .map(|p| Some(if Some(p) == pinned { 0.0 } else { 1.0 }))
                .collect()
        }
        Strategy::KvCost => kv_cost(cx).into_iter().map(Some).collect(),
        Strategy::PrefixCache => {
            let blocks = req.blocks.len().max(1) as f64;
            index
                .matched(req.blocks, pods, now)
                .into_iter()
                .map(|m| Some(1.0 - m as f64 / blocks))
                .collect()
        }
    }
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;
