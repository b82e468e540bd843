//! The `brix up` file: the gateway's settings, the models with their engines and replica
//! counts, and AIBrix resource documents, parsed and validated once.

use std::collections::BTreeMap;
use std::path::Path;

use brix_api::{ModelSpec, Resource};
use brix_gateway::GatewayConfig;
use serde::Deserialize;

/// Everything `brix up` runs, from one YAML file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    /// The gateway's settings (the gateway config file's keys; `endpoints` is ignored: the
    /// platform feeds the gateway).
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// The models to serve.
    pub models: Vec<ModelSpec>,
    /// AIBrix resource documents: `PodAutoscaler`s run in `brix up` (see
    /// [`crate::autoscale`]); `ModelAdapter`s are validated.
    #[serde(default)]
    pub resources: Vec<Resource>,
    /// Named credentials a ModelAdapter's `credentialsSecretRef` points at: each a map of
    /// keys (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, `HF_TOKEN`, `HF_ENDPOINT`) to values, the data of a Kubernetes
    /// Secret. Never printed.
    #[serde(default)]
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// A KV cache pool started beside the engines (`kvcache: { capacity: 2GiB }`).
    #[serde(default)]
    pub kvcache: Option<crate::kvpool::KvCacheSpec>,
    /// The heterogeneous GPU optimizer: per served model, replicas per deployment (GPU type)
    /// from the gateway's demand (see [`crate::optimizer`]).
    #[serde(default)]
    pub optimizer: Option<brix_api::OptimizerSpec>,
    /// GPU diagnostics before replicas start on their GPUs (see [`crate::gate`]).
    #[serde(default)]
    pub diag: Option<crate::gate::DiagSpec>,
}

/// A fleet file that cannot run; the message names the file, the field and, where the parser
/// knows it, the line.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid YAML for the schema (serde names the field path and the line).
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        source: serde_yaml_ng::Error,
    },
    /// Parsed, but a field's value is not acceptable.
    #[error("{path}: {source}")]
    Invalid {
        /// The file.
        path: String,
        /// The field and why.
        source: brix_api::FieldError,
    },
    /// A PodAutoscaler this fleet cannot run (the message names the field).
    #[error("{path}: {why}")]
    Autoscaler {
        /// The file.
        path: String,
        /// The field and why.
        why: String,
    },
    /// The gateway settings are inconsistent.
    #[error("{path}: gateway: {source}")]
    Gateway {
        /// The file.
        path: String,
        /// Why.
        source: brix_gateway::ConfigError,
    },
}

impl FleetFile {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, FleetError> {
        let text = std::fs::read_to_string(path).map_err(|source| FleetError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses and validates `text`; `name` is what errors call the file.
    pub fn parse(name: &str, text: &str) -> Result<Self, FleetError> {
        let path = || name.to_string();
        let file: Self = serde_yaml_ng::from_str(text).map_err(|source| FleetError::Parse {
            path: path(),
            source,
        })?;
        brix_api::validate_models(&file.models).map_err(|source| FleetError::Invalid {
            path: path(),
            source,
        })?;
        // Entries (deployments) and the names they serve.
        let mut names: Vec<&str> = file.models.iter().map(|m| m.name.as_str()).collect();
        for m in &file.models {
            if !names.contains(&m.served_name()) {
                names.push(m.served_name());
            }
        }
        brix_api::validate_resources(&file.resources, &names).map_err(|source| {
            FleetError::Invalid {
                path: path(),
                source,
            }
        })?;
        crate::autoscale::plan(&file, name)?;
        file.check_adapters()
            .map_err(|source| FleetError::Invalid {
                path: path(),
                source,
            })?;
        file.check_kv_events()
            .map_err(|source| FleetError::Invalid {
                path: path(),
                source,
            })?;
        if let Some(o) = &file.optimizer {
            o.validate(&file.models)
                .map_err(|source| FleetError::Invalid {
                    path: path(),
                    source: source.under("optimizer"),
                })?;
        }
        if let Some(d) = &file.diag {
            d.check().map_err(|source| FleetError::Invalid {
                path: path(),
                source,
            })?;
        }
        if let Some(k) = &file.kvcache {
            k.check().map_err(|source| FleetError::Invalid {
                path: path(),
                source,
            })?;
        }
        file.gateway
            .validate()
            .map_err(|source| FleetError::Gateway {
                path: path(),
                source,
            })?;
        Ok(file)
    }
}

impl FleetFile {
    /// The models GPU diagnostics gate, with their GPUs: command engines with `gpus:` (or
    /// `CUDA_VISIBLE_DEVICES` indices in `env`), when the gate is on: `diag.enabled`, which
    /// defaults to on with a `diag:` section; without one, only engines with an explicit
    /// `gpus:` turn it on (an `env` alone does not, so an existing file behaves as before).
    pub fn gated_models(&self) -> BTreeMap<String, Vec<u32>> {
        let enabled = match &self.diag {
            Some(d) => d.enabled.unwrap_or(true),
            None => self.models.iter().any(|m| {
                matches!(&m.engine, brix_api::EngineSpec::Command(c) if c.gpus.as_ref().is_some_and(|g| !g.is_empty()))
            }),
        };
        if !enabled {
            return BTreeMap::new();
        }
        self.models
            .iter()
            .filter_map(|m| match &m.engine {
                brix_api::EngineSpec::Command(c) => Some((m.name.clone(), c.gpus())),
                brix_api::EngineSpec::Sim(_) => None,
            })
            .filter(|(_, g)| !g.is_empty())
            .collect()
    }

