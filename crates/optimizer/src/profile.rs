//! Capacity profiles: the highest request rate one replica of a (model, GPU type) sustains
//! within an SLO, per bucket. The JSON is AIBrix's (`gpu`, `cost`, `tputs[out][in]`,
//! `indexes: [outputs, inputs]`, `created`, `slos`), so its profiles load as they are; Brix adds
//! optional fields (`model`, `method`) that AIBrix ignores.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::grid::{Cell, Grid};

/// The latency objective a profile was measured against: at `percentile` (0–100) of requests,
/// each given bound holds. Times in seconds; an absent bound is not checked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// Share of requests (in percent) that must meet every bound, e.g. 90 or 99.
    pub percentile: f64,
    /// Time to first token, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft: Option<f64>,
    /// Time per output token after the first, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot: Option<f64>,
    /// End-to-end latency, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e: Option<f64>,
}

impl Default for Slo {
    /// Brix's default interactive SLO: P90 TTFT ≤ 2 s and P90 TPOT ≤ 100 ms.
    fn default() -> Self {
        Self {
            percentile: 90.0,
            ttft: Some(2.0),
            tpot: Some(0.1),
            e2e: None,
        }
    }
}

impl Slo {
    /// Whether one request met every bound (a request without a measure, e.g. TPOT of a
    /// one-token answer, meets that bound).
    pub fn met(&self, ttft_s: Option<f64>, tpot_s: Option<f64>, e2e_s: Option<f64>) -> bool {
        let ok = |bound: Option<f64>, v: Option<f64>| match (bound, v) {
            (Some(b), Some(v)) => v <= b,
            _ => true,
        };
        ok(self.ttft, ttft_s) && ok(self.tpot, tpot_s) && ok(self.e2e, e2e_s)
    }

    /// What is wrong with the SLO, if anything (percentile outside (0, 100], a bound ≤ 0).
    pub fn problem(&self) -> Option<String> {
        if !(self.percentile > 0.0 && self.percentile <= 100.0) {
            return Some(format!("percentile {} is not in (0, 100]", self.percentile));
        }
        for (n, b) in [("ttft", self.ttft), ("tpot", self.tpot), ("e2e", self.e2e)] {
            if b.is_some_and(|b| !(b.is_finite() && b > 0.0)) {
                return Some(format!("{n} must be positive seconds"));
            }
        }
        if self.ttft.is_none() && self.tpot.is_none() && self.e2e.is_none() {
            return Some("no bound: give ttft, tpot or e2e".into());
        }
        None
    }
}

/// One (model, GPU type)'s capacity per bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// GPU type (a `brix sim` GPU profile name for simulated engines, e.g. `A10`).
    pub gpu: String,
    /// Dollars per hour of one replica (all its GPUs).
    pub cost: f64,
    /// `tputs[out][in]`: highest sustainable request rate (req/s) of one replica in the
    /// bucket within `slos`; 0 where the SLO cannot be met at any rate.
    pub tputs: Vec<Vec<f64>>,
    /// `[output ticks, input ticks]`, AIBrix's order.
    pub indexes: Vec<Vec<u32>>,
    /// Unix seconds when it was made (AIBrix's field; 0 when unknown).
    #[serde(default)]
    pub created: f64,
    /// The SLO the rates were measured against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slos: Option<Slo>,
    /// The served model the profile is for (Brix's field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How the rates were obtained: `sim`, `analytic`, `live` (Brix's field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("profile {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The JSON does not parse as a profile.
    #[error("profile {path}: {source}")]
    Json {
        /// The file.
        path: String,
        /// Why.
        source: serde_json::Error,
    },
    /// It parses but is not usable.
    #[error("profile {gpu}: {why}")]
    Invalid {
        /// The profile's GPU.
        gpu: String,
        /// What is wrong.
        why: String,
    },
}

impl Profile {
    /// Reads and validates a profile file.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
            path: p.clone(),
            source,
        })?;
        let prof: Self =
            serde_json::from_str(&text).map_err(|source| ProfileError::Json { path: p, source })?;
        prof.validate()?;
        Ok(prof)
    }

    /// The profile's bucket grid (from `indexes`).
    pub fn grid(&self) -> Grid {
        Grid {
            outputs: self.indexes.first().cloned().unwrap_or_default(),
            inputs: self.indexes.get(1).cloned().unwrap_or_default(),
        }
    }

    /// Sustainable req/s of one replica in `c` (0: cannot meet the SLO there).
    pub fn capacity(&self, c: Cell) -> f64 {
        self.tputs
            .get(c.out)
            .and_then(|r| r.get(c.inp))
            .copied()
            .unwrap_or(0.0)
    }

    /// The profile with every capacity multiplied by `factor` (clamped to [0, 1]): how
    /// `brix optimize plan --verify` corrects a GPU type whose replay missed the SLO (mixed
    /// shapes on one replica interfere more than the single-shape profile measured).
    pub fn derated(&self, factor: f64) -> Self {
        let f = if factor.is_finite() {
            factor.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let mut p = self.clone();
        for v in p.tputs.iter_mut().flatten() {
            *v *= f;
        }
        p
    }

    /// Checks shape and values: two index lists forming a valid grid, `tputs` of that shape,
    /// rates finite and ≥ 0, cost finite and > 0.
    pub fn validate(&self) -> Result<(), ProfileError> {
        let bad = |why: String| ProfileError::Invalid {
            gpu: self.gpu.clone(),
            why,
        };
        if !(self.cost.is_finite() && self.cost > 0.0) {
            return Err(bad(format!("cost {} must be positive", self.cost)));
        }
        if self.indexes.len() != 2 {
            return Err(bad("indexes must be [output ticks, input ticks]".into()));
        }
        let g = self.grid();
        if let Some(why) = g.problem() {
            return Err(bad(why));
        }
        if self.tputs.len() != g.outputs.len()
            || self.tputs.iter().any(|r| r.len() != g.inputs.len())
        {
            return Err(bad(format!(
                "tputs must be {} rows (outputs) of {} (inputs)",
                g.outputs.len(),
                g.inputs.len()
            )));
        }
        if self
            .tputs
            .iter()
            .flatten()
            .any(|v| !(v.is_finite() && *v >= 0.0))
        {
            return Err(bad("rates must be finite and ≥ 0".into()));
        }
        if let Some(why) = self.slos.as_ref().and_then(Slo::problem) {
            return Err(bad(why));
        }
        Ok(())
    }
}
