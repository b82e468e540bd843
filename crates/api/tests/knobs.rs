//! `PodAutoscaler::knobs`: AIBrix's defaults, its annotation keys, the legacy aliases Brix
//! accepts, and the keys it refuses.

use std::time::Duration;

use brix_api::{PodAutoscaler, Resource, ScalingKnobs, validate_resources};

/// A KPA document with `meta` (indented metadata lines) and `spec_extra` (indented spec lines).
fn autoscaler(meta: &str, spec_extra: &str) -> PodAutoscaler {
    let yaml = format!(
        "apiVersion: autoscaling.aibrix.ai/v1alpha1
kind: PodAutoscaler
metadata:
  name: kpa
{meta}spec:
  scalingStrategy: KPA
  maxReplicas: 4
{spec_extra}  metricsSources:
    - {{metricSourceType: pod, targetMetric: num_requests_running, targetValue: \"5\"}}
  scaleTargetRef: {{name: m}}
"
    );
    match serde_yaml_ng::from_str(&yaml) {
        Ok(Resource::PodAutoscaler(pa)) => pa,
        other => panic!("{other:?}\n{yaml}"),
    }
}

fn annotations(pairs: &[(&str, &str)]) -> String {
    let mut out = String::from("  annotations:\n");
    for (k, v) in pairs {
        out.push_str(&format!("    {k}: '{v}'\n"));
    }
    out
}

#[test]
fn defaults_are_aibrix_defaults() {
    let knobs = autoscaler("", "").knobs().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(knobs, ScalingKnobs::default());
    assert_eq!(knobs.max_scale_up_rate, 2.0);
    assert_eq!(knobs.max_scale_down_rate, 2.0);
    assert_eq!(
        (knobs.scale_up_tolerance, knobs.scale_down_tolerance),
        (0.1, 0.1)
    );
    assert_eq!(knobs.panic_threshold, 2.0);
    assert_eq!(knobs.scale_up_cooldown, Duration::ZERO);
    assert_eq!(knobs.scale_down_cooldown, Duration::from_secs(300));
    assert!(!knobs.scale_to_zero);
    assert_eq!(knobs.stable_window, Duration::from_secs(180));
    assert_eq!(knobs.panic_window, Duration::from_secs(60));
    assert_eq!(autoscaler("", "").min_replicas(), 1);
}

#[test]
fn every_annotation_is_read() {
    let pa = autoscaler(
        &annotations(&[
            ("autoscaling.aibrix.ai/max-scale-up-rate", "3"),
            ("autoscaling.aibrix.ai/max-scale-down-rate", "1.5"),
            ("autoscaling.aibrix.ai/scale-up-tolerance", "0.2"),
            ("autoscaling.aibrix.ai/scale-down-tolerance", "0.3"),
            ("autoscaling.aibrix.ai/panic-threshold", "2.5"),
            ("autoscaling.aibrix.ai/scale-up-cooldown-window", "30s"),
            ("autoscaling.aibrix.ai/scale-down-cooldown-window", "1m30s"),
            ("autoscaling.aibrix.ai/scale-to-zero", "true"),
            ("app.kubernetes.io/name", "aibrix"),
        ]),
        "  observeWindowSeconds: 120\n  panicWindowSeconds: 12\n",
    );
    let knobs = pa.knobs().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        knobs,
        ScalingKnobs {
            max_scale_up_rate: 3.0,
            max_scale_down_rate: 1.5,
            scale_up_tolerance: 0.2,
            scale_down_tolerance: 0.3,
            panic_threshold: 2.5,
            scale_up_cooldown: Duration::from_secs(30),
            scale_down_cooldown: Duration::from_secs(90),
            scale_to_zero: true,
            stable_window: Duration::from_secs(120),
            panic_window: Duration::from_secs(12),
            ..ScalingKnobs::default()
        }
    );
}

#[test]
fn slo_annotations_are_read_and_checked() {
    let defaults = ScalingKnobs::default();
    assert_eq!(defaults.ttft_slo, Duration::from_millis(1000));
    assert_eq!(defaults.tpot_slo, Duration::from_millis(100));
    assert_eq!(defaults.target_utilization, 0.8);
    let pa = autoscaler(
        &annotations(&[
            ("autoscaling.brix.dev/ttft-slo-ms", "500"),
            ("autoscaling.brix.dev/tpot-slo-ms", "42.5"),
            ("autoscaling.brix.dev/target-utilization", "1"),
        ]),
        "",
    );
    let knobs = pa.knobs().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(knobs.ttft_slo, Duration::from_millis(500));
    assert_eq!(knobs.tpot_slo, Duration::from_micros(42_500));
    assert_eq!(knobs.target_utilization, 1.0);
    assert_eq!(
        (defaults.sync_period, defaults.scale_to_zero_grace),
        (None, Duration::from_secs(30))
    );
    let pa = autoscaler(
        &annotations(&[
            ("autoscaling.brix.dev/sync-period", "1s"),
            ("autoscaling.brix.dev/scale-to-zero-grace-period", "1m"),
        ]),
        "",
    );
    let knobs = pa.knobs().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(knobs.sync_period, Some(Duration::from_secs(1)));
    assert_eq!(knobs.scale_to_zero_grace, Duration::from_secs(60));
    let ann = "metadata.annotations";
    for (key, value, want) in [
        ("ttft-slo-ms", "0", "is not a latency target"),
        ("ttft-slo-ms", "1s", "is not a latency target"),
        ("tpot-slo-ms", "-3", "is not a latency target"),
        ("tpot-slo-ms", "NaN", "is not a latency target"),
        ("tpot-slo-ms", "1e12", "is not a latency target"),
        ("target-utilization", "0", "is not a utilization"),
        ("target-utilization", "1.01", "is not a utilization"),
        ("target-utilization", "inf", "is not a utilization"),
        ("ttft-slo", "5", "unknown autoscaling key"),
        ("sync-period", "0s", "is not a decision period"),
        ("sync-period", "2", "duration"),
        ("scale-to-zero-grace-period", "2h", "is not a grace period"),
    ] {
        let key = format!("autoscaling.brix.dev/{key}");
        let err = autoscaler(&annotations(&[(&key, value)]), "")
            .knobs()
            .err()
            .unwrap_or_else(|| panic!("{key}={value} accepted"))
            .to_string();
        assert!(err.starts_with(&format!("{ann}[{key}]: ")), "{err}");
        assert!(err.contains(want), "{err}");
    }
    // The unknown-key message lists Brix's keys among the known ones.
    let err = autoscaler(&annotations(&[("x.autoscaling.brix.dev/y", "1")]), "")
        .knobs()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("autoscaling.brix.dev/tpot-slo-ms"), "{err}");
}

