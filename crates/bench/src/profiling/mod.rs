//! Capacity profiles for the optimizer: per bucket of (input, output) tokens, the highest request
//! rate one replica sustains within an SLO (AIBrix's profile JSON, `brix_optimizer::Profile`).
//!
//! One search loop ([`max_rate`]: bracket by doubling or halving from a guess, then bisect in
//! log space to a relative tolerance) asks a [`Measurer`] whether a rate passes: at least the
//! SLO's percentile of requests meet every bound, and throughput is at least 0.9 × the offered
//! rate (AIBrix's rule: no growing backlog). Three measurers answer it:
//! - [`SimMeasurer`]: one `brix-sim` engine in virtual time, Poisson arrivals of the bucket's
//!   exact shape (random prompts, no shared prefixes), seeded;
//! - [`AnalyticMeasurer`]: the roofline alone (no simulation): the steady-state step time of the
//!   batch that rate implies, KV and batch limits, TTFT from prefill plus an M/M/1 queueing bound;
//! - [`LiveMeasurer`]: the same Poisson runs sent to an OpenAI endpoint with `brix bench run`'s
//!   client, for people with GPUs.
//!
//! [`build_profile`] runs the search over every bucket of a grid (on a few threads) and fills the
//! profile; [`compare`] sets two profiles of one GPU side by side (analytic vs sim).

mod analytic;
mod compare;
mod live;
mod sim;
#[cfg(test)]
mod tests;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use brix_optimizer::{Grid, Profile, Slo};

pub use analytic::AnalyticMeasurer;
pub use compare::{Comparison, compare};
pub use live::LiveMeasurer;
pub use sim::SimMeasurer;

/// The request shape of one measurement: every request has exactly these token counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Prompt tokens.
    pub input: u32,
    /// Generated tokens (`max_tokens` with `ignore_eos`).
    pub output: u32,
}

impl Shape {
    /// The shape measured for a bucket of ticks `(input, output)` on an engine whose context
    /// holds `max_model_len` tokens: cut as `brix bench sim` cuts a workload (`fit_context`:
    /// output at most `max_model_len − 1`, then the prompt shortened to fit), so a profile
    /// describes the requests a replay actually sends.
    pub fn fitted(input: u32, output: u32, max_model_len: u32) -> Self {
        let max = max_model_len.max(2);
        let output = output.clamp(1, max - 1);
        Self {
            input: input.clamp(1, max - output),
            output,
        }
    }
}

/// What one run at one rate showed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measurement {
    /// Share (0–1) of the measured requests that completed and met every bound of the SLO.
    pub attainment: f64,
    /// Requests completed per second in the run's steady part (a backlog lowers it).
    pub throughput: f64,
}

