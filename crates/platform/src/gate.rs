//! The diagnostics gate of `brix up`: a command replica whose GPUs fail diagnostics is not
//! started, and a running one whose GPU turns bad is drained and stopped.
//!
//! Two halves: [`blocked`] is the pure decision (which models' replicas may run given one
//! diagnosis), and [`Gate`] the driver (runs the diagnosis on a blocking thread, before every
//! start and every `interval_s`, and tells the supervisors through a watch channel). The
//! diagnosis itself is a function the caller supplies ([`Diagnose`]; `brix up` wires
//! `brix_diag::diagnose` and `Report::gpu_ok`), so the platform does not link NVML.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::watch;

/// Longest reason a replica shows (one line): a diagnosis may list many findings.
pub const REASON_MAX: usize = 240;

/// A diagnosis not done within this fails every gated model (NVML calls take milliseconds;
/// a hung driver must not hold replicas in `starting` forever). No second one starts while
/// it still runs.
pub const DIAGNOSIS_TIMEOUT: Duration = Duration::from_secs(30);

/// `diag:` in the fleet file: how `brix up` checks GPUs before starting replicas on them.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiagSpec {
    /// The NVML library to load (default: `BRIX_NVML_LIBRARY`, else `libnvidia-ml.so.1`).
    #[serde(default)]
    pub nvml_lib: Option<PathBuf>,
    /// Cards the node must have; fewer fails every GPU (a card fell off the bus).
    #[serde(default)]
    pub expected_cards: Option<u32>,
    /// Seconds between checks of running replicas (and of failed ones, to start them again).
    #[serde(default = "default_interval_s")]
    pub interval_s: f64,
    /// Off switch; default on when the section is present.
    #[serde(default)]
    pub enabled: Option<bool>,
}

fn default_interval_s() -> f64 {
    60.0
}

impl Default for DiagSpec {
    fn default() -> Self {
        Self {
            nvml_lib: None,
            expected_cards: None,
            interval_s: default_interval_s(),
            enabled: None,
        }
    }
}

impl DiagSpec {
    /// Checks what serde cannot; errors name the field under `diag`.
    pub fn check(&self) -> Result<(), brix_api::FieldError> {
        if !(self.interval_s.is_finite() && (0.1..=86_400.0).contains(&self.interval_s)) {
            return Err(brix_api::FieldError::new(
                "diag.interval_s",
                "must be a number of seconds in 0.1..=86400",
            ));
        }
        Ok(())
    }
}

/// One diagnosis, asked GPU by GPU: `Ok` when the GPU may be used, else why not (one line).
pub type GpuVerdict = Arc<dyn Fn(u32) -> Result<(), String> + Send + Sync>;

/// Runs one diagnosis (blocking: NVML calls); `brix up` passes `brix_diag::diagnose`.
pub type Diagnose = Arc<dyn Fn() -> GpuVerdict + Send + Sync>;

/// The gate's settings for the local platform.
#[derive(Clone)]
pub struct GateConfig {
    /// The models to gate and their GPUs (NVML indices); others are never held back.
    pub models: BTreeMap<String, Vec<u32>>,
    /// Time between periodic checks.
    pub interval: Duration,
    /// The diagnosis.
    pub diagnose: Diagnose,
}

impl std::fmt::Debug for GateConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateConfig")
            .field("models", &self.models)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// The pure decision: for each model (with the GPUs its replicas use), the reason its
/// replicas may not run under this diagnosis; a model absent from the answer may run. The
/// reason names each failing GPU with its verdict (`GPU n: ...`, unless the verdict already
/// names the GPU or the node; a node failure given for every GPU appears once), on one line
/// of at most [`REASON_MAX`] bytes.
pub fn blocked(
    models: &BTreeMap<String, Vec<u32>>,
    gpu_ok: &dyn Fn(u32) -> Result<(), String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (model, gpus) in models {
        let mut failing: Vec<String> = Vec::new();
        for &g in gpus {
            let Err(why) = gpu_ok(g) else { continue };
            let why = if why.starts_with(&format!("GPU {g}")) || why.starts_with("node") {
                why
            } else {
                format!("GPU {g}: {why}")
            };
            if !failing.contains(&why) {
                failing.push(why);
            }
        }
        if !failing.is_empty() {
            out.insert(model.clone(), one_line(&failing.join("; ")));
        }
    }
    out
}

