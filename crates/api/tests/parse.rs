//! Parsing a fleet file the way `brix up` does: what users see for typos, wrong types and
//! AIBrix manifests pasted in as they are.

use brix_api::{
    Artifact, EngineSpec, MetricSourceType, ModelSpec, ProtocolType, Resource, ScalingStrategy,
    SelectorOperator, deprecations, validate_models, validate_resources,
};
use serde::Deserialize;

/// The shape of `brix up`'s file, less the gateway section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpFile {
    models: Vec<ModelSpec>,
    #[serde(default)]
    resources: Vec<Resource>,
}

fn parse(yaml: &str) -> Result<UpFile, String> {
    serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())
}

fn parse_err(yaml: &str) -> String {
    match parse(yaml) {
        Ok(file) => panic!("parsed: {file:?}"),
        Err(e) => e,
    }
}

fn validate(file: &UpFile) -> Result<(), String> {
    validate_models(&file.models).map_err(|e| e.to_string())?;
    let names: Vec<&str> = file.models.iter().map(|m| m.name.as_str()).collect();
    validate_resources(&file.resources, &names).map_err(|e| e.to_string())
}

const ONE_MODEL: &str = "models:\n  - name: m\n    engine: {sim: {}}\n";

#[test]
fn model_typos_name_the_field_and_line() {
    let cases = [
        (
            "models:\n  - name: a\n    replica: 2\n    engine: {sim: {}}\n",
            "models[0]: unknown field `replica`, expected one of `name`, `replicas`, `engine`, `labels` at line 3 column 5",
        ),
        (
            "models:\n  - name: a\n    replicas: two\n    engine: {sim: {}}\n",
            "models[0].replicas: invalid type: string \"two\", expected u32 at line 3 column 15",
        ),
        (
            "models:\n  - name: a\n    replicas: -1\n    engine: {sim: {}}\n",
            "models[0].replicas: invalid type: integer `-1`, expected u32 at line 3 column 15",
        ),
        (
            "models:\n  - name: a\n    engine: {sim: {}}\n  - name: b\n    engine:\n      sim:\n        gpuu: H100\n",
            "models[1].engine.sim: unknown field `gpuu`, expected one of `gpu`, `model_profile`",
        ),
        (
            "models:\n  - name: a\n    engine:\n      command:\n        command: 'x {port}'\n        ready_timeout_s: soon\n",
            "models[0].engine.command.ready_timeout_s: invalid type: string \"soon\", expected u64 at line 6 column 26",
        ),
        (
            "models:\n  - name: a\n    engine:\n      command:\n        env: {A: b}\n",
            "models[0].engine.command: missing field `command` at line 5 column 9",
        ),
        (
            "models:\n  - name: a\n    engine: {docker: {}}\n",
            "models[0].engine: unknown variant `docker`, expected `sim` or `command` at line 3 column 13",
        ),
        (
            "models:\n  - name: a\n    engine:\n      sim: {}\n      command: {command: 'x {port}'}\n",
            "models[0].engine: `command` next to `sim`: give exactly one of `sim` or `command` at line 4 column 7",
        ),
        (
            "models:\n  - name: a\n    engine: {}\n",
            "models[0].engine: empty engine: give exactly one of `sim` or `command` at line 3 column 13",
        ),
        (
            "models:\n  - name: a\n",
            "models[0]: missing field `engine` at line 2 column 5",
        ),
        (
            "modles: []\n",
            "unknown field `modles`, expected `models` or `resources`",
        ),
    ];
    for (yaml, want) in cases {
        let got = parse_err(yaml);
        assert!(
            got.starts_with(want),
            "for\n{yaml}\nwant {want:?}\ngot  {got:?}"
        );
    }
}