    /// Models whose replicas publish KV events (`gateway.kv_events.models`, enabled).
    pub fn kv_events_models(&self) -> std::collections::BTreeSet<String> {
        let kv = &self.gateway.kv_events;
        self.models
            .iter()
            .filter(|m| kv.model(&m.name).is_some())
            .map(|m| m.name.clone())
            .collect()
    }

    /// Each model under `gateway.kv_events` is served here; an engine command says where its
    /// `--kv-events-config` goes (`{kv_events_config}`; a `sim:` engine is configured directly).
    pub fn check_kv_events(&self) -> Result<(), brix_api::FieldError> {
        for (i, k) in self.gateway.kv_events.models.iter().enumerate() {
            let field = format!("gateway.kv_events.models[{i}].name");
            if self
                .models
                .iter()
                .any(|m| m.is_deployment() && (m.name == k.name || m.served_name() == k.name))
            {
                return Err(brix_api::FieldError::new(
                    field,
                    format!(
                        "'{}' is served by deployments (label model.aibrix.ai/name); KV events are not available for such models yet",
                        k.name
                    ),
                ));
            }
            let Some((j, m)) = self
                .models
                .iter()
                .enumerate()
                .find(|(_, m)| m.name == k.name)
            else {
                return Err(brix_api::FieldError::new(
                    field,
                    format!("'{}' is not a model of this fleet", k.name),
                ));
            };
            if !k.enabled {
                continue;
            }
            if let brix_api::EngineSpec::Command(c) = &m.engine
                && !c.command.contains(crate::runner::KV_EVENTS_PLACEHOLDER)
            {
                return Err(brix_api::FieldError::new(
                    format!("models[{j}].engine.command"),
                    "must contain {kv_events_config}, where Brix puts the engine's --kv-events-config (the model is under gateway.kv_events)",
                ));
            }
        }
        Ok(())
    }