/// `s` on one line (control characters become spaces), cut to [`REASON_MAX`] bytes.
fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::adapters::engine::cut(flat.trim(), REASON_MAX)
}

/// What the supervisors watch: the models held back, and how many diagnoses have run.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Verdicts {
    pub(crate) blocked: BTreeMap<String, String>,
    pub(crate) checks: u64,
}

/// The driver: runs diagnoses (one at a time, a fresh one shared by everyone waiting) and
/// publishes the decision.
pub(crate) struct Gate {
    cfg: GateConfig,
    tx: watch::Sender<Verdicts>,
    /// When the last diagnosis started; held while one runs.
    last: tokio::sync::Mutex<Option<Instant>>,
    /// A diagnosis past its timeout is still running on its blocking thread.
    stuck: Arc<std::sync::atomic::AtomicBool>,
    timeout: Duration,
}

impl Gate {
    pub(crate) fn new(cfg: GateConfig) -> Self {
        Self {
            cfg,
            tx: watch::Sender::new(Verdicts::default()),
            last: tokio::sync::Mutex::new(None),
            stuck: Arc::default(),
            timeout: DIAGNOSIS_TIMEOUT,
        }
    }

    /// Whether replicas of `model` are gated.
    pub(crate) fn gates(&self, model: &str) -> bool {
        self.cfg.models.get(model).is_some_and(|g| !g.is_empty())
    }

