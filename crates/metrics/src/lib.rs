//! Engine metric vocabulary: rules, as data, that re-export vLLM and SGLang series under one set of engine-neutral names; pure
//!
//! The vocabulary is AIBrix's `aibrix:` names ([`names`]), so AIBrix's dashboards and
//! autoscalers read a Brix runtime unchanged, plus what AIBrix lacks (one running-requests
//! name, one KV-usage name for every engine). The rules live in TOML files ([`Rules`]);
//! [`standardise`] rewrites an exposition with them; [`values`] reads one number per standard
//! quantity from either an engine's own names or standardised output, so a reader gets the
//! same figure whether it scrapes the engine or the runtime beside it.

pub mod expo;
pub mod rules;

use std::collections::HashSet;

pub use expo::{Exposition, ExpositionError, Family, MAX_EXPOSITION_BYTES, Sample};
pub use rules::{Action, Rule, Rules, RulesError};

/// The standard names (AIBrix's where it has one).
pub mod names {
    /// Requests waiting in the engine's queue (vLLM `num_requests_waiting`, SGLang `num_queue_reqs`).
    pub const QUEUE_SIZE: &str = "aibrix:queue_size";
    /// Requests being decoded or prefilled (vLLM `num_requests_running`, SGLang `num_running_reqs`); AIBrix has none.
    pub const RUNNING: &str = "aibrix:num_requests_running";
    /// Share of KV cache in use, 0..1 (vLLM `kv_cache_usage_perc`/`gpu_cache_usage_perc`, SGLang `token_usage`).
    pub const KV_USAGE: &str = "aibrix:kv_cache_usage_perc";
    /// AIBrix's name for vLLM's legacy KV gauge; kept for its dashboards.
    pub const GPU_CACHE_USAGE: &str = "aibrix:gpu_cache_usage_perc";
    /// AIBrix's name for SGLang's KV gauge; kept for its dashboards.
    pub const TOKEN_USAGE: &str = "aibrix:token_usage";
    /// Prompt tokens processed (counter).
    pub const PROMPT_TOKENS: &str = "aibrix:prompt_tokens_total";
    /// Tokens generated (counter).
    pub const GENERATION_TOKENS: &str = "aibrix:generation_tokens_total";
    /// Time to first token (histogram).
    pub const TTFT: &str = "aibrix:time_to_first_token_seconds";
    /// Gap between output tokens (histogram).
    pub const TPOT: &str = "aibrix:time_per_output_token_seconds";
    /// End-to-end request latency (histogram).
    pub const E2E: &str = "aibrix:e2e_request_latency_seconds";
    /// Finished requests by reason (counter).
    pub const REQUEST_SUCCESS: &str = "aibrix:request_success_total";
    /// Generated tokens per second (SGLang gauge).
    pub const GENERATION_THROUGHPUT: &str = "aibrix:generation_throughput";
    /// Prefix-cache hit rate (SGLang gauge).
    pub const CACHE_HIT_RATE: &str = "aibrix:cache_hit_rate";
    /// KV-cache hit rate (TRT-LLM gauge).
    pub const KV_CACHE_HIT_RATE: &str = "aibrix:kv_cache_hit_rate";
}

/// How [`standardise`] treats an exposition (AIBrix's `METRICS_ENABLE_TRANSFORMATION` and
/// `METRICS_RAW_PASSTHROUGH_MODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Apply the rules; `keep_original` also re-exports every engine family unchanged.
    Transform {
        /// Keep the engine's own families beside the standard ones.
        keep_original: bool,
    },
    /// Re-export everything unchanged.
    Passthrough,
}

/// What [`try_standardise`] made.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardised {
    /// The exposition to serve.
    pub text: String,
    /// Input lines skipped as malformed.
    pub skipped_lines: usize,
    /// Families not written because one of the same name was already written.
    pub duplicates: usize,
}

/// Rewrites `exposition` with `rules`: valid Prometheus text, `HELP`/`TYPE` kept, a
/// histogram's `_bucket`/`_sum`/`_count` renamed together, no family written twice. An
/// exposition over [`MAX_EXPOSITION_BYTES`] becomes a single comment saying so.
pub fn standardise(rules: &Rules, exposition: &str, mode: Mode) -> String {
    match try_standardise(rules, exposition, mode) {
        Ok(s) => s.text,
        Err(e) => format!("# brix-metrics: {e}; nothing re-exported\n"),
    }
}