#[test]
fn resource_errors_name_the_field_and_line() {
    let pa = |spec: &str| {
        format!(
            "{ONE_MODEL}resources:\n  - apiVersion: autoscaling.aibrix.ai/v1alpha1\n    kind: PodAutoscaler\n    metadata: {{name: p}}\n    spec:\n{spec}"
        )
    };
    let cases = [
        (
            format!("{ONE_MODEL}resources:\n  - apiVersion: apps/v1\n    kind: Deployment\n"),
            "resources[0].kind: unknown kind `Deployment`; Brix reads ModelAdapter and PodAutoscaler at line 6 column 11".to_string(),
        ),
        (
            pa("      scaleTargetRef: {name: m}\n      maxReplicas: lots\n"),
            "resources[0].spec.maxReplicas: invalid type: string \"lots\", expected u32 at line 10 column 20".into(),
        ),
        (
            pa("      scaleTargetRef: {name: m}\n      maxReplicas: 3\n      scalingStrategy: XPA\n"),
            "resources[0].spec.scalingStrategy: unknown variant `XPA`, expected one of `HPA`, `KPA`, `APA`, `SLO` at line 11 column 24".into(),
        ),
        (
            pa("      scaleTargetRef: {name: m}\n      maxReplica: 3\n"),
            "resources[0].spec: unknown field `maxReplica`, expected one of".into(),
        ),
        (
            pa("      scaleTargetRef: {name: m}\n      maxReplicas: 3\n      scalingStrategy: KPA\n      metricsSources:\n        - {metricSourceType: prometheus, targetMetric: x, targetValue: '1'}\n"),
            "resources[0].spec.metricsSources[0].metricSourceType: unknown variant `prometheus`, expected one of `pod`, `resource`, `custom`, `external`, `domain`".into(),
        ),
        (
            pa("      scaleTargetRef: {name: m}\n      scalingStrategy: KPA\n"),
            "resources[0].spec: missing field `maxReplicas`".into(),
        ),
        (
            pa("      scaleTargetRef: {name: m}\n      maxReplicas: 3\n      scalingStrategy: KPA\n      schedules:\n        - {name: a, startTime: '01:00', endTime: '02:00', daysOfWeek: [Mon, Funday], minReplicas: 1}\n"),
            "resources[0].spec.schedules[0].daysOfWeek: 'Funday' is not a day: expected Mon, Tue, ... Sun".into(),
        ),
        (
            format!("{ONE_MODEL}resources:\n  - apiVersion: model.aibrix.ai/v1alpha1\n    kind: ModelAdapter\n    metadata: {{name: a, annotation: {{}}}}\n"),
            "resources[0].metadata: unknown field `annotation`, expected one of `name`, `namespace`, `labels`, `annotations`".into(),
        ),
        (
            format!("{ONE_MODEL}resources:\n  - apiVersion: model.aibrix.ai/v1alpha1\n    kind: ModelAdapter\n    metadata: {{name: a}}\n    spec: {{baseModel: m, artifactUrl: /a}}\n"),
            "resources[0].spec: unknown field `artifactUrl`, expected one of".into(),
        ),
        (
            format!("{ONE_MODEL}resources:\n  - apiVersion: model.aibrix.ai/v1alpha1\n    kind: ModelAdapter\n    metadata: {{name: a}}\n    specs: {{}}\n"),
            "resources[0]: unknown field `specs`, expected one of `apiVersion`, `kind`, `metadata`, `spec`, `status` at line 8 column 5".into(),
        ),
        (
            format!("{ONE_MODEL}resources:\n  - apiVersion: model.aibrix.ai/v1alpha1\n    kind: ModelAdapter\n    metadata: {{name: a}}\n"),
            "resources[0]: missing field `spec` at line 5 column 5".into(),
        ),
        (
            format!("{ONE_MODEL}resources:\n  - kind: ModelAdapter\n    metadata: {{name: a}}\n    spec: {{artifactURL: /a}}\n"),
            "resources[0]: missing field `apiVersion`".into(),
        ),
        (
            format!("{ONE_MODEL}resources:\n  - apiVersion: v\n    kind: ModelAdapter\n    kind: ModelAdapter\n"),
            "resources[0]: duplicate field `kind`".into(),
        ),
        (
            // `spec` before `kind` is still read, but its errors have no line of their own.
            format!("{ONE_MODEL}resources:\n  - spec: {{maxReplicas: 3}}\n    apiVersion: autoscaling.aibrix.ai/v1alpha1\n    kind: PodAutoscaler\n    metadata: {{name: p}}\n"),
            "resources[0]: spec: missing field `scaleTargetRef`".into(),
        ),
    ];
    for (yaml, want) in cases {
        let got = parse_err(&yaml);
        assert!(
            got.starts_with(&want),
            "for\n{yaml}\nwant {want:?}\ngot  {got:?}"
        );
    }
}

