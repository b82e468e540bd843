//! Models and their engines: what the fleet serves and how one replica runs.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::error::{FieldError, fail};
use crate::names::model_name_problem;

/// Most replicas of one model; a local fleet beyond this is a typo, not a plan.
pub const MAX_REPLICAS: u32 = 64;

/// One model the fleet serves.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Name clients send as `model`; also names the replicas' logs and metrics.
    pub name: String,
    /// Replicas to start with (an autoscaler may change it later); 0 keeps the model declared
    /// but stopped.
    #[serde(default = "one")]
    pub replicas: u32,
    /// How each replica runs.
    pub engine: EngineSpec,
    /// Labels every replica carries besides `model.aibrix.ai/name` and `brix.dev/replica`:
    /// what a ModelAdapter's `podSelector` matches. AIBrix's layout: `model.aibrix.ai/name:
    /// <served>` makes this entry one deployment of the model clients call `<served>` (several
    /// entries may serve one name, e.g. one per GPU type), and `model.aibrix.ai/min_replicas`
    /// is the optimizer's floor for it.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The label AIBrix's GPU optimizer reads as a deployment's fewest replicas.
pub const MIN_REPLICAS_LABEL: &str = "model.aibrix.ai/min_replicas";

/// How a replica of the model runs: exactly one of `sim` or `command` (externally tagged map key).
///
/// Deserialized by hand: `serde_yaml_ng` 0.10 reads derived enums only from YAML tags
/// (`!sim`), and a one-key map (`sim: {...}`) is what users write. The value is parsed in
/// place, so its errors keep their path and line; `sim:` with no value means all defaults.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineSpec {
    /// The Brix engine simulator, in process: no GPU needed.
    Sim(SimEngine),
    /// Any OpenAI-compatible engine started as a child process (vLLM, SGLang, `brix sim`).
    Command(CommandEngine),
}

/// A simulated vLLM engine; field names and meanings follow `brix sim`'s flags.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimEngine {
    /// GPU profile (`brix sim --gpu`).
    #[serde(default = "default_gpu")]
    pub gpu: String,
    /// Model profile (`brix sim --model-profile`).
    #[serde(default = "default_model_profile")]
    pub model_profile: String,
    /// Most requests in one batch; unset keeps vLLM's default for the GPU.
    #[serde(default)]
    pub max_num_seqs: Option<u32>,
    /// Longest prompt plus output; unset keeps the model profile's.
    #[serde(default)]
    pub max_model_len: Option<u32>,
    /// Exactly this many KV blocks instead of deriving them from memory.
    #[serde(default)]
    pub num_gpu_blocks_override: Option<u32>,
    /// Accept LoRA adapters (needed by a ModelAdapter that targets this model).
    #[serde(default)]
    pub enable_lora: bool,
    /// Distinct adapters in one batch (needs `enable_lora`).
    #[serde(default)]
    pub max_loras: Option<u32>,
    /// Adapters kept in host memory (vLLM's `--max-cpu-loras`; default `max_loras`).
    #[serde(default)]
    pub max_cpu_loras: Option<u32>,
    /// Largest adapter rank accepted (vLLM's `--max-lora-rank`).
    #[serde(default)]
    pub max_lora_rank: Option<u32>,
    /// Natural answer lengths, as `brix sim --output-len`: `fixed:N`, `uniform:LO:HI`,
    /// `exp:MEAN` or `lognormal:MEDIAN:SIGMA`.
    #[serde(default)]
    pub output_len: Option<String>,
    /// Seed for every random draw, so a run can be repeated.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Seconds each replica answers `/health` with 503 after it starts (`brix sim
    /// --startup-delay`): a stand-in for loading weights, so a new replica's start-up is real.
    #[serde(default)]
    pub startup_delay_s: Option<f64>,
    /// Model loading weights at start-up (`cold_start: {}` for the defaults): each replica
    /// stays unready for [`ColdStart::seconds`]; `startup_delay_s`, when set, overrides it.
    #[serde(default)]
    pub cold_start: Option<ColdStart>,
    /// A runtime sidecar beside each replica (`brix up` runs it in process).
    #[serde(default)]
    pub runtime: Option<crate::RuntimeSpec>,
}