/// Why a profile could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum ProfilingError {
    /// The engine settings do not work for this model on this GPU.
    #[error("engine: {0}")]
    Engine(#[from] brix_sim::ConfigError),
    /// The live endpoint could not be driven.
    #[error("live run: {0}")]
    Live(#[from] crate::live::LiveError),
    /// Bad settings (grid, SLO, search limits).
    #[error("{0}")]
    Invalid(String),
}

/// Runs one rate for one shape and reports what happened; the search calls it repeatedly.
pub trait Measurer: Sync {
    /// Offers `rate` req/s of `shape` and judges the requests against `slo`.
    fn measure(&self, shape: Shape, rate: f64, slo: &Slo) -> Result<Measurement, ProfilingError>;

    /// A first rate to try (req/s); a good guess saves runs, a bad one only costs a few.
    fn guess(&self, shape: Shape, slo: &Slo) -> f64 {
        let _ = (shape, slo);
        1.0
    }
}

/// Limits of the rate search.
#[derive(Clone, Debug, PartialEq)]
pub struct Search {
    /// Stop bisecting when hi / lo ≤ 1 + this (0.03: within 3 %).
    pub rel_tol: f64,
    /// Below this rate (req/s) a bucket counts as unservable: its capacity is 0.
    pub min_rate: f64,
    /// The search stops doubling here (req/s).
    pub max_rate: f64,
    /// A rate passes only if throughput ≥ this × rate (AIBrix: 0.9).
    pub throughput_share: f64,
}

impl Default for Search {
    fn default() -> Self {
        Self {
            rel_tol: 0.03,
            min_rate: 0.01,
            max_rate: 10_000.0,
            throughput_share: 0.9,
        }
    }
}

impl Search {
    /// What is wrong with the limits, if anything.
    pub fn problem(&self) -> Option<String> {
        let pos = |v: f64| v.is_finite() && v > 0.0;
        if !(pos(self.rel_tol) && pos(self.min_rate) && pos(self.max_rate)) {
            return Some("search limits must be positive".into());
        }
        if self.min_rate >= self.max_rate {
            return Some("min_rate must be below max_rate".into());
        }
        if !(self.throughput_share > 0.0 && self.throughput_share <= 1.0) {
            return Some("throughput_share must be in (0, 1]".into());
        }
        None
    }

    /// Whether a run at `rate` passes: attainment at the SLO's percentile and no backlog.
    pub fn passes(&self, m: &Measurement, rate: f64, slo: &Slo) -> bool {
        m.attainment * 100.0 >= slo.percentile - 1e-9
            && m.throughput >= self.throughput_share * rate
    }
}

/// The highest rate (req/s) of `shape` that passes, to within `search.rel_tol`; 0 when even
/// `search.min_rate` fails. Assumes passing is (roughly) monotone in the rate.
pub fn max_rate(
    m: &dyn Measurer,
    shape: Shape,
    slo: &Slo,
    search: &Search,
) -> Result<f64, ProfilingError> {
    let ok = |r: f64| -> Result<bool, ProfilingError> {
        Ok(search.passes(&m.measure(shape, r, slo)?, r, slo))
    };
    let guess = m.guess(shape, slo);
    let start = if guess.is_finite() && guess > 0.0 {
        guess.clamp(search.min_rate, search.max_rate)
    } else {
        search.min_rate
    };
    let (mut lo, mut hi);
    if ok(start)? {
        lo = start;
        loop {
            let next = lo * 2.0;
            if next > search.max_rate {
                return Ok(lo);
            }
            if ok(next)? {
                lo = next;
            } else {
                hi = next;
                break;
            }
        }
    } else {
        hi = start;
        loop {
            let next = hi / 2.0;
            if next < search.min_rate {
                // One last try at the floor itself before calling the bucket unservable.
                if hi > search.min_rate && ok(search.min_rate)? {
                    lo = search.min_rate;
                    break;
                }
                return Ok(0.0);
            }
            if ok(next)? {
                lo = next;
                break;
            }
            hi = next;
        }
    }
    while hi / lo > 1.0 + search.rel_tol {
        let mid = (lo * hi).sqrt();
        if ok(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// What a profile is of, for its JSON's metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileMeta {
    /// GPU type (a `brix sim` GPU profile name).
    pub gpu: String,
    /// $/h of one replica (GPU price × tensor-parallel size).
    pub cost: f64,
    /// The model profile (or served model) it was measured for.
    pub model: String,
    /// `sim`, `analytic` or `live`.
    pub method: String,
    /// Longest prompt + output the engine takes; shapes are fitted to it ([`Shape::fitted`]).
    pub max_model_len: u32,
}

/// Measures every bucket of `grid` with `threads` workers and returns the profile; `on_cell`
/// hears each bucket's result as it lands (progress output).
pub fn build_profile(
    m: &dyn Measurer,
    meta: &ProfileMeta,
    grid: &Grid,
    slo: &Slo,
    search: &Search,
    threads: usize,
    on_cell: &(dyn Fn(Shape, f64) + Sync),
) -> Result<Profile, ProfilingError> {
    if let Some(why) = grid.problem() {
        return Err(ProfilingError::Invalid(format!("grid: {why}")));
    }
    if let Some(why) = slo.problem() {
        return Err(ProfilingError::Invalid(format!("slo: {why}")));
    }
    if let Some(why) = search.problem() {
        return Err(ProfilingError::Invalid(why));
    }
    let n = grid.len();
    let next = AtomicUsize::new(0);
    let rates = Mutex::new(vec![0.0; n]);
    let failure: Mutex<Option<ProfilingError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, n) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || lock(&failure).is_some() {
                        return;
                    }
                    let c = grid.cell_at(i);
                    let shape =
                        Shape::fitted(grid.inputs[c.inp], grid.outputs[c.out], meta.max_model_len);
                    match max_rate(m, shape, slo, search) {
                        Ok(r) => {
                            lock(&rates)[i] = r;
                            on_cell(shape, r);
                        }
                        Err(e) => {
                            lock(&failure).get_or_insert(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = lock(&failure).take() {
        return Err(e);
    }
    let rates = lock(&rates).clone();
    let tputs = (0..grid.outputs.len())
        .map(|o| {
            (0..grid.inputs.len())
                .map(|i| round4(rates[o * grid.inputs.len() + i]))
                .collect()
        })
        .collect();
    let profile = Profile {
        gpu: meta.gpu.clone(),
        cost: meta.cost,
        tputs,
        indexes: vec![grid.outputs.clone(), grid.inputs.clone()],
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64().floor()),
        slos: Some(slo.clone()),
        model: Some(meta.model.clone()),
        method: Some(meta.method.clone()),
    };
    profile
        .validate()
        .map_err(|e| ProfilingError::Invalid(e.to_string()))?;
    Ok(profile)
}

/// Four significant digits: a profile is a measurement, not a bit pattern.
fn round4(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 0.0;
    }
    let scale = 10f64.powi(3 - v.log10().floor() as i32);
    (v * scale).round() / scale
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One finished (or failed) request of a measurement run, in seconds from the run's start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Sample {
    /// When it was due.
    pub(crate) arrival: f64,
    /// When it ended (None: it failed or never ended).
    pub(crate) end: Option<f64>,
    /// Time to first token.
    pub(crate) ttft: Option<f64>,
    /// Time per output token after the first.
    pub(crate) tpot: Option<f64>,
}

/// Judges a run offered at `rate`: attainment over the requests after the first `warmup`
/// share (by arrival); throughput as `rate` × (completions ÷ arrivals) over the steady part,
/// from the first measured request's typical end to the last arrival (the drain after it is
/// left out; a ratio of counts, so Poisson noise in the arrivals does not read as backlog).
/// When that window is too short against the latency, `rate` × arrival span ÷ (the run's
/// span less the median latency) stands in.
pub(crate) fn judge(samples: &mut [Sample], rate: f64, slo: &Slo, warmup: f64) -> Measurement {
    if samples.is_empty() {
        return Measurement {
            attainment: 0.0,
            throughput: 0.0,
        };
    }
    samples.sort_by(|a, b| a.arrival.total_cmp(&b.arrival));
    let skip = ((samples.len() as f64) * warmup.clamp(0.0, 0.9)).floor() as usize;
    let measured = &samples[skip..];
    let met = measured
        .iter()
        .filter(|s| {
            let e2e = s.end.map(|e| e - s.arrival);
            s.end.is_some() && slo.met(s.ttft, s.tpot, e2e)
        })
        .count();
    let attainment = met as f64 / measured.len() as f64;
    let mut e2e: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.end.map(|e| e - s.arrival))
        .collect();
    e2e.sort_by(f64::total_cmp);
    let median = crate::report::percentile(&e2e, 50.0);
    let last_arrival = samples[samples.len() - 1].arrival;
    let arrival_span = last_arrival - samples[0].arrival;
    let (from, to) = (measured[0].arrival + median, last_arrival);
    let arrived = samples
        .iter()
        .filter(|s| s.arrival > from && s.arrival <= to)
        .count();
    let throughput = if to - from >= 0.25 * arrival_span && arrived >= 20 {
        let done = samples
            .iter()
            .filter(|s| s.end.is_some_and(|e| e > from && e <= to))
            .count();
        rate * done as f64 / arrived as f64
    } else {
        let done = samples.iter().filter(|s| s.end.is_some()).count();
        let last_end = samples
            .iter()
            .filter_map(|s| s.end)
            .fold(f64::NEG_INFINITY, f64::max);
        let span = (last_end - samples[0].arrival - median).max(arrival_span);
        if span > 0.0 {
            rate * (done as f64 / samples.len() as f64) * arrival_span / span
        } else {
            rate * done as f64 / samples.len() as f64
        }
    };
    Measurement {
        attainment,
        throughput,
    }
}
