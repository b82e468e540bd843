//! `validate_resources` and `deprecations`: one good and one bad case per rule.

use brix_api::{Resource, deprecations, validate_resources};

const MODELS: &[&str] = &["qwen-coder", "llama"];

const ADAPTER: &str = "\
- apiVersion: model.aibrix.ai/v1alpha1
  kind: ModelAdapter
  metadata:
    name: qwen-code-lora
  spec:
    baseModel: qwen-coder
    podSelector:
      matchLabels:
        model.aibrix.ai/name: qwen-coder
    artifactURL: huggingface://ai-blond/Qwen-Qwen2.5-Coder-1.5B-Instruct-lora
";

const AUTOSCALER: &str = "\
- apiVersion: autoscaling.aibrix.ai/v1alpha1
  kind: PodAutoscaler
  metadata:
    name: qwen-kpa
  spec:
    scalingStrategy: KPA
    minReplicas: 1
    maxReplicas: 8
    metricsSources:
      - metricSourceType: pod
        protocolType: http
        port: \"8000\"
        path: metrics
        targetMetric: gpu_cache_usage_perc
        targetValue: \"0.5\"
    scaleTargetRef:
      apiVersion: apps/v1
      kind: Deployment
      name: qwen-coder
";

fn parse(yaml: &str) -> Vec<Resource> {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// `base` with each `(from, to)` replaced once (each `from` must occur).
fn edit(base: &str, edits: &[(&str, &str)]) -> String {
    edits.iter().fold(base.to_string(), |doc, (from, to)| {
        assert!(doc.contains(from), "{from:?} not in\n{doc}");
        doc.replacen(from, to, 1)
    })
}

fn run(cases: Vec<(String, Result<(), &str>)>) {
    for (yaml, want) in cases {
        let got = validate_resources(&parse(&yaml), MODELS).map_err(|e| e.to_string());
        match (&got, want) {
            (Ok(()), Ok(())) => {}
            (Err(got), Err(want)) if got.starts_with(want) => {}
            _ => panic!("for\n{yaml}\nwant {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn resources_as_a_whole() {
    let adapter2 = ADAPTER.replace("name: qwen-code-lora", "name: other-lora");
    let scaler2 = AUTOSCALER.replace("name: qwen-kpa", "name: second");
    run(vec![
        (String::new(), Ok(())),
        (format!("{ADAPTER}{AUTOSCALER}"), Ok(())),
        (format!("{ADAPTER}{adapter2}"), Ok(())),
        (
            edit(
                ADAPTER,
                &[(
                    "apiVersion: model.aibrix.ai/v1alpha1",
                    "apiVersion: model.aibrix.ai/v1",
                )],
            ),
            Err(
                "resources[0].apiVersion: 'model.aibrix.ai/v1' is not the apiVersion of kind ModelAdapter; expected model.aibrix.ai/v1alpha1",
            ),
        ),
        (
            edit(
                AUTOSCALER,
                &[(
                    "apiVersion: autoscaling.aibrix.ai/v1alpha1",
                    "apiVersion: model.aibrix.ai/v1alpha1",
                )],
            ),
            Err(
                "resources[0].apiVersion: 'model.aibrix.ai/v1alpha1' is not the apiVersion of kind PodAutoscaler",
            ),
        ),
        (
            format!("{ADAPTER}{ADAPTER}"),
            Err(
                "resources[1].metadata.name: 'qwen-code-lora' is already the name of ModelAdapter resources[0]",
            ),
        ),
        (
            // The same name in two kinds is fine.
            format!(
                "{ADAPTER}{}",
                AUTOSCALER.replace("name: qwen-kpa", "name: qwen-code-lora")
            ),
            Ok(()),
        ),
        (
            format!("{AUTOSCALER}{AUTOSCALER}"),
            Err(
                "resources[1].metadata.name: 'qwen-kpa' is already the name of PodAutoscaler resources[0]",
            ),
        ),
        (
            format!("{AUTOSCALER}{scaler2}"),
            Err(
                "resources[1].spec.scaleTargetRef.name: model 'qwen-coder' is already scaled by resources[0]",
            ),
        ),
        (
            edit(ADAPTER, &[("name: qwen-code-lora", "name: llama")]),
            Err("resources[0].metadata.name: 'llama' is also a model name"),
        ),
        (
            edit(ADAPTER, &[("name: qwen-code-lora", "name: Qwen_Lora")]),
            Err("resources[0].metadata.name: 'Qwen_Lora' is not a valid Kubernetes name"),
        ),
        (
            edit(
                ADAPTER,
                &[(
                    "name: qwen-code-lora\n",
                    "name: qwen-code-lora\n    namespace: Prod\n",
                )],
            ),
            Err("resources[0].metadata.namespace: 'Prod' is not a valid DNS label"),
        ),
        (
            edit(
                ADAPTER,
                &[(
                    "name: qwen-code-lora\n",
                    "name: qwen-code-lora\n    namespace: prod\n",
                )],
            ),
            Ok(()),
        ),
    ]);
}

#[test]
fn model_adapter_rules() {
    let a = |edits: &[(&str, &str)]| edit(ADAPTER, edits);
    let url = "huggingface://ai-blond/Qwen-Qwen2.5-Coder-1.5B-Instruct-lora";
    let selector =
        "    podSelector:\n      matchLabels:\n        model.aibrix.ai/name: qwen-coder\n";
    run(vec![
        // artifactURL schemes
        (a(&[(url, "s3://bucket/adapters/sql")]), Ok(())),
        (a(&[(url, "gcs://bucket/a")]), Ok(())),
        (a(&[(url, "tos://bucket/a")]), Ok(())),
        (a(&[(url, "/models/adapters/sql-lora")]), Ok(())),
        (a(&[(url, "./adapters/sql-lora")]), Ok(())),
        (a(&[(url, "https://example.com/a")]), Ok(())),
        (
            a(&[(url, "ftp://example.com/a")]),
            Err("resources[0].spec.artifactURL: unknown scheme 'ftp://'"),
        ),
        (
            a(&[(url, "''")]),
            Err("resources[0].spec.artifactURL: must not be empty"),
        ),
        (
            a(&[(url, "huggingface://")]),
            Err("resources[0].spec.artifactURL: 'huggingface://' names no repository"),
        ),
        (
            a(&[(url, "'/a b'")]),
            Err("resources[0].spec.artifactURL: '/a b' contains whitespace"),
        ),
        // base model and selector
        (
            a(&[("baseModel: qwen-coder", "baseModel: mistral")]),
            Err(
                "resources[0].spec.podSelector.matchLabels: selects model.aibrix.ai/name=qwen-coder but baseModel is 'mistral'",
            ),
        ),
        (
            a(&[
                (selector, ""),
                ("baseModel: qwen-coder", "baseModel: mistral"),
            ]),
            Err(
                "resources[0].spec.baseModel: 'mistral' is not a model in this file (models: qwen-coder, llama)",
            ),
        ),
        (a(&[(selector, "")]), Ok(())),
        (a(&[("    baseModel: qwen-coder\n", "")]), Ok(())),
        (
            a(&[
                ("    baseModel: qwen-coder\n", ""),
                (
                    "name: qwen-coder\n    artifactURL",
                    "name: mistral\n    artifactURL",
                ),
            ]),
            Err(
                "resources[0].spec.podSelector.matchLabels[model.aibrix.ai/name]: 'mistral' is not a model in this file",
            ),
        ),
        (
            a(&[("    baseModel: qwen-coder\n", ""), (selector, "")]),
            Err("resources[0].spec.baseModel: set baseModel"),
        ),
        (
            a(&[(
                selector,
                "    podSelector:\n      matchExpressions:\n        - {key: tier, operator: In, values: [gold]}\n",
            )]),
            Ok(()),
        ),
        (
            a(&[(
                selector,
                "    podSelector:\n      matchExpressions:\n        - {key: tier, operator: In}\n",
            )]),
            Err(
                "resources[0].spec.podSelector.matchExpressions[0].values: must not be empty for operator In",
            ),
        ),
        (
            a(&[(
                selector,
                "    podSelector:\n      matchExpressions:\n        - {key: tier, operator: Exists, values: [x]}\n",
            )]),
            Err(
                "resources[0].spec.podSelector.matchExpressions[0].values: must be empty for operator Exists",
            ),
        ),
        // schedulerName, replicas, credentials
        (
            a(&[(
                "    artifactURL",
                "    schedulerName: leastAdapters\n    artifactURL",
            )]),
            Ok(()),
        ),
        (
            a(&[(
                "    artifactURL",
                "    schedulerName: fancy\n    artifactURL",
            )]),
            Err("resources[0].spec.schedulerName: unknown scheduler 'fancy'"),
        ),
        (
            a(&[("    artifactURL", "    replicas: 1\n    artifactURL")]),
            Ok(()),
        ),
        (
            a(&[("    artifactURL", "    replicas: 0\n    artifactURL")]),
            Err("resources[0].spec.replicas: must be at least 1"),
        ),
        (
            a(&[(
                "    artifactURL",
                "    credentialsSecretRef: {name: hf-token}\n    artifactURL",
            )]),
            Ok(()),
        ),
        (
            a(&[(
                "    artifactURL",
                "    credentialsSecretRef: {name: ''}\n    artifactURL",
            )]),
            Err("resources[0].spec.credentialsSecretRef.name: must not be empty"),
        ),
    ]);
}

#[test]
fn pod_autoscaler_rules() {
    let p = |edits: &[(&str, &str)]| edit(AUTOSCALER, edits);
    let source = concat!(
        "      - metricSourceType: pod\n",
        "        protocolType: http\n",
        "        port: \"8000\"\n",
        "        path: metrics\n",
        "        targetMetric: gpu_cache_usage_perc\n",
        "        targetValue: \"0.5\"\n",
    );
    let sources = |s: &str| p(&[(source, s)]);
    let schedule = |s: &str| {
        p(&[(
            "    scaleTargetRef:",
            &format!("    schedules:\n{s}    scaleTargetRef:"),
        )])
    };
    run(vec![
        // target
        (
            p(&[("      name: qwen-coder", "      name: mistral")]),
            Err("resources[0].spec.scaleTargetRef.name: 'mistral' is not a model in this file"),
        ),
        (
            p(&[
                ("      kind: Deployment\n", ""),
                ("      apiVersion: apps/v1\n", ""),
            ]),
            Ok(()),
        ),
        (
            p(&[("kind: Deployment", "kind: StormService")]),
            Err("resources[0].spec.scaleTargetRef.kind: 'StormService': Brix scales models"),
        ),
        (
            p(&[("apiVersion: apps/v1", "apiVersion: apps/v2")]),
            Err("resources[0].spec.scaleTargetRef.apiVersion: 'apps/v2'"),
        ),
        (
            p(&[(
                "    scaleTargetRef:",
                "    subTargetSelector: {roleName: prefill}\n    scaleTargetRef:",
            )]),
            Err("resources[0].spec.subTargetSelector: Brix models have no roles"),
        ),
        // bounds
        (p(&[("    minReplicas: 1\n", "")]), Ok(())),
        (p(&[("minReplicas: 1", "minReplicas: 0")]), Ok(())),
        (p(&[("minReplicas: 1", "minReplicas: 8")]), Ok(())),
        (
            p(&[("minReplicas: 1", "minReplicas: 9")]),
            Err("resources[0].spec.minReplicas: 9 is greater than maxReplicas (8)"),
        ),
        (
            p(&[
                ("maxReplicas: 8", "maxReplicas: 0"),
                ("minReplicas: 1", "minReplicas: 0"),
            ]),
            Err("resources[0].spec.maxReplicas: must be at least 1"),
        ),
        (
            p(&[("maxReplicas: 8", "maxReplicas: 65")]),
            Err("resources[0].spec.maxReplicas: 65 is more than 64"),
        ),
        // strategies (an unknown one fails in the parser, see tests/parse.rs)
        (
            p(&[("scalingStrategy: KPA", "scalingStrategy: APA")]),
            Ok(()),
        ),
        (
            p(&[("scalingStrategy: KPA", "scalingStrategy: HPA")]),
            Ok(()),
        ),
        // metric sources
        (
            p(&[(
                &format!("    metricsSources:\n{source}"),
                "    metricsSources: []\n",
            )]),
            Err("resources[0].spec.metricsSources: at least one metric source is required"),
        ),
        (
            p(&[
                (
                    &format!("    metricsSources:\n{source}"),
                    "    metricsSources: []\n",
                ),
                ("scalingStrategy: KPA", "scalingStrategy: SLO"),
            ]),
            Ok(()),
        ),
        (
            p(&[
                (&format!("    metricsSources:\n{source}"), ""),
                ("scalingStrategy: KPA", "scalingStrategy: SLO"),
            ]),
            Ok(()),
        ),
        (
            p(&[("targetValue: \"0.5\"", "targetValue: \"0\"")]),
            Err(
                "resources[0].spec.metricsSources[0].targetValue: '0' is not a positive decimal number",
            ),
        ),
        (
            p(&[("targetValue: \"0.5\"", "targetValue: \"500m\"")]),
            Err(
                "resources[0].spec.metricsSources[0].targetValue: '500m' is not a positive decimal number",
            ),
        ),
        (p(&[("targetValue: \"0.5\"", "targetValue: 50")]), Ok(())),
        (
            p(&[("targetMetric: gpu_cache_usage_perc", "targetMetric: ''")]),
            Err("resources[0].spec.metricsSources[0].targetMetric: must not be empty"),
        ),
        (
            p(&[("port: \"8000\"", "port: \"http\"")]),
            Err("resources[0].spec.metricsSources[0].port: 'http' is not a port number"),
        ),
        (p(&[("port: \"8000\"", "port: 8000")]), Ok(())),
        (
            sources(
                "      - {metricSourceType: pod, targetMetric: num_requests_running, targetValue: \"5\"}\n",
            ),
            Ok(()),
        ),
        (
            sources(&format!("{source}{source}")),
            Err(
                "resources[0].spec.metricsSources[1].targetMetric: 'gpu_cache_usage_perc' is already used by another source",
            ),
        ),
        (
            sources(
                "      - {metricSourceType: resource, targetMetric: cpu, targetValue: \"80\"}\n",
            ),
            Err(
                "resources[0].spec.metricsSources[0].metricSourceType: 'resource' reads the Kubernetes metrics API, which Brix does not have outside Kubernetes",
            ),
        ),
        (
            sources("      - {metricSourceType: custom, targetMetric: qps, targetValue: \"10\"}\n"),
            Err(
                "resources[0].spec.metricsSources[0].metricSourceType: 'custom' reads the Kubernetes metrics API",
            ),
        ),
        // external without an endpoint: the gateway's own measures
        (
            sources(
                "      - {metricSourceType: external, targetMetric: gateway_in_flight, targetValue: \"8\"}\n",
            ),
            Ok(()),
        ),
        (
            sources(
                "      - {metricSourceType: external, targetMetric: gateway_output_tokens_per_second, targetValue: \"2000\"}\n      - {metricSourceType: external, targetMetric: gateway_requests_per_second, targetValue: \"4\"}\n",
            ),
            Ok(()),
        ),
        (
            sources(
                "      - {metricSourceType: external, targetMetric: qps, targetValue: \"10\"}\n",
            ),
            Err(
                "resources[0].spec.metricsSources[0].targetMetric: 'qps': an external source without an endpoint reads the gateway's own measure of the model, one of gateway_in_flight, gateway_requests_per_second, gateway_prompt_tokens_per_second, gateway_output_tokens_per_second",
            ),
        ),
        (
            sources(
                "      - {metricSourceType: external, targetMetric: gateway_in_flight, path: /m, targetValue: \"8\"}\n",
            ),
            Err("resources[0].spec.metricsSources[0].path: not used by a gateway source"),
        ),
        (
            sources(
                "      - {metricSourceType: external, protocolType: http, endpoint: 'aibrix-gpu-optimizer.aibrix-system.svc.cluster.local:8080', path: /metrics/default/qwen-coder, targetMetric: 'vllm:deployment_replicas', targetValue: \"100\"}\n",
            ),
            Ok(()),
        ),
        (
            sources(
                "      - {metricSourceType: external, endpoint: 'optimizer:8080', targetMetric: 'vllm:deployment_replicas', targetValue: \"100\"}\n",
            ),
            Err(
                "resources[0].spec.metricsSources[0].path: required for an external source with an endpoint",
            ),
        ),
        (
            sources(
                "      - {metricSourceType: domain, endpoint: 'http://optimizer:8080', path: /m, targetMetric: r, targetValue: \"100\"}\n",
            ),
            Err(
                "resources[0].spec.metricsSources[0].endpoint: 'http://optimizer:8080' should be host:port",
            ),
        ),
        // windows
        (
            p(&[(
                "    maxReplicas: 8",
                "    maxReplicas: 8\n    observeWindowSeconds: 60\n    panicWindowSeconds: 6",
            )]),
            Ok(()),
        ),
        (
            p(&[(
                "    maxReplicas: 8",
                "    maxReplicas: 8\n    observeWindowSeconds: 0",
            )]),
            Err("resources[0].spec.observeWindowSeconds: must be between 1 and 3600 seconds"),
        ),
        (
            p(&[(
                "    maxReplicas: 8",
                "    maxReplicas: 8\n    observeWindowSeconds: 3601",
            )]),
            Err("resources[0].spec.observeWindowSeconds: must be between 1 and 3600 seconds"),
        ),
        (
            p(&[(
                "    maxReplicas: 8",
                "    maxReplicas: 8\n    panicWindowSeconds: 200",
            )]),
            Err(
                "resources[0].spec.panicWindowSeconds: 200 s is longer than the stable window (180 s)",
            ),
        ),
        (
            p(&[(
                "    maxReplicas: 8",
                "    maxReplicas: 8\n    predictive: {mode: Auto, horizonSeconds: 120}",
            )]),
            Ok(()),
        ),
        (
            p(&[(
                "    maxReplicas: 8",
                "    maxReplicas: 8\n    predictive: {horizonSeconds: 0}",
            )]),
            Err("resources[0].spec.predictive.horizonSeconds: must be between 1 and 3600 seconds"),
        ),
        // schedules
        (
            schedule(
                "      - {name: peak, timezone: Asia/Shanghai, daysOfWeek: [Mon, tue, FRI], startTime: '09:00', endTime: '18:30', minReplicas: 4}\n",
            ),
            Ok(()),
        ),
        (
            schedule(
                "      - {name: Peak, startTime: '09:00', endTime: '18:00', minReplicas: 4}\n",
            ),
            Err("resources[0].spec.schedules[0].name: 'Peak' is not a valid DNS label"),
        ),
        (
            schedule(
                "      - {name: a, startTime: '09:00', endTime: '10:00', minReplicas: 2}\n      - {name: a, startTime: '11:00', endTime: '12:00', minReplicas: 2}\n",
            ),
            Err("resources[0].spec.schedules[1].name: 'a' is used twice"),
        ),
        (
            schedule("      - {name: a, startTime: '9:00', endTime: '10:00', minReplicas: 2}\n"),
            Err("resources[0].spec.schedules[0].startTime: '9:00' is not HH:MM"),
        ),
        (
            schedule("      - {name: a, startTime: '09:00', endTime: '24:00', minReplicas: 2}\n"),
            Err("resources[0].spec.schedules[0].endTime: '24:00' is not HH:MM"),
        ),
        (
            schedule("      - {name: a, startTime: '22:00', endTime: '02:00', minReplicas: 2}\n"),
            Err("resources[0].spec.schedules[0].endTime: must be later than startTime"),
        ),
        (
            schedule("      - {name: a, startTime: '09:00', endTime: '10:00'}\n"),
            Err("resources[0].spec.schedules[0]: set minReplicas, maxReplicas or both"),
        ),
        (
            schedule(
                "      - {name: a, startTime: '09:00', endTime: '10:00', daysOfWeek: [Mon, mon], maxReplicas: 2}\n",
            ),
            Err("resources[0].spec.schedules[0].daysOfWeek[1]: listed twice"),
        ),
        (
            schedule(
                "      - {name: a, timezone: 'Mars Time', startTime: '09:00', endTime: '10:00', maxReplicas: 2}\n",
            ),
            Err("resources[0].spec.schedules[0].timezone: 'Mars Time' is not an IANA time zone"),
        ),
        (
            schedule("      - {name: a, startTime: '09:00', endTime: '10:00', minReplicas: 9}\n"),
            Err("resources[0].spec.schedules[0].minReplicas: 9 is greater than maxReplicas (8)"),
        ),
        (
            schedule("      - {name: a, startTime: '09:00', endTime: '10:00', maxReplicas: 99}\n"),
            Err("resources[0].spec.schedules[0].maxReplicas: 99 is more than 64"),
        ),
    ]);
}

#[test]
fn deprecations_are_reported_with_their_paths() {
    let doc = edit(
        AUTOSCALER,
        &[
            (
                "    name: qwen-kpa\n",
                "    name: qwen-kpa\n    labels:\n      kpa.autoscaling.aibrix.ai/scale-down-delay: 3m\n",
            ),
            ("metricSourceType: pod", "metricSourceType: domain"),
            // A domain (external) source reads an endpoint (the GPU optimizer).
            ("port: \"8000\"", "endpoint: optimizer:8080"),
        ],
    );
    let resources = parse(&format!("{ADAPTER}{doc}"));
    validate_resources(&resources, MODELS).unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<String> = deprecations(&resources)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[0].starts_with(
            "resources[1].metadata.labels[kpa.autoscaling.aibrix.ai/scale-down-delay]: legacy name"
        ),
        "{}",
        got[0]
    );
    assert!(got[0].contains("autoscaling.aibrix.ai/scale-down-cooldown-window"));
    assert!(
        got[1].starts_with(
            "resources[1].spec.metricsSources[0].metricSourceType: 'domain' is deprecated"
        ),
        "{}",
        got[1]
    );
    assert!(deprecations(&parse(ADAPTER)).is_empty());
}