/// A replica's cold start: weights bytes (from the model profile: params × dtype bytes per
/// GPU) over a load throughput, plus a fixed engine initialisation.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ColdStart {
    /// Weights-load throughput in GB/s; default [`brix_sim::DEFAULT_LOAD_GBPS`] (what
    /// brix-loader measured, bench/results/loader.md).
    #[serde(default)]
    pub load_gbps: Option<f64>,
    /// Seconds of engine initialisation besides loading weights; default
    /// [`brix_sim::DEFAULT_ENGINE_INIT_S`].
    #[serde(default)]
    pub engine_init_s: Option<f64>,
}

impl ColdStart {
    /// Seconds from start to ready for one replica of `model` (`ModelProfile::cold_start_s`).
    pub fn seconds(&self, model: &brix_sim::ModelProfile) -> f64 {
        model.cold_start_s(
            self.load_gbps.unwrap_or(brix_sim::DEFAULT_LOAD_GBPS),
            self.engine_init_s
                .unwrap_or(brix_sim::DEFAULT_ENGINE_INIT_S),
        )
    }
}

impl SimEngine {
    /// Seconds a new replica of `model` answers 503: `startup_delay_s` when set, else the
    /// cold-start model when `cold_start` is set, else 0.
    pub fn startup_s(&self, model: &brix_sim::ModelProfile) -> f64 {
        match (self.startup_delay_s, &self.cold_start) {
            (Some(d), _) => d,
            (None, Some(c)) => c.seconds(model),
            (None, None) => 0.0,
        }
    }
}

/// An engine started as a child process, one per replica, on a port Brix picks.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandEngine {
    /// Shell command line; must contain `{port}` and may contain `{model}` (see [`Self::render`]).
    pub command: String,
    /// Extra environment variables for the process.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Seconds to wait for `/health` to answer 200 before the replica counts as failed.
    #[serde(default = "default_ready_timeout_s")]
    pub ready_timeout_s: u64,
    /// Seconds between SIGTERM and SIGKILL when the replica stops.
    #[serde(default = "default_stop_grace_s")]
    pub stop_grace_s: u64,
    /// The GPUs (NVML indices) the engine uses, checked by diagnostics before each start;
    /// unset: `CUDA_VISIBLE_DEVICES` in `env` when it is a list of indices (see [`Self::gpus`]).
    #[serde(default)]
    pub gpus: Option<Vec<u32>>,
    /// A runtime sidecar beside each replica (`brix up` runs it in process).
    #[serde(default)]
    pub runtime: Option<crate::RuntimeSpec>,
}

impl CommandEngine {
    /// The command line for one replica: `{port}` and `{model}` replaced.
    ///
    /// Model names are validated to a charset that needs no shell quoting, so the result is
    /// safe to hand to `sh -c` as is.
    pub fn render(&self, port: u16, model: &str) -> String {
        self.command
            .replace("{port}", &port.to_string())
            .replace("{model}", model)
    }

    /// The GPUs the engine uses: `gpus`, else `CUDA_VISIBLE_DEVICES` from `env` when it is a
    /// list of indices, else none.
    pub fn gpus(&self) -> Vec<u32> {
        match &self.gpus {
            Some(g) => g.clone(),
            None => self
                .env
                .get("CUDA_VISIBLE_DEVICES")
                .and_then(|v| crate::sidecar::cuda_visible_devices(v))
                .unwrap_or_default(),
        }
    }
}

impl EngineSpec {
    /// The runtime sidecar asked for beside each replica, if any.
    pub fn runtime(&self) -> Option<&crate::RuntimeSpec> {
        match self {
            Self::Sim(s) => s.runtime.as_ref(),
            Self::Command(c) => c.runtime.as_ref(),
        }
    }
}

impl ModelSpec {
    /// The model name clients send for this entry's replicas: its `model.aibrix.ai/name`
    /// label when set (the entry is then one deployment of that model), else its `name`.
    pub fn served_name(&self) -> &str {
        self.labels
            .get(crate::meta::MODEL_NAME_LABEL)
            .map_or(self.name.as_str(), String::as_str)
    }

    /// Whether the entry is a deployment of a model with another name (AIBrix's layout).
    pub fn is_deployment(&self) -> bool {
        self.served_name() != self.name
    }