#[test]
fn legacy_names_are_aliases() {
    // The shapes of AIBrix's own sample manifests (quirk 17): these keys do nothing in AIBrix.
    let apa = autoscaler(
        &annotations(&[
            ("autoscaling.aibrix.ai/up-fluctuation-tolerance", "0.1"),
            ("autoscaling.aibrix.ai/down-fluctuation-tolerance", "0.2"),
            ("apa.autoscaling.aibrix.ai/window", "30s"),
        ]),
        "",
    );
    let knobs = apa.knobs().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (knobs.scale_up_tolerance, knobs.scale_down_tolerance),
        (0.1, 0.2)
    );
    assert_eq!(knobs.stable_window, Duration::from_secs(30));
    // The panic window follows a stable window shorter than its 60 s default.
    assert_eq!(knobs.panic_window, Duration::from_secs(30));

    let kpa = autoscaler(
        "  labels:\n    kpa.autoscaling.aibrix.ai/scale-down-delay: 3m\n",
        "",
    );
    let knobs = kpa.knobs().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(knobs.scale_down_cooldown, Duration::from_secs(180));

    let old = autoscaler(
        &annotations(&[
            ("apa.autoscaling.aibrix.ai/up-fluctuation-tolerance", "1.2"),
            ("kpa.autoscaling.aibrix.ai/panic-threshold", "3"),
            ("kpa.autoscaling.aibrix.ai/stable-window", "60s"),
            ("kpa.autoscaling.aibrix.ai/scale-up-cooldown", "10s"),
        ]),
        "",
    );
    let knobs = old.knobs().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(knobs.scale_up_tolerance, 1.2);
    assert_eq!(knobs.panic_threshold, 3.0);
    assert_eq!(knobs.stable_window, Duration::from_secs(60));
    assert_eq!(knobs.scale_up_cooldown, Duration::from_secs(10));
}