#[test]
fn validation_errors_name_the_field() {
    let file = parse(
        "models:\n  - name: a\n    engine: {sim: {}}\n  - name: b\n    engine:\n      command: {command: 'vllm serve x'}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        validate(&file),
        Err("models[1].engine.command.command: must contain {port}, where Brix puts the port this replica listens on".into())
    );
}

/// A fleet file whose resources are AIBrix's sample manifests (`samples/adapter`,
/// `samples/autoscaling`, `samples/heterogeneous`), pasted in as list items.
const AIBRIX_SAMPLES: &str = r#"
models:
  - name: qwen-coder-1-5b-instruct
    replicas: 2
    engine:
      sim:
        gpu: A10
        enable_lora: true
        max_loras: 4
  - name: deepseek-llm-7b-chat
    engine:
      command:
        command: vllm serve deepseek-ai/deepseek-llm-7b-chat --port {port} --served-model-name {model}
        env: {HF_HOME: /data/hf}
  - name: llama-3-1-8b-instruct
    engine: {sim: {output_len: "fixed:16", seed: 7}}
  - name: mistral-7b
    engine: {sim: {}}
resources:
  - apiVersion: model.aibrix.ai/v1alpha1
    kind: ModelAdapter
    metadata:
      name: qwen-code-lora
      namespace: default
      labels:
        model.aibrix.ai/name: "qwen-code-lora"
        model.aibrix.ai/port: "8000"
    spec:
      baseModel: qwen-coder-1-5b-instruct
      podSelector:
        matchLabels:
          model.aibrix.ai/name: qwen-coder-1-5b-instruct
      artifactURL: huggingface://ai-blond/Qwen-Qwen2.5-Coder-1.5B-Instruct-lora
      schedulerName: default
      additionalConfig:
        api-key: sk-test
    status:
      phase: Running
      instances: [qwen-coder-1-5b-instruct-7c9b8-x2v4z]
  - apiVersion: autoscaling.aibrix.ai/v1alpha1
    kind: PodAutoscaler
    metadata:
      name: podautoscaler-deepseek-llm-7b-chat-kpa
      namespace: default
      labels:
        app.kubernetes.io/name: aibrix
        app.kubernetes.io/managed-by: kustomize
        kpa.autoscaling.aibrix.ai/scale-down-delay: "3m"
      uid: 0f1e2d3c-aaaa-bbbb-cccc-000000000000
      resourceVersion: "4242"
      creationTimestamp: "2026-01-01T00:00:00Z"
    spec:
      scalingStrategy: KPA
      minReplicas: 1
      maxReplicas: 10
      metricsSources:
        - metricSourceType: pod
          protocolType: http
          port: "8000"
          path: metrics
          targetMetric: gpu_cache_usage_perc
          targetValue: "0.5"
      scaleTargetRef:
        apiVersion: apps/v1
        kind: Deployment
        name: deepseek-llm-7b-chat
  - apiVersion: autoscaling.aibrix.ai/v1alpha1
    kind: PodAutoscaler
    metadata:
      name: qwen-coder-1-5b-instruct-apa
      annotations:
        autoscaling.aibrix.ai/up-fluctuation-tolerance: '0.1'
        autoscaling.aibrix.ai/down-fluctuation-tolerance: '0.2'
        apa.autoscaling.aibrix.ai/window: 30s
    spec:
      scalingStrategy: APA
      minReplicas: 1
      maxReplicas: 8
      metricsSources:
        - metricSourceType: pod
          protocolType: http
          port: '8000'
          path: metrics
          targetMetric: kv_cache_usage_perc
          targetValue: '0.01'
      scaleTargetRef:
        apiVersion: apps/v1
        kind: Deployment
        name: qwen-coder-1-5b-instruct
  - apiVersion: autoscaling.aibrix.ai/v1alpha1
    kind: PodAutoscaler
    metadata:
      name: llama-3-1-8b-instruct-optimizer-scaling
      labels:
        kpa.autoscaling.aibrix.ai/scale-down-delay: 0s
    spec:
      scalingStrategy: KPA
      minReplicas: 0
      maxReplicas: 4
      metricsSources:
      - endpoint: aibrix-gpu-optimizer.aibrix-system.svc.cluster.local:8080
        metricSourceType: domain
        path: /metrics/default/llama-3-1-8b-instruct
        protocolType: http
        targetMetric: vllm:deployment_replicas
        targetValue: "100"
      scaleTargetRef:
        apiVersion: apps/v1
        kind: Deployment
        name: llama-3-1-8b-instruct
  - apiVersion: autoscaling.aibrix.ai/v1alpha1
    kind: PodAutoscaler
    metadata:
      name: mistral-hpa
      annotations:
        autoscaling.aibrix.ai/scale-down-cooldown-window: 5m
    spec:
      scalingStrategy: HPA
      maxReplicas: 3
      metricsSources:
        - metricSourceType: pod
          protocolType: http
          port: "8000"
          path: metrics
          targetMetric: gpu_cache_usage_perc
          targetValue: "50"
      schedules:
        - name: business-hours
          timezone: America/New_York
          daysOfWeek: [Mon, Tue, Wed, Thu, Fri]
          startTime: "09:00"
          endTime: "17:00"
          minReplicas: 2
      scaleTargetRef:
        kind: Deployment
        name: mistral-7b
