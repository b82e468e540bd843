//! The fleet file's `optimizer:` section: which served models the heterogeneous GPU optimizer
//! plans, over which deployments (one fleet entry per GPU type, AIBrix's layout), with which
//! SLO, budget and window. Pure: profiles are files the platform reads.

use serde::Deserialize;

use crate::error::{FieldError, fail};
use crate::model::{MAX_REPLICAS, ModelSpec};

/// `optimizer:` of the fleet file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSpec {
    /// Seconds between plans (AIBrix: 10).
    #[serde(default = "ten")]
    pub interval_s: f64,
    /// Seconds of finished requests the demand averages over (AIBrix: 240).
    #[serde(default = "window")]
    pub window_s: f64,
    /// Seconds per bucket of the window (AIBrix: 10).
    #[serde(default = "ten")]
    pub tick_s: f64,
    /// When a new plan replaces the one in force.
    #[serde(default)]
    pub hysteresis: HysteresisSpec,
    /// Wall time one solve may take before its fallback, milliseconds.
    #[serde(default = "time_budget_ms")]
    pub time_budget_ms: u64,
    /// The models it plans.
    pub models: Vec<OptimizedModel>,
}

/// Hysteresis of successive plans (the optimizer's `Hysteresis`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HysteresisSpec {
    /// Keep the counts in force while they cost at most this share more than the new optimum.
    #[serde(default = "keep_within")]
    pub keep_within: f64,
    /// Seconds the optimum must ask for fewer replicas before a type scales down.
    #[serde(default = "down_delay_s")]
    pub down_delay_s: f64,
}

impl Default for HysteresisSpec {
    fn default() -> Self {
        Self {
            keep_within: keep_within(),
            down_delay_s: down_delay_s(),
        }
    }
}

/// One served model the optimizer plans.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimizedModel {
    /// The served name (the deployments' `model.aibrix.ai/name`).
    pub name: String,
    /// The latency objective the profiles were measured against; default P90 TTFT ≤ 2 s,
    /// TPOT ≤ 100 ms.
    #[serde(default)]
    pub slo: Option<SloSpec>,
    /// Most dollars per hour for all its replicas.
    #[serde(default)]
    pub budget: Option<f64>,
    /// Share of a replica's profiled capacity a plan may use, in (0, 1].
    #[serde(default = "utilisation")]
    pub utilisation: f64,
    /// The deployments (fleet entries) it may place replicas on, one per GPU type.
    pub deployments: Vec<OptimizedDeployment>,
}

/// A latency objective, seconds (the optimizer's `Slo`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SloSpec {
    /// Share of requests (percent) that must meet every bound.
    #[serde(default = "percentile")]
    pub percentile: f64,
    /// Time to first token.
    #[serde(default)]
    pub ttft: Option<f64>,
    /// Time per output token.
    #[serde(default)]
    pub tpot: Option<f64>,
    /// End-to-end latency.
    #[serde(default)]
    pub e2e: Option<f64>,
}

/// One deployment of an optimized model.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimizedDeployment {
    /// The fleet entry's `name`.
    pub name: String,
    /// GPU type; default the entry's `sim.gpu` (required for a command engine).
    #[serde(default)]
    pub gpu: Option<String>,
    /// $/h of one replica; default the GPU's price × the model profile's TP (simulated
    /// engines), else the profile's `cost`.
    #[serde(default)]
    pub cost: Option<f64>,
    /// Most replicas (availability); default 64.
    #[serde(default)]
    pub max: Option<u32>,
    /// Capacity profile (AIBrix JSON), relative to the fleet file; default the built-in
    /// profile of the entry's model profile on this GPU.
    #[serde(default)]
    pub profile: Option<String>,
    /// Share of this type's profiled capacity a plan may use, in (0, 1], instead of the
    /// model's `utilisation`: more headroom for a GPU type whose replay (`brix optimize plan
    /// --verify`) showed mixed shapes hurt it more than its profile says.
    #[serde(default)]
    pub utilisation: Option<f64>,
}

impl OptimizedDeployment {
    /// The GPU type: the field, else the simulated engine's.
    pub fn gpu_of(&self, entry: &ModelSpec) -> Option<String> {
        self.gpu.clone().or_else(|| match &entry.engine {
            crate::EngineSpec::Sim(s) => Some(s.gpu.clone()),
            crate::EngineSpec::Command(_) => None,
        })
    }
}

