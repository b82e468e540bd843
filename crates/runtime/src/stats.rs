//! The runtime's own counters, with labels from fixed sets only (never a client's text).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// How one adapter load, unload or download ended.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome {
    /// Done.
    Success,
    /// The request was refused before anything ran (bad body, bad name, no key).
    Rejected,
    /// The artifact could not be fetched or verified.
    DownloadError,
    /// The engine refused or failed.
    EngineError,
}

const OUTCOMES: [&str; 4] = ["success", "rejected", "download_error", "engine_error"];

/// One counter per [`Outcome`].
#[derive(Default)]
pub(crate) struct ByOutcome([AtomicU64; 4]);

impl ByOutcome {
    pub(crate) fn add(&self, o: Outcome) {
        self.0[o as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything `/metrics` adds to the engine's series.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) loads: ByOutcome,
    pub(crate) unloads: ByOutcome,
    pub(crate) downloads: ByOutcome,
    /// Loads that waited for an identical one already running instead of starting their own.
    pub(crate) coalesced: AtomicU64,
    pub(crate) download_bytes: AtomicU64,
}

impl Stats {
    /// Prometheus text for the counters, plus `brix_runtime_engine_up` and the adapter count.
    pub(crate) fn render(&self, engine_up: bool, adapters: usize) -> String {
        let mut out = String::new();
        for (name, help, c) in [
            (
                "brix_runtime_adapter_loads_total",
                "Adapter load requests by result.",
                &self.loads,
            ),
            (
                "brix_runtime_adapter_unloads_total",
                "Adapter unload requests by result.",
                &self.unloads,
            ),
            (
                "brix_runtime_model_downloads_total",
                "Model downloads by result.",
                &self.downloads,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (i, label) in OUTCOMES.iter().enumerate() {
                let v = c.0[i].load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{result=\"{label}\"}} {v}");
            }
        }
        let coalesced = self.coalesced.load(Ordering::Relaxed);
        let bytes = self.download_bytes.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP brix_runtime_adapter_loads_coalesced_total Loads answered by an identical load already running.\n\
             # TYPE brix_runtime_adapter_loads_coalesced_total counter\n\
             brix_runtime_adapter_loads_coalesced_total {coalesced}\n\
             # HELP brix_runtime_artifact_bytes_total Bytes of artifacts fetched for adapter loads and model downloads.\n\
             # TYPE brix_runtime_artifact_bytes_total counter\n\
             brix_runtime_artifact_bytes_total {bytes}\n\
             # HELP brix_runtime_adapters Adapters this runtime loaded into the engine.\n\
             # TYPE brix_runtime_adapters gauge\n\
             brix_runtime_adapters {adapters}\n\
             # HELP brix_runtime_engine_up Whether the last scrape of the engine's /metrics succeeded.\n\
             # TYPE brix_runtime_engine_up gauge\n\
             brix_runtime_engine_up {}\n",
            u8::from(engine_up)
        );
        out
    }
}