"#;

#[test]
fn aibrix_sample_manifests_parse_and_validate() {
    let file = parse(AIBRIX_SAMPLES).unwrap_or_else(|e| panic!("{e}"));
    validate(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(file.models.len(), 4);
    assert!(matches!(&file.models[1].engine, EngineSpec::Command(c)
        if c.render(9001, "deepseek-llm-7b-chat").ends_with("--port 9001 --served-model-name deepseek-llm-7b-chat")));

    let [
        Resource::ModelAdapter(lora),
        Resource::PodAutoscaler(kpa),
        Resource::PodAutoscaler(apa),
        Resource::PodAutoscaler(opt),
        Resource::PodAutoscaler(hpa),
    ] = file.resources.as_slice()
    else {
        panic!(
            "kinds: {:?}",
            file.resources
                .iter()
                .map(Resource::kind)
                .collect::<Vec<_>>()
        )
    };
    assert_eq!(lora.metadata.name, "qwen-code-lora");
    assert_eq!(lora.target_model(), Some("qwen-coder-1-5b-instruct"));
    assert_eq!(
        Artifact::parse(&lora.spec.artifact_url),
        Ok(Artifact::HuggingFace(
            "ai-blond/Qwen-Qwen2.5-Coder-1.5B-Instruct-lora"
        ))
    );
    assert_eq!(
        lora.spec
            .additional_config
            .get("api-key")
            .map(String::as_str),
        Some("sk-test")
    );
    assert_eq!(lora.spec.replicas, None);

    assert_eq!(kpa.spec.scaling_strategy, ScalingStrategy::Kpa);
    assert_eq!(kpa.metadata.namespace.as_deref(), Some("default"));
    let source = &kpa.spec.metrics_sources[0];
    assert_eq!(source.metric_source_type, MetricSourceType::Pod);
    assert_eq!(source.protocol_type, Some(ProtocolType::Http));
    assert_eq!(
        (source.port.as_deref(), source.target()),
        (Some("8000"), Some(0.5))
    );
    let secs = std::time::Duration::from_secs;
    assert_eq!(kpa.knobs().map(|k| k.scale_down_cooldown), Ok(secs(180)));

    let knobs = apa.knobs().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (knobs.scale_down_tolerance, knobs.stable_window),
        (0.2, secs(30))
    );

    assert_eq!(
        opt.spec.metrics_sources[0].source_type(),
        MetricSourceType::External
    );
    assert_eq!(
        (
            opt.min_replicas(),
            opt.knobs().map(|k| k.scale_down_cooldown)
        ),
        (0, Ok(secs(0)))
    );

    assert_eq!(hpa.min_replicas(), 1);
    assert_eq!(hpa.spec.schedules[0].window_minutes(), Some((540, 1020)));

    let warned: Vec<String> = deprecations(&file.resources)
        .iter()
        .map(|d| d.field.clone())
        .collect();
    assert_eq!(
        warned,
        [
            "resources[1].metadata.labels[kpa.autoscaling.aibrix.ai/scale-down-delay]",
            "resources[2].metadata.annotations[apa.autoscaling.aibrix.ai/window]",
            "resources[2].metadata.annotations[autoscaling.aibrix.ai/down-fluctuation-tolerance]",
            "resources[2].metadata.annotations[autoscaling.aibrix.ai/up-fluctuation-tolerance]",
            "resources[3].metadata.labels[kpa.autoscaling.aibrix.ai/scale-down-delay]",
            "resources[3].spec.metricsSources[0].metricSourceType",
        ]
    );
}

