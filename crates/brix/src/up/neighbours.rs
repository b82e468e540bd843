//! What `brix up` runs beside its engines: the GPU diagnostics gate (`brix_diag`) and the
//! runtime sidecars (`brix_runtime::serve`), plugged into the local platform's hooks.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use brix_api::{MetricsMode, RuntimeEngine};
use brix_platform::FleetFile;
use brix_platform::gate::{GateConfig, GpuVerdict};
use brix_platform::sidecar::{RuntimeConfig, RuntimeLaunch};
use brix_runtime::{EngineKind, Mode, Rules};

/// The diagnostics gate for the file's gated models (None when nothing is gated): one
/// `brix_diag::diagnose` over every GPU they use, each replica asking `Report::gpu_ok`.
pub(super) fn gate(file: &FleetFile) -> Option<GateConfig> {
    let models = file.gated_models();
    if models.is_empty() {
        return None;
    }
    let spec = file.diag.clone().unwrap_or_default();
    let gpus: BTreeSet<u32> = models.values().flatten().copied().collect();
    let cfg = brix_diag::DiagConfig {
        nvml_lib: spec
            .nvml_lib
            .clone()
            .or_else(|| std::env::var_os("BRIX_NVML_LIBRARY").map(PathBuf::from)),
        expected_cards: spec.expected_cards,
        gpus: Some(gpus.into_iter().collect()),
    };
    let list: Vec<String> = models
        .iter()
        .map(|(m, g)| {
            let g: Vec<String> = g.iter().map(u32::to_string).collect();
            format!("{m} (GPU {})", g.join(","))
        })
        .collect();
    eprintln!(
        "brix up: GPU diagnostics before starting {}, every {} s",
        list.join(", "),
        spec.interval_s
    );
    Some(GateConfig {
        models,
        interval: Duration::from_secs_f64(spec.interval_s),
        diagnose: Arc::new(move || {
            let report = brix_diag::diagnose(&cfg);
            let verdict: GpuVerdict = Arc::new(move |i| report.gpu_ok(i));
            verdict
        }),
    })
}

/// How replicas' runtime sidecars are served: `brix_runtime::serve` in this process, the
/// builtin metric rules of the engine, `key` (the fleet's admin key) on every change, each
/// replica's downloads under `dir/<replica>`.
pub(super) fn runtime(key: Option<String>, dir: PathBuf) -> RuntimeConfig {
    RuntimeConfig {
        dir,
        launch: Arc::new(move |l: RuntimeLaunch| {
            let engine = match l.spec.engine {
                RuntimeEngine::Vllm => EngineKind::Vllm,
                RuntimeEngine::Sglang => EngineKind::Sglang,
            };
            let mode = match l.spec.metrics_mode {
                MetricsMode::Transform => Mode::Transform {
                    keep_original: false,
                },
                MetricsMode::KeepOriginal => Mode::Transform {
                    keep_original: true,
                },
                MetricsMode::Passthrough => Mode::Passthrough,
            };
            let cfg = brix_runtime::RuntimeConfig {
                engine_url: l.engine_url,
                engine,
                api_key: key.clone(),
                engine_api_key: None,
                models_dir: l.models_dir,
                rules: Rules::builtin(engine.as_str()).unwrap_or_else(Rules::all_builtin),
                mode,
                limits: brix_artifacts::Limits::default(),
            };
            Box::pin(brix_runtime::serve(l.listener, cfg, l.shutdown))
        }),
    }
}