    /// `model.aibrix.ai/min_replicas`, checked by [`validate_models`] (0 when absent).
    pub fn min_replicas(&self) -> u32 {
        self.labels
            .get(MIN_REPLICAS_LABEL)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The labels of one replica: the model's `labels` plus `model.aibrix.ai/name` (the served
    /// name) and `brix.dev/replica`, what a ModelAdapter's `podSelector` is matched against.
    pub fn replica_labels(&self, replica: &str) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert(
            crate::meta::MODEL_NAME_LABEL.into(),
            self.served_name().to_string(),
        );
        labels.insert(crate::meta::REPLICA_LABEL.into(), replica.into());
        labels
    }
}

impl Default for SimEngine {
    /// `brix sim` with no flags.
    fn default() -> Self {
        Self {
            gpu: default_gpu(),
            model_profile: default_model_profile(),
            max_num_seqs: None,
            max_model_len: None,
            num_gpu_blocks_override: None,
            enable_lora: false,
            max_loras: None,
            max_cpu_loras: None,
            max_lora_rank: None,
            output_len: None,
            seed: None,
            startup_delay_s: None,
            cold_start: None,
            runtime: None,
        }
    }
}

impl<'de> Deserialize<'de> for EngineSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EngineVisitor)
    }
}

struct EngineVisitor;

const ENGINES: &[&str] = &["sim", "command"];

impl<'de> Visitor<'de> for EngineVisitor {
    type Value = EngineSpec;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a map with exactly one key, `sim` or `command`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EngineSpec, A::Error> {
        let Some(key) = map.next_key::<String>()? else {
            return Err(de::Error::custom(
                "empty engine: give exactly one of `sim` or `command`",
            ));
        };
        let engine = match key.as_str() {
            "sim" => EngineSpec::Sim(map.next_value::<Option<SimEngine>>()?.unwrap_or_default()),
            "command" => EngineSpec::Command(map.next_value()?),
            other => return Err(de::Error::unknown_variant(other, ENGINES)),
        };
        if let Some(extra) = map.next_key::<String>()? {
            return Err(de::Error::custom(format!(
                "`{extra}` next to `{key}`: give exactly one of `sim` or `command`"
            )));
        }
        Ok(engine)
    }
}

fn one() -> u32 {
    1
}

fn default_gpu() -> String {
    "A100-80GB".into()
}

fn default_model_profile() -> String {
    "llama-3-8b".into()
}

fn default_ready_timeout_s() -> u64 {
    600
}

fn default_stop_grace_s() -> u64 {
    30
}

/// Checks the model list as a whole: at least one model, unique valid names, sane engines.
pub fn validate_models(models: &[ModelSpec]) -> Result<(), FieldError> {
    if models.is_empty() {
        return fail("models", "at least one model is required");
    }
    let mut seen = BTreeSet::new();
    for (i, model) in models.iter().enumerate() {
        let at = format!("models[{i}]");
        if let Some(problem) = model_name_problem(&model.name) {
            return fail(format!("{at}.name"), problem);
        }
        if !seen.insert(model.name.as_str()) {
            return fail(
                format!("{at}.name"),
                format!("'{}' is already the name of another model", model.name),
            );
        }
        if model.replicas > MAX_REPLICAS {
            return fail(
                format!("{at}.replicas"),
                format!("{} is more than {MAX_REPLICAS}", model.replicas),
            );
        }
        for (key, value) in &model.labels {
            if key == crate::meta::MODEL_NAME_LABEL {
                if let Some(problem) = model_name_problem(value) {
                    return fail(format!("{at}.labels[{key}]"), problem);
                }
                continue;
            }
            if key == MIN_REPLICAS_LABEL {
                match value.trim().parse::<u32>() {
                    Ok(n) if n <= MAX_REPLICAS => continue,
                    _ => {
                        return fail(
                            format!("{at}.labels[{key}]"),
                            format!("'{value}' is not a replica count in 0..={MAX_REPLICAS}"),
                        );
                    }
                }
            }
            if key == crate::meta::REPLICA_LABEL {
                return fail(
                    format!("{at}.labels[{key}]"),
                    "is set by Brix on every replica; choose another key",
                );
            }
            if key.is_empty() || key.len() > 253 || key.chars().any(char::is_whitespace) {
                return fail(
                    format!("{at}.labels"),
                    "keys must be 1..=253 characters without whitespace",
                );
            }
        }
        // A served name is either its own entry's name or names no other entry: a request for
        // it must reach one set of deployments.
        let served = model.served_name();
        if let Some((j, other)) = models
            .iter()
            .enumerate()
            .find(|(j, o)| *j != i && o.name == served && o.served_name() != served)
        {
            return fail(
                format!("{at}.labels[{}]", crate::meta::MODEL_NAME_LABEL),
                format!(
                    "'{served}' is models[{j}]'s name, which serves '{}'; a served name must not be another entry's name",
                    other.served_name()
                ),
            );
        }
        match &model.engine {
            EngineSpec::Sim(sim) => validate_sim(sim),
            EngineSpec::Command(cmd) => validate_command(cmd),
        }
        .map_err(|e| e.under(&format!("{at}.engine")))?;
    }
    Ok(())
}