#[test]
fn selectors_parse_and_match() {
    let file = parse(&format!(
        "{ONE_MODEL}resources:
  - apiVersion: model.aibrix.ai/v1alpha1
    kind: ModelAdapter
    metadata: {{name: sql-lora}}
    spec:
      baseModel: m
      podSelector:
        matchLabels: {{model.aibrix.ai/name: m}}
        matchExpressions:
          - {{key: tier, operator: NotIn, values: [bronze]}}
          - {{key: adapter.model.aibrix.ai/enabled, operator: Exists}}
      artifactURL: s3://adapters/sql
      replicas: 1
      credentialsSecretRef: {{name: s3-creds}}
"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    validate(&file).unwrap_or_else(|e| panic!("{e}"));
    let Resource::ModelAdapter(a) = &file.resources[0] else {
        panic!("kind")
    };
    let selector = a.spec.pod_selector.clone().unwrap_or_default();
    assert_eq!(
        selector.match_expressions[0].operator,
        SelectorOperator::NotIn
    );
    let labels = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let enabled = ("adapter.model.aibrix.ai/enabled", "true");
    assert!(selector.matches(&labels(&[("model.aibrix.ai/name", "m"), enabled])));
    assert!(selector.matches(&labels(&[
        ("model.aibrix.ai/name", "m"),
        enabled,
        ("tier", "gold")
    ])));
    assert!(!selector.matches(&labels(&[
        ("model.aibrix.ai/name", "m"),
        enabled,
        ("tier", "bronze")
    ])));
    assert!(!selector.matches(&labels(&[("model.aibrix.ai/name", "m")])));
    assert!(!selector.matches(&labels(&[("model.aibrix.ai/name", "x"), enabled])));
    assert_eq!(
        Artifact::parse(&a.spec.artifact_url),
        Ok(Artifact::S3("adapters/sql"))
    );
}

#[test]
fn spec_before_kind_is_still_read() {
    let file = parse(&format!(
        "{ONE_MODEL}resources:\n  - spec: {{baseModel: m, artifactURL: /adapters/a}}\n    metadata: {{name: a}}\n    kind: ModelAdapter\n    apiVersion: model.aibrix.ai/v1alpha1\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    validate(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(file.resources[0].kind(), "ModelAdapter");
    assert_eq!(file.resources[0].name(), "a");
}

/// The example in docs/resources.md is a real fleet file.
#[test]
fn docs_example_parses_and_validates() {
    let doc = include_str!("../../../docs/resources.md");
    let start = doc.find("```yaml\n").map(|i| i + "```yaml\n".len());
    let example = start.and_then(|s| doc[s..].find("```").map(|e| &doc[s..s + e]));
    let Some(example) = example else {
        panic!("no yaml block in docs/resources.md")
    };
    let file = parse(example).unwrap_or_else(|e| panic!("{e}"));
    validate(&file).unwrap_or_else(|e| panic!("{e}"));
}