/// [`standardise`], with counts of what was skipped and a typed error for an oversized text.
pub fn try_standardise(
    rules: &Rules,
    exposition: &str,
    mode: Mode,
) -> Result<Standardised, ExpositionError> {
    let parsed = expo::parse(exposition)?;
    let keep_original = match mode {
        Mode::Passthrough => {
            return Ok(Standardised {
                text: expo::render(&parsed.families),
                skipped_lines: parsed.skipped,
                duplicates: 0,
            });
        }
        Mode::Transform { keep_original } => keep_original,
    };
    // A standard family already in the input (a runtime behind a runtime) wins over a copy.
    let input: HashSet<&str> = parsed.families.iter().map(|f| f.name.as_str()).collect();
    let mut out = Out::default();
    for family in &parsed.families {
        if rules.is_target(&family.name) {
            out.emit(family.clone());
            continue;
        }
        match rules
            .rule_for_family(&family.name)
            .map(|r| (&r.from, &r.action))
        {
            Some((_, Action::Drop)) => {}
            Some((_, Action::Passthrough)) => out.emit(family.clone()),
            Some((
                from,
                Action::Rename {
                    to,
                    keep_source,
                    labels,
                },
            )) => {
                if keep_original || *keep_source {
                    out.emit(family.clone());
                }
                for target in to {
                    let copy = renamed(family, from, target, labels);
                    if input.contains(copy.name.as_str()) {
                        out.duplicates += 1;
                    } else {
                        out.emit(copy);
                    }
                }
            }
            None if keep_original => out.emit(family.clone()),
            None => {}
        }
    }
    Ok(Standardised {
        text: expo::render(&out.families),
        skipped_lines: parsed.skipped,
        duplicates: out.duplicates,
    })
}

/// The families written so far, each name once.
#[derive(Default)]
struct Out {
    families: Vec<Family>,
    written: HashSet<String>,
    duplicates: usize,
}

impl Out {
    /// Writes `f` unless a family of its name is already written.
    fn emit(&mut self, f: Family) {
        if self.written.insert(f.name.clone()) {
            self.families.push(f);
        } else {
            self.duplicates += 1;
        }
    }
}

/// `family` (matched by a rule from `from`) under `to`, labels renamed.
fn renamed(family: &Family, from: &str, to: &str, labels: &[(String, String)]) -> Family {
    let rename_label = |k: &String| {
        labels
            .iter()
            .find(|(old, _)| old == k)
            .map_or_else(|| k.clone(), |(_, new)| new.clone())
    };
    // A label that stays as it is but that a rename lands on gives way to the renamed one, so
    // no series carries one label name twice (Prometheus would refuse the scrape).
    let displaced = |k: &String, all: &[(String, String)]| {
        !labels.iter().any(|(old, _)| old == k)
            && labels
                .iter()
                .any(|(old, new)| new == k && all.iter().any(|(l, _)| l == old))
    };
    Family {
        name: rules::rename_series(&family.name, from, to),
        help: family.help.clone(),
        kind: family.kind.clone(),
        unit: family.unit.clone(),
        samples: family
            .samples
            .iter()
            .map(|s| Sample {
                name: rules::rename_series(&s.name, from, to),
                labels: s
                    .labels
                    .iter()
                    .filter(|(k, _)| !displaced(k, &s.labels))
                    .map(|(k, v)| (rename_label(k), v.clone()))
                    .collect(),
                value: s.value,
                timestamp: s.timestamp,
            })
            .collect(),
    }
}

/// How the series of one quantity combine into one number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// Sum over label sets (request counts, token totals).
    Sum,
    /// The largest (a usage share: the fullest engine bounds what fits).
    Max,
}

/// One number per wanted standard name from an exposition, from exactly one source each:
/// the standard series when the text has any, else every engine series whose
/// [`Rules::canonical`] name it is (never both, so standardised output that keeps the
/// originals is not counted twice). Non-finite samples are ignored; a quantity with no
/// sample is `None`. Malformed lines are skipped.
pub fn values(rules: &Rules, exposition: &str, wanted: &[(&str, Combine)]) -> Vec<Option<f64>> {
    // (from the standard series, from engine series) per wanted name.
    let mut acc: Vec<(Option<f64>, Option<f64>)> = vec![(None, None); wanted.len()];
    let fold = |slot: &mut Option<f64>, v: f64, how: Combine| {
        *slot = Some(match (*slot, how) {
            (None, _) => v,
            (Some(x), Combine::Sum) => x + v,
            (Some(x), Combine::Max) => x.max(v),
        });
    };
    for line in exposition.lines() {
        let Some(s) = expo::sample(line) else {
            continue;
        };
        if !s.value.is_finite() {
            continue;
        }
        let canonical = rules.canonical(&s.name);
        for (i, (name, how)) in wanted.iter().enumerate() {
            if s.name == *name {
                fold(&mut acc[i].0, s.value, *how);
            } else if canonical == Some(*name) {
                fold(&mut acc[i].1, s.value, *how);
            }
        }
    }
    acc.into_iter().map(|(std, raw)| std.or(raw)).collect()
}
