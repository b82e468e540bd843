//! `brix bench sim --adapters SPEC`: the adapter flags → an `AdapterSim` (the
//! mix drawn over the workload's requests with the run's seed), and each run's
//! `adapters.json` (per-adapter counts, placement events) and summary line.

use std::path::Path;

use brix_bench::vsim::SimRun;
use brix_bench::vsim::adapters::{AdapterEventKind, AdapterMix, AdapterSim, AdapterSpec};
use clap::Args;

use super::{SimCliError, json, write};

/// Largest adapter file read (one name and weight a line).
const MAX_FILE_BYTES: u64 = 16 << 20;

/// The adapter flags of `brix bench sim`.
#[derive(Debug, Args)]
pub(crate) struct LoraArgs {
    /// Requests name LoRA adapters: `uniform:K`, `zipf:K:S` (adapter k of K drawn with weight
    /// 1/k^S, seeded), or `file:PATH` (one adapter a line, `NAME[,WEIGHT]`, `#` comments).
    /// Engines then run with LoRA on and adapters are placed by the controller's policy.
    #[arg(long)]
    pub(crate) adapters: Option<String>,
    /// vLLM's --max-loras: distinct adapters in one batch.
    #[arg(long)]
    pub(crate) max_loras: Option<u32>,
    /// vLLM's --max-cpu-loras: adapters resident on an engine (placement capacity; default
    /// --max-loras, as vLLM).
    #[arg(long)]
    pub(crate) max_cpu_loras: Option<u32>,
    /// vLLM's --max-lora-rank: the adapters' rank, which sizes their weights and load time.
    #[arg(long)]
    pub(crate) max_lora_rank: Option<u32>,
    /// Each adapter's `replicas`: a count (more when hot), or `all` (every pod, as AIBrix).
    #[arg(long, default_value = "1")]
    adapter_replicas: String,
    /// Requests/s one replica of an adapter carries before it is hot and gets another
    /// (default: the placement policy's, 10).
    #[arg(long)]
    adapter_hot_rps: Option<f64>,
    /// Seconds between placement rounds (the controller's loop).
    #[arg(long, default_value_t = 2.0)]
    adapter_tick_s: f64,
}

impl LoraArgs {
    /// The adapters of a run over `requests` requests, or None without `--adapters`.
    pub(crate) fn build(
        &self,
        requests: usize,
        seed: u64,
    ) -> Result<Option<AdapterSim>, SimCliError> {
        let Some(spec) = &self.adapters else {
            return Ok(None);
        };
        let flag = |e: &dyn std::fmt::Display| SimCliError::Flag(format!("--adapters: {e}"));
        let mix = match AdapterSpec::parse(spec).map_err(|e| flag(&e))? {
            AdapterSpec::Mix(m) => m,
            AdapterSpec::File(path) => {
                let len = std::fs::metadata(&path)
                    .map_err(|e| flag(&format!("{path}: {e}")))?
                    .len();
                if len > MAX_FILE_BYTES {
                    return Err(flag(&format!("{path}: larger than {MAX_FILE_BYTES} bytes")));
                }
                let text =
                    std::fs::read_to_string(&path).map_err(|e| flag(&format!("{path}: {e}")))?;
                AdapterMix::parse_file(&text).map_err(|e| flag(&format!("{path}: {e}")))?
            }
        };
        let mut a = AdapterSim::new(&mix, requests, seed);
        a.replicas = match self.adapter_replicas.trim() {
            "all" => None,
            n => Some(n.parse().map_err(|_| {
                SimCliError::Flag(format!(
                    "--adapter-replicas: expected a count or `all`, got {n:?}"
                ))
            })?),
        };
        if let Some(hot) = self.adapter_hot_rps {
            if !(hot.is_finite() && hot > 0.0) {
                return Err(SimCliError::Flag(
                    "--adapter-hot-rps must be positive".into(),
                ));
            }
            a.policy.hot_rps_per_replica = hot;
        }
        if !(self.adapter_tick_s.is_finite() && self.adapter_tick_s > 0.0) {
            return Err(SimCliError::Flag(
                "--adapter-tick-s must be positive".into(),
            ));
        }
        a.tick_s = self.adapter_tick_s;
        Ok(Some(a))
    }
}

/// `adapters.json` in the run's directory, when the run had adapters.
pub(crate) fn write_report(dir: &Path, run: &SimRun) -> Result<(), SimCliError> {
    let Some(rep) = &run.adapters else {
        return Ok(());
    };
    let path = dir.join("adapters.json");
    write(&path, &json(&path, rep, true)?)
}

/// One line on the run's adapters for summary.md, or None without adapters.
pub(crate) fn summary_line(label: &str, run: &SimRun) -> Option<String> {
    let rep = run.adapters.as_ref()?;
    let served = rep.per_adapter.values().filter(|c| c.ok > 0).count();
    let max_resident = rep.max_resident.iter().max().copied().unwrap_or(0);
    Some(format!(
        "- {label}: {} adapters ({served} served), {} loads, {} unloads, {} drains, most resident on one engine {max_resident}, {} requests held ({} timed out), {} placement rounds",
        rep.per_adapter.len(),
        rep.count(AdapterEventKind::Load),
        rep.count(AdapterEventKind::Unload),
        rep.count(AdapterEventKind::Drain),
        rep.held,
        rep.held_timed_out,
        rep.rounds,
    ))
}

/// Sets LoRA on the engines when the run has adapters.
pub(crate) fn engine_settings(a: &LoraArgs, s: &mut brix_sim::EngineSettings) {
    s.enable_lora = a.adapters.is_some();
    s.max_loras = a.max_loras;
    s.max_cpu_loras = a.max_cpu_loras;
    s.max_lora_rank = a.max_lora_rank;
}