#[test]
fn bad_values_and_keys_name_the_annotation() {
    let ann = "metadata.annotations";
    let cases: Vec<(String, &str, &str)> = vec![
        (
            annotations(&[("autoscaling.aibrix.ai/max-scale-up-rate", "fast")]),
            "",
            "[autoscaling.aibrix.ai/max-scale-up-rate]: 'fast' is not a rate",
        ),
        (
            annotations(&[("autoscaling.aibrix.ai/max-scale-down-rate", "0.5")]),
            "",
            "[autoscaling.aibrix.ai/max-scale-down-rate]: '0.5' is not a rate",
        ),
        (
            annotations(&[("autoscaling.aibrix.ai/scale-up-tolerance", "-0.1")]),
            "",
            "[autoscaling.aibrix.ai/scale-up-tolerance]: '-0.1' is not a tolerance",
        ),
        (
            annotations(&[("autoscaling.aibrix.ai/scale-down-tolerance", "1")]),
            "",
            "[autoscaling.aibrix.ai/scale-down-tolerance]: '1' is not a scale-down tolerance",
        ),
        (
            annotations(&[("autoscaling.aibrix.ai/panic-threshold", "1")]),
            "",
            "[autoscaling.aibrix.ai/panic-threshold]: '1' is not a panic threshold",
        ),
        (
            annotations(&[("autoscaling.aibrix.ai/scale-down-cooldown-window", "300")]),
            "",
            "[autoscaling.aibrix.ai/scale-down-cooldown-window]: '300' is not a duration like 300s, 5m or 1h30m: missing unit",
        ),
        (
            annotations(&[("autoscaling.aibrix.ai/scale-up-cooldown-window", "-1s")]),
            "",
            "[autoscaling.aibrix.ai/scale-up-cooldown-window]: '-1s' is not a duration",
        ),
        (
            annotations(&[("autoscaling.aibrix.ai/scale-to-zero", "yes")]),
            "",
            "[autoscaling.aibrix.ai/scale-to-zero]: 'yes' is not a boolean",
        ),
        (
            annotations(&[("apa.autoscaling.aibrix.ai/window", "2h")]),
            "",
            "[apa.autoscaling.aibrix.ai/window]: '2h' is not a window",
        ),
        (
            annotations(&[("autoscaling.aibrix.ai/scale-down-dealy", "3m")]),
            "",
            "[autoscaling.aibrix.ai/scale-down-dealy]: unknown autoscaling key; known keys: autoscaling.aibrix.ai/max-scale-up-rate",
        ),
        (
            annotations(&[("kpa.autoscaling.aibrix.ai/target-burst-capacity", "45")]),
            "",
            "[kpa.autoscaling.aibrix.ai/target-burst-capacity]: unknown autoscaling key",
        ),
        (
            annotations(&[
                ("autoscaling.aibrix.ai/scale-down-cooldown-window", "5m"),
                ("kpa.autoscaling.aibrix.ai/scale-down-delay", "3m"),
            ]),
            "",
            "[kpa.autoscaling.aibrix.ai/scale-down-delay]: sets the same knob as metadata.annotations[autoscaling.aibrix.ai/scale-down-cooldown-window] to a different value",
        ),
        (
            annotations(&[("apa.autoscaling.aibrix.ai/window", "30s")]),
            "  observeWindowSeconds: 60\n",
            "spec.observeWindowSeconds: disagrees with metadata.annotations[apa.autoscaling.aibrix.ai/window]",
        ),
    ];
    for (meta, spec, want) in cases {
        let got = autoscaler(&meta, spec).knobs().map_err(|e| e.to_string());
        let want = if want.starts_with('[') {
            format!("{ann}{want}")
        } else {
            want.to_string()
        };
        match &got {
            Err(got) if got.starts_with(&want) => {}
            _ => panic!("for\n{meta}{spec}want {want:?}, got {got:?}"),
        }
    }
    // The same value twice (annotation and label copy, or alias and spec) is fine.
    let both = autoscaler(
        "  labels:\n    autoscaling.aibrix.ai/scale-to-zero: 'true'\n  annotations:\n    autoscaling.aibrix.ai/scale-to-zero: 'true'\n    apa.autoscaling.aibrix.ai/window: 1m\n",
        "  observeWindowSeconds: 60\n",
    );
    assert!(both.knobs().is_ok_and(|k| k.scale_to_zero));
    // validate_resources runs the same checks, under the document's path.
    let bad = autoscaler(&annotations(&[("autoscaling.aibrix.ai/oops", "1")]), "");
    let err = validate_resources(&[Resource::PodAutoscaler(bad)], &["m"]).map_err(|e| e.field);
    assert_eq!(
        err,
        Err("resources[0].metadata.annotations[autoscaling.aibrix.ai/oops]".into())
    );
}