fn validate_sim(sim: &SimEngine) -> Result<(), FieldError> {
    if sim.gpu.trim().is_empty() {
        return fail("sim.gpu", "must not be empty");
    }
    if sim.model_profile.trim().is_empty() {
        return fail("sim.model_profile", "must not be empty");
    }
    for (field, value) in [
        ("max_num_seqs", sim.max_num_seqs),
        ("max_model_len", sim.max_model_len),
        ("num_gpu_blocks_override", sim.num_gpu_blocks_override),
        ("max_loras", sim.max_loras),
        ("max_cpu_loras", sim.max_cpu_loras),
        ("max_lora_rank", sim.max_lora_rank),
    ] {
        if value == Some(0) {
            return fail(format!("sim.{field}"), "must be at least 1");
        }
    }
    if let Some(d) = sim.startup_delay_s
        && !(d.is_finite() && (0.0..=3600.0).contains(&d))
    {
        return fail(
            "sim.startup_delay_s",
            "must be a number of seconds in 0..=3600",
        );
    }
    if let Some(c) = &sim.cold_start {
        if let Some(g) = c.load_gbps
            && !(g.is_finite() && g > 0.0 && g <= 10_000.0)
        {
            return fail(
                "sim.cold_start.load_gbps",
                "must be a throughput in GB/s above 0 (at most 10000)",
            );
        }
        if let Some(s) = c.engine_init_s
            && !(s.is_finite() && (0.0..=3600.0).contains(&s))
        {
            return fail(
                "sim.cold_start.engine_init_s",
                "must be a number of seconds in 0..=3600",
            );
        }
    }
    for (field, value) in [
        ("max_loras", sim.max_loras),
        ("max_cpu_loras", sim.max_cpu_loras),
        ("max_lora_rank", sim.max_lora_rank),
    ] {
        if value.is_some() && !sim.enable_lora {
            return fail(format!("sim.{field}"), "needs enable_lora: true");
        }
    }
    if let (Some(cpu), Some(gpu)) = (sim.max_cpu_loras, sim.max_loras)
        && cpu < gpu
    {
        return fail(
            "sim.max_cpu_loras",
            format!(
                "{cpu} is less than max_loras {gpu} (vLLM requires max_cpu_loras >= max_loras)"
            ),
        );
    }
    if let Some(spec) = &sim.output_len
        && let Err(e) = spec.parse::<brix_sim::OutputLen>()
    {
        return fail("sim.output_len", e.to_string());
    }
    Ok(())
}

fn validate_command(cmd: &CommandEngine) -> Result<(), FieldError> {
    if let Some(g) = &cmd.gpus {
        crate::sidecar::validate_gpus(g)?;
    }
    if cmd.command.trim().is_empty() {
        return fail("command.command", "must not be empty");
    }
    if !cmd.command.contains("{port}") {
        return fail(
            "command.command",
            "must contain {port}, where Brix puts the port this replica listens on",
        );
    }
    for key in cmd.env.keys() {
        if key.is_empty() || key.contains(['=', '\0']) {
            return fail(
                format!("command.env[{key}]"),
                "an environment variable name must be non-empty, without '=' or NUL",
            );
        }
    }
    for (key, value) in &cmd.env {
        if value.contains('\0') {
            return fail(format!("command.env[{key}]"), "value contains NUL");
        }
    }
    if cmd.ready_timeout_s == 0 {
        return fail("command.ready_timeout_s", "must be at least 1");
    }
    Ok(())
}