    /// What a ModelAdapter needs of this fleet beyond its own fields: the secret it names
    /// exists, and a simulated base model has LoRA enabled.
    pub fn check_adapters(&self) -> Result<(), brix_api::FieldError> {
        for (i, r) in self.resources.iter().enumerate() {
            let Resource::ModelAdapter(a) = r else {
                continue;
            };
            check_adapter(a, &self.models, &self.secrets)
                .map_err(|e| e.under(&format!("resources[{i}]")))?;
        }
        Ok(())
    }
}

/// One adapter's checks against the fleet (also run on `PUT /brix/adapters/NAME`).
pub fn check_adapter(
    a: &brix_api::ModelAdapter,
    models: &[ModelSpec],
    secrets: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<(), brix_api::FieldError> {
    let fail = |field: &str, why: String| Err(brix_api::FieldError::new(field, why));
    if let Some(secret) = &a.spec.credentials_secret_ref
        && !secrets.contains_key(&secret.name)
    {
        return fail(
            "spec.credentialsSecretRef.name",
            format!("no secret '{}' in the file's `secrets`", secret.name),
        );
    }
    let base = a.target_model().unwrap_or_default();
    if models
        .iter()
        .any(|m| m.is_deployment() && (m.name == base || m.served_name() == base))
    {
        return fail(
            "spec.baseModel",
            format!(
                "'{base}' is served by deployments (label model.aibrix.ai/name); LoRA adapters are not available for such models yet"
            ),
        );
    }
    if let Some(m) = models.iter().find(|m| m.name == base)
        && let brix_api::EngineSpec::Sim(sim) = &m.engine
        && !sim.enable_lora
    {
        return fail(
            "spec.baseModel",
            format!("model '{base}' has sim.enable_lora false; its replicas cannot load adapters"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match FleetFile::parse("f.yaml", text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_files_name_the_field() {
        let ok = "models:\n  - name: a\n    replicas: 2\n    engine:\n      sim: {gpu: H100}\n";
        assert!(FleetFile::parse("f.yaml", ok).is_ok());
        let cases = [
            (
                "models:\n  - name: a\n    replica: 2\n    engine:\n      sim: {}\n",
                "replica",
            ),
            (
                "models:\n  - name: a\n    replicas: two\n    engine:\n      sim: {}\n",
                "line 3",
            ),
            (
                "models:\n  - name: a\n    engine:\n      command: {command: 'serve'}\n",
                "models[0].engine.command",
            ),
            (
                "models:\n  - name: a\n    engine: {sim: {}}\n  - name: a\n    engine: {sim: {}}\n",
                "models[1].name",
            ),
            (
                "gateway:\n  routing:\n    default_strategy: fastest\nmodels:\n  - name: a\n    engine: {sim: {}}\n",
                "fastest",
            ),
        ];
        for (text, needle) in cases {
            let e = err(text);
            assert!(e.starts_with("f.yaml: "), "{e}");
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        }
    }

    #[test]
    fn gated_models_follow_gpus_env_and_the_diag_section() {
        let file = |extra: &str, a: &str| {
            format!(
                "{extra}models:\n  - name: a\n    engine: {{command: {{command: 'x {{port}}', {a}}}}}\n  - name: b\n    engine: {{command: {{command: 'x {{port}}', env: {{CUDA_VISIBLE_DEVICES: '2,3'}}}}}}\n  - name: c\n    engine: {{sim: {{}}}}\n"
            )
        };
        let gated = |text: &str| {
            FleetFile::parse("f.yaml", text)
                .expect("valid")
                .gated_models()
                .into_iter()
                .collect::<Vec<_>>()
        };
        let both = vec![("a".to_string(), vec![0, 1]), ("b".to_string(), vec![2, 3])];
        assert_eq!(gated(&file("", "gpus: [0, 1]")), both);
        assert!(
            gated(&file("", "env: {}")).is_empty(),
            "no section, no gpus:"
        );
        assert_eq!(gated(&file("diag: {}\n", "gpus: [0, 1]")), both);
        assert_eq!(
            gated(&file("diag: {interval_s: 5}\n", "env: {}")),
            both[1..]
        );
        assert!(gated(&file("diag: {enabled: false}\n", "gpus: [0, 1]")).is_empty());
        let e = err(&file("diag: {interval_s: -1}\n", "gpus: [0]"));
        assert!(e.contains("diag.interval_s"), "{e}");
        let e = err(&file("", "gpus: [0, 0]"));
        assert!(e.contains("models[0].engine.command.gpus"), "{e}");
        let rt = "models:\n  - name: a\n    engine: {sim: {runtime: {engine: sglang, port: 9000, metrics_mode: passthrough}}}\n";
        let f = FleetFile::parse("f.yaml", rt).expect("valid");
        let spec = f.models[0].engine.runtime().expect("runtime");
        assert_eq!(spec.engine, brix_api::RuntimeEngine::Sglang);
        assert_eq!(spec.metrics_mode, brix_api::MetricsMode::Passthrough);
        let e = err("models:\n  - name: a\n    engine: {sim: {runtime: {engine: trt}}}\n");
        assert!(e.contains("trt"), "{e}");
    }

    #[test]
    fn kv_event_models_need_an_engine_command_with_the_placeholder() {
        let file = |engine: &str, kv: &str| {
            format!(
                "gateway:\n  kv_events:\n    models: [{kv}]\nmodels:\n  - name: a\n    engine: {engine}\n"
            )
        };
        let with = "{command: {command: 'brix sim --port {port} {kv_events_config}'}}";
        let without = "{command: {command: 'brix sim --port {port}'}}";
        let f = FleetFile::parse("f.yaml", &file(with, "{name: a}")).expect("valid");
        assert_eq!(f.kv_events_models().into_iter().collect::<Vec<_>>(), ["a"]);
        assert!(FleetFile::parse("f.yaml", &file("{sim: {}}", "{name: a}")).is_ok());
        let off = FleetFile::parse("f.yaml", &file(without, "{name: a, enabled: false}"));
        assert!(off.is_ok_and(|f| f.kv_events_models().is_empty()));
        let cases = [
            (
                file(without, "{name: a}"),
                "models[0].engine.command: must contain {kv_events_config}",
            ),
            (
                file(with, "{name: b}"),
                "gateway.kv_events.models[0].name: 'b' is not a model",
            ),
            (file(with, "{name: a}, {name: a}"), "listed twice"),
        ];
        for (text, needle) in cases {
            let e = err(&text);
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        }
        let json = crate::kv_events_config(5557, 5558);
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["endpoint"], "tcp://*:5557");
        assert_eq!(v["replay_endpoint"], "tcp://*:5558");
        assert!(!json.contains('\''), "fits in single quotes");
    }

    /// A PodAutoscaler the local fleet cannot run is refused at load, naming the field.
    #[test]
    fn autoscalers_this_fleet_cannot_run_name_the_field() {
        let file = |engine: &str, strategy: &str, extra: &str| {
            format!(
                "models:\n  - name: a\n    engine: {engine}\nresources:\n  - apiVersion: autoscaling.aibrix.ai/v1alpha1\n    kind: PodAutoscaler\n    metadata:\n      name: a-scaler\n{extra}    spec:\n      scaleTargetRef: {{name: a}}\n      maxReplicas: 4\n      scalingStrategy: {strategy}\n      metricsSources: [{{metricSourceType: pod, targetMetric: num_requests_running, targetValue: '8'}}]\n"
            )
        };
        let command = "{command: {command: 'serve --port {port}'}}";
        let sim = "{sim: {gpu: H100}}";
        assert!(FleetFile::parse("f.yaml", &file(sim, "SLO", "")).is_ok());
        let e = err(&file(command, "SLO", ""));
        assert!(
            e.starts_with("f.yaml: resources[0].spec.scalingStrategy: SLO needs"),
            "{e}"
        );
        assert!(e.contains("engine command"), "{e}");
        assert!(FleetFile::parse("f.yaml", &file(command, "KPA", "")).is_ok());
        let annotated = "      annotations:\n        autoscaling.brix.dev/sync-period: soon\n";
        let e = err(&file(sim, "KPA", annotated));
        assert!(
            e.contains("resources[0].metadata.annotations[autoscaling.brix.dev/sync-period]"),
            "{e}"
        );
        let ok = "      annotations:\n        autoscaling.brix.dev/sync-period: 1s\n";
        let f = FleetFile::parse("f.yaml", &file(sim, "KPA", ok)).expect("valid");
        let plan = crate::autoscale::plan(&f, "f.yaml").expect("plans");
        assert_eq!(plan[0].policy.sync_s, 1.0);
        assert!(
            plan[0].policy.profile.is_some(),
            "sim engines have a profile"
        );
    }

    #[test]
    fn deployments_of_one_model_parse_and_refuse_what_they_cannot_do() {
        let deps = "models:
  - {name: m-a, labels: {model.aibrix.ai/name: m}, engine: {sim: {gpu: A10, enable_lora: true}}}
  - {name: m-b, labels: {model.aibrix.ai/name: m, model.aibrix.ai/min_replicas: '1'}, engine: {sim: {gpu: H100}}}
";
        let f = FleetFile::parse("f.yaml", deps).expect("valid");
        assert_eq!(f.models[1].served_name(), "m");
        assert_eq!(f.models[1].min_replicas(), 1);
        let with_opt = format!(
            "{deps}optimizer:\n  tick_s: 1\n  window_s: 4\n  models: [{{name: m, deployments: [{{name: m-a}}, {{name: m-b, max: 2}}]}}]\n"
        );
        let f = FleetFile::parse("f.yaml", &with_opt).expect("valid");
        assert_eq!(f.optimizer.expect("section").window_s, 4.0);
        let e = err(&format!(
            "{deps}optimizer:\n  models: [{{name: m, deployments: [{{name: m-c}}]}}]\n"
        ));
        assert!(e.contains("optimizer.models[0].deployments[0].name"), "{e}");
        let e = err(&format!(
            "{deps}gateway:\n  kv_events:\n    models: [{{name: m}}]\n"
        ));
        assert!(e.contains("served by deployments"), "{e}");
        let adapter = "resources:\n  - apiVersion: model.aibrix.ai/v1alpha1\n    kind: ModelAdapter\n    metadata: {name: sql}\n    spec:\n      baseModel: m\n      artifactURL: huggingface://org/sql\n      podSelector: {matchLabels: {model.aibrix.ai/name: m}}\n";
        let e = err(&format!("{deps}{adapter}"));
        assert!(e.contains("served by deployments"), "{e}");
        let kpa = "resources:\n  - apiVersion: autoscaling.aibrix.ai/v1alpha1\n    kind: PodAutoscaler\n    metadata: {name: k}\n    spec:\n      scaleTargetRef: {name: m-b}\n      maxReplicas: 4\n      scalingStrategy: KPA\n      metricsSources: [{metricSourceType: external, targetMetric: gateway_in_flight, targetValue: '8'}]\n";
        let e = err(&format!("{deps}{kpa}"));
        assert!(e.contains("counts requests per served model"), "{e}");
    }
}