fn ten() -> f64 {
    10.0
}
fn window() -> f64 {
    240.0
}
fn time_budget_ms() -> u64 {
    500
}
fn keep_within() -> f64 {
    0.1
}
fn down_delay_s() -> f64 {
    60.0
}
fn utilisation() -> f64 {
    0.9
}
fn percentile() -> f64 {
    90.0
}

fn positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

impl OptimizerSpec {
    /// Checks the section against the fleet's entries (paths under `optimizer`).
    pub fn validate(&self, models: &[ModelSpec]) -> Result<(), FieldError> {
        if !(positive(self.interval_s) && self.interval_s <= 3600.0) {
            return fail("interval_s", "must be seconds in (0, 3600]");
        }
        if !(positive(self.tick_s) && self.tick_s <= 3600.0) {
            return fail("tick_s", "must be seconds in (0, 3600]");
        }
        if !(self.window_s.is_finite() && self.window_s >= self.tick_s) {
            return fail("window_s", "must be at least tick_s");
        }
        if self.window_s / self.tick_s > 10_000.0 {
            return fail("window_s", "holds more than 10000 ticks; raise tick_s");
        }
        let h = &self.hysteresis;
        if !(h.keep_within.is_finite() && (0.0..=10.0).contains(&h.keep_within)) {
            return fail("hysteresis.keep_within", "must be in 0..=10");
        }
        if !(h.down_delay_s.is_finite() && (0.0..=86_400.0).contains(&h.down_delay_s)) {
            return fail("hysteresis.down_delay_s", "must be seconds in 0..=86400");
        }
        if self.time_budget_ms == 0 || self.time_budget_ms > 60_000 {
            return fail("time_budget_ms", "must be in 1..=60000");
        }
        let mut seen_models = std::collections::BTreeSet::new();
        let mut seen_deps = std::collections::BTreeSet::new();
        for (i, m) in self.models.iter().enumerate() {
            let at = format!("models[{i}]");
            if !seen_models.insert(m.name.as_str()) {
                return fail(
                    format!("{at}.name"),
                    format!("'{}' is listed twice", m.name),
                );
            }
            if !models.iter().any(|e| e.served_name() == m.name) {
                return fail(
                    format!("{at}.name"),
                    format!("no fleet entry serves '{}'", m.name),
                );
            }
            if let Some(b) = m.budget
                && !positive(b)
            {
                return fail(format!("{at}.budget"), "must be positive $/h");
            }
            if !(positive(m.utilisation) && m.utilisation <= 1.0) {
                return fail(format!("{at}.utilisation"), "must be in (0, 1]");
            }
            if let Some(s) = &m.slo {
                s.problem()
                    .map_or(Ok(()), |why| fail(format!("{at}.slo"), why))?;
            }
            if m.deployments.is_empty() {
                return fail(format!("{at}.deployments"), "at least one is required");
            }
            for (j, d) in m.deployments.iter().enumerate() {
                let at = format!("{at}.deployments[{j}]");
                if !seen_deps.insert(d.name.as_str()) {
                    return fail(
                        format!("{at}.name"),
                        format!("'{}' is planned twice", d.name),
                    );
                }
                let Some(entry) = models.iter().find(|e| e.name == d.name) else {
                    return fail(
                        format!("{at}.name"),
                        format!("no fleet entry is named '{}'", d.name),
                    );
                };
                if entry.served_name() != m.name {
                    return fail(
                        format!("{at}.name"),
                        format!(
                            "'{}' serves '{}', not '{}' (set its label model.aibrix.ai/name)",
                            d.name,
                            entry.served_name(),
                            m.name
                        ),
                    );
                }
                if d.gpu_of(entry).is_none() {
                    return fail(format!("{at}.gpu"), "required for a command engine");
                }
                if let Some(c) = d.cost
                    && !positive(c)
                {
                    return fail(format!("{at}.cost"), "must be positive $/h");
                }
                if let Some(max) = d.max
                    && (max > MAX_REPLICAS || max < entry.min_replicas())
                {
                    return fail(
                        format!("{at}.max"),
                        format!(
                            "{max} is not in {}..={MAX_REPLICAS} (the entry's min_replicas label)",
                            entry.min_replicas()
                        ),
                    );
                }
                if let Some(u) = d.utilisation
                    && !(positive(u) && u <= 1.0)
                {
                    return fail(format!("{at}.utilisation"), "must be in (0, 1]");
                }
                if d.profile.as_deref().is_some_and(|p| p.trim().is_empty()) {
                    return fail(format!("{at}.profile"), "must not be empty");
                }
            }
        }
        Ok(())
    }
}