    pub(crate) fn interval(&self) -> Duration {
        self.cfg.interval
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Verdicts> {
        self.tx.subscribe()
    }

    /// Makes sure a diagnosis that started at or after `since` has been published, running
    /// one if needed (concurrent callers share it).
    pub(crate) async fn check_since(&self, since: Instant) {
        let mut last = self.last.lock().await;
        if last.is_some_and(|t| t >= since) {
            return;
        }
        let started = Instant::now();
        let all = |why: String| -> BTreeMap<String, String> {
            let why = one_line(&why);
            self.cfg
                .models
                .keys()
                .map(|m| (m.clone(), why.clone()))
                .collect()
        };
        let blocked = if self.stuck.load(std::sync::atomic::Ordering::SeqCst) {
            all(format!(
                "GPU diagnostics: the previous diagnosis has not finished after {} s",
                self.timeout.as_secs()
            ))
        } else {
            let diagnose = self.cfg.diagnose.clone();
            let models = self.cfg.models.clone();
            let stuck = self.stuck.clone();
            stuck.store(true, std::sync::atomic::Ordering::SeqCst);
            let task = tokio::task::spawn_blocking(move || {
                let verdict = diagnose();
                let b = blocked(&models, &*verdict);
                stuck.store(false, std::sync::atomic::Ordering::SeqCst);
                b
            });
            match tokio::time::timeout(self.timeout, task).await {
                Ok(Ok(b)) => b,
                // A panicking diagnosis is a failed one: nothing gated may run.
                Ok(Err(e)) => {
                    self.stuck.store(false, std::sync::atomic::Ordering::SeqCst);
                    all(format!("GPU diagnostics failed: {e}"))
                }
                Err(_) => all(format!(
                    "GPU diagnostics did not finish within {} s",
                    self.timeout.as_secs()
                )),
            }
        };
        for (model, why) in &blocked {
            if self.tx.borrow().blocked.get(model) != Some(why) {
                tracing::warn!(model = %model, reason = %why, "GPU diagnostics: replicas may not run");
            }
        }
        self.tx.send_modify(|v| {
            v.blocked = blocked;
            v.checks += 1;
        });
        *last = Some(started);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models(list: &[(&str, &[u32])]) -> BTreeMap<String, Vec<u32>> {
        list.iter()
            .map(|(m, g)| (m.to_string(), g.to_vec()))
            .collect()
    }

    #[test]
    fn a_model_on_any_failing_gpu_is_blocked_with_every_reason() {
        let m = models(&[("a", &[0]), ("b", &[1, 2]), ("c", &[3])]);
        let bad = |g: u32| match g {
            1 => Err("GPU 1: ECC uncorrectable errors: 4".to_string()),
            2 => Err("PCIe link x8,\nexpected x16".to_string()),
            _ => Ok(()),
        };
        let b = blocked(&m, &bad);
        assert_eq!(b.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(
            b["b"],
            "GPU 1: ECC uncorrectable errors: 4; GPU 2: PCIe link x8, expected x16"
        );
        assert!(blocked(&m, &|_| Ok(())).is_empty());
        let node = blocked(&m, &|_| Err("node: NVML: driver not loaded".to_string()));
        assert_eq!(node.len(), 3);
        assert_eq!(node["b"], "node: NVML: driver not loaded");
    }

    #[test]
    fn reasons_are_one_bounded_line() {
        let m = models(&[("a", &(0..50).collect::<Vec<_>>())]);
        let b = blocked(&m, &|_| Err("x\n".repeat(40)));
        assert!(b["a"].len() <= REASON_MAX + "…".len(), "{}", b["a"].len());
        assert!(!b["a"].contains('\n'));
    }

    #[test]
    fn the_section_is_checked() {
        let spec: DiagSpec = serde_yaml_ng::from_str("{expected_cards: 8}").expect("valid");
        assert_eq!(spec.interval_s, 60.0);
        assert!(spec.check().is_ok());
        let bad: DiagSpec = serde_yaml_ng::from_str("{interval_s: 0}").expect("parses");
        assert!(
            bad.check()
                .expect_err("interval_s 0 is refused")
                .to_string()
                .contains("diag.interval_s")
        );
        assert!(serde_yaml_ng::from_str::<DiagSpec>("{interval: 5}").is_err());
    }

    #[tokio::test]
    async fn concurrent_starts_share_one_diagnosis_and_a_panic_blocks_everything() {
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = runs.clone();
        let gate = Arc::new(Gate::new(GateConfig {
            models: models(&[("a", &[0])]),
            interval: Duration::from_secs(60),
            diagnose: Arc::new(move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
                Arc::new(|_| Ok(()))
            }),
        }));
        let since = Instant::now();
        let (a, b) = (gate.clone(), gate.clone());
        tokio::join!(a.check_since(since), b.check_since(since));
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(gate.subscribe().borrow().checks, 1);
        let panicky = Gate::new(GateConfig {
            models: models(&[("a", &[0])]),
            interval: Duration::from_secs(60),
            diagnose: Arc::new(|| panic!("driver gone")),
        });
        panicky.check_since(Instant::now()).await;
        let v = panicky.subscribe().borrow().clone();
        assert!(
            v.blocked["a"].starts_with("GPU diagnostics failed"),
            "{v:?}"
        );
    }

    #[tokio::test]
    async fn a_hung_diagnosis_times_out_and_is_not_started_again_while_it_runs() {
        let release = Arc::new(std::sync::Barrier::new(2));
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (r, n) = (release.clone(), runs.clone());
        let mut gate = Gate::new(GateConfig {
            models: models(&[("a", &[0])]),
            interval: Duration::from_secs(60),
            diagnose: Arc::new(move || {
                // Only the first diagnosis hangs (until the test releases it).
                if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    r.wait();
                }
                Arc::new(|_| Ok(()))
            }),
        });
        gate.timeout = Duration::from_millis(50);
        gate.check_since(Instant::now()).await;
        let v = gate.subscribe().borrow().clone();
        assert!(v.blocked["a"].contains("did not finish within"), "{v:?}");
        gate.check_since(Instant::now()).await;
        let v = gate.subscribe().borrow().clone();
        assert!(v.blocked["a"].contains("has not finished"), "{v:?}");
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        // The hung call returns: the next check runs a diagnosis and passes.
        release.wait();
        let stuck = gate.stuck.clone();
        brix_testkit::eventually("the stuck flag clears", Duration::from_secs(10), || {
            let stuck = stuck.clone();
            async move { !stuck.load(std::sync::atomic::Ordering::SeqCst) }
        })
        .await;
        gate.check_since(Instant::now()).await;
        assert!(gate.subscribe().borrow().blocked.is_empty());
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