impl SloSpec {
    /// What is wrong with it, if anything.
    pub fn problem(&self) -> Option<String> {
        if !(self.percentile > 0.0 && self.percentile <= 100.0) {
            return Some(format!("percentile {} is not in (0, 100]", self.percentile));
        }
        for (n, b) in [("ttft", self.ttft), ("tpot", self.tpot), ("e2e", self.e2e)] {
            if b.is_some_and(|b| !positive(b)) {
                return Some(format!("{n} must be positive seconds"));
            }
        }
        if self.ttft.is_none() && self.tpot.is_none() && self.e2e.is_none() {
            return Some("no bound: give ttft, tpot or e2e".into());
        }
        None
    }
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]
mod tests {
    use super::*;

    fn fleet() -> Vec<ModelSpec> {
        serde_yaml_ng::from_str(
            "- {name: m-a, labels: {model.aibrix.ai/name: m, model.aibrix.ai/min_replicas: '1'}, engine: {sim: {gpu: A10}}}
- {name: m-b, labels: {model.aibrix.ai/name: m}, engine: {sim: {gpu: H100}}}
- {name: other, engine: {command: {command: 'x --port {port}'}}}
",
        )
        .unwrap()
    }

    fn spec(yaml: &str) -> OptimizerSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn deployments_of_one_served_model_validate() {
        let models = fleet();
        crate::validate_models(&models).unwrap();
        assert_eq!(models[0].served_name(), "m");
        assert_eq!(models[0].min_replicas(), 1);
        assert_eq!(models[2].served_name(), "other");
        let s = spec("models: [{name: m, deployments: [{name: m-a, max: 3}, {name: m-b}]}]");
        s.validate(&models).unwrap();
        assert_eq!(s.interval_s, 10.0);
        assert_eq!(
            s.models[0].deployments[0].gpu_of(&models[0]).unwrap(),
            "A10"
        );
    }

    #[test]
    fn bad_sections_name_the_field() {
        let models = fleet();
        for (yaml, field) in [
            (
                "models: [{name: x, deployments: [{name: m-a}]}]",
                "models[0].name",
            ),
            (
                "models: [{name: m, deployments: [{name: other}]}]",
                "models[0].deployments[0].name",
            ),
            (
                "models: [{name: m, deployments: [{name: nope}]}]",
                "models[0].deployments[0].name",
            ),
            (
                "models: [{name: m, deployments: []}]",
                "models[0].deployments",
            ),
            (
                "models: [{name: m, utilisation: 0, deployments: [{name: m-a}]}]",
                "models[0].utilisation",
            ),
            (
                "models: [{name: m, deployments: [{name: m-a, utilisation: 1.5}]}]",
                "models[0].deployments[0].utilisation",
            ),
            (
                "models: [{name: m, deployments: [{name: m-a, max: 0}]}]",
                "models[0].deployments[0].max",
            ),
            (
                "models: [{name: m, deployments: [{name: m-a, cost: -1}]}]",
                "models[0].deployments[0].cost",
            ),
            (
                "models: [{name: m, slo: {percentile: 90}, deployments: [{name: m-a}]}]",
                "models[0].slo",
            ),
            ("tick_s: 5\nwindow_s: 1\nmodels: []", "window_s"),
            ("interval_s: 0\nmodels: []", "interval_s"),
        ] {
            let e = spec(yaml).validate(&models).unwrap_err();
            assert_eq!(e.field, field, "{yaml}: {e}");
        }
    }

    #[test]
    fn served_names_must_not_shadow_another_entry() {
        let models: Vec<ModelSpec> = serde_yaml_ng::from_str(
            "- {name: a, labels: {model.aibrix.ai/name: b}, engine: {sim: {}}}
- {name: b, labels: {model.aibrix.ai/name: c}, engine: {sim: {}}}
",
        )
        .unwrap();
        let e = crate::validate_models(&models).unwrap_err();
        assert_eq!(e.field, "models[0].labels[model.aibrix.ai/name]");
        let bad: Vec<ModelSpec> = serde_yaml_ng::from_str(
            "- {name: a, labels: {model.aibrix.ai/min_replicas: many}, engine: {sim: {}}}",
        )
        .unwrap();
        let e = crate::validate_models(&bad).unwrap_err();
        assert_eq!(e.field, "models[0].labels[model.aibrix.ai/min_replicas]");
    }
}
