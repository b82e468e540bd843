//! Steps every strategy shares: bounds, history, timing, start-up estimate, gateway sources,
//! and documents resolved into policies.

use brix_api::PodAutoscaler;

use super::*;
use crate::{Load, PolicyError};

#[test]
fn bounds_clamp_and_say_so() {
    let mut a = Autoscaler::new(pod_policy(Strategy::Hpa, 10.0, 2, 6));
    a.observe(0, pods(4, 100.0), 0.0);
    let d = a.decide(&fleet(4), 0.0);
    assert_eq!(d.recommendation, Some(40));
    assert_eq!(d.desired, 6);
    assert!(limited(&d, &Limit::MaxReplicas), "{}", d.reason());
    let mut a = Autoscaler::new(pod_policy(Strategy::Hpa, 10.0, 2, 6));
    a.observe(0, pods(4, 1.0), 0.0);
    let d = a.decide(&fleet(4), 0.0);
    assert_eq!(d.recommendation, Some(1));
    // The 300 s scale-down window has only this recommendation: 1, then minReplicas.
    assert_eq!(d.desired, 2);
    assert!(limited(&d, &Limit::MinReplicas), "{}", d.reason());
    // A count held for missing metrics is still brought inside the bounds.
    let mut a = Autoscaler::new(pod_policy(Strategy::Kpa, 10.0, 2, 6));
    let d = a.decide(&fleet(9), 0.0);
    assert_eq!(d.desired, 6, "{}", d.reason());
}

#[test]
fn an_active_utc_schedule_sets_the_bounds() {
    let business = brix_api::Schedule {
        name: "business".into(),
        timezone: None,
        days_of_week: Vec::new(),
        start_time: "09:00".into(),
        end_time: "17:00".into(),
        min_replicas: Some(4),
        max_replicas: None,
    };
    // The driver's clock zero is 08:59:00 UTC on 2026-11-30.
    let epoch = 1_795_996_800.0 + 8.0 * 3600.0 + 59.0 * 60.0;
    let schedules = crate::Schedules::new(&[business], epoch);
    let mut a = Autoscaler::new(pod_policy(Strategy::Kpa, 10.0, 1, 6)).with_schedules(schedules);
    assert_eq!(a.decide(&fleet(1), 0.0).desired, 1);
    let d = a.decide(&fleet(1), 60.0);
    assert_eq!(d.desired, 4, "{}", d.reason());
    assert!(limited(&d, &Limit::MinReplicas));
}

#[test]
fn history_keeps_the_last_twenty_and_timing() {
    let mut a = Autoscaler::new(pod_policy(Strategy::Kpa, 10.0, 1, 6));
    assert_eq!(a.next_decision_at(), f64::NEG_INFINITY);
    for i in 0..25 {
        a.decide(&fleet(1), f64::from(i) * 2.0);
    }
    let h = a.history();
    assert_eq!(h.len(), 20);
    assert_eq!(h[0].at, 10.0);
    assert_eq!(h[19].at, 48.0);
    // KPA decides every 2 s.
    assert_eq!(a.next_decision_at(), 50.0);
}

#[test]
fn startup_estimate_is_the_larger_of_profile_and_measured() {
    let mut a = Autoscaler::new(pod_policy(Strategy::Kpa, 10.0, 1, 6));
    assert_eq!(a.startup_s(), 0.0);
    a.observe_startup(100.0);
    assert_eq!(a.startup_s(), 100.0);
    a.observe_startup(200.0);
    assert!((a.startup_s() - 130.0).abs() < 1e-9);
    a.observe_startup(f64::NAN);
    assert!((a.startup_s() - 130.0).abs() < 1e-9);
}

#[test]
fn gateway_rates_come_from_load_counters() {
    let mut p = policy(Strategy::Hpa, &[(SourceKind::Gateway, 2.0)], 1, 20);
    p.sources[0].metric = "gateway_requests_per_second".into();
    let mut a = Autoscaler::new(p);
    for t in 0..=30u32 {
        let load = Load {
            requests: 5 * u64::from(t),
            ..Default::default()
        };
        a.observe_load(&load, f64::from(t));
        // A driver's reading for a gateway source is ignored.
        a.observe(0, Reading::Total(1000.0), f64::from(t));
    }
    // 5 req/s over the last sync period (15 s) / 2 per replica = 3.
    let d = a.decide(&fleet(1), 30.0);
    assert_eq!(d.desired, 3, "{}", d.reason());
    assert_eq!(input(&d, "value"), 5.0);
}

#[test]
fn failed_readings_hold_and_say_why() {
    let mut a = Autoscaler::new(pod_policy(Strategy::Apa, 10.0, 1, 6));
    a.observe(
        0,
        Reading::Failed("GET /metrics: connection refused".into()),
        0.0,
    );
    let d = a.decide(&fleet(3), 0.0);
    assert_eq!(d.desired, 3);
    assert_eq!(d.recommendation, None);
    assert!(
        d.reason().contains("connection refused") && d.reason().contains("holding"),
        "{}",
        d.reason()
    );
    // A long, multi-line failure is cut to one bounded line.
    a.observe(
        0,
        Reading::Failed(format!("bad\n{}", "x".repeat(10_000))),
        0.5,
    );
    let reason = a.decide(&fleet(3), 0.5).reason();
    assert!(!reason.contains('\n') && reason.len() < 600, "{reason}");
    // Pods whose values are all missing are no reading either.
    a.observe(0, Reading::Pods(vec![None, None]), 1.0);
    assert_eq!(a.decide(&fleet(3), 1.0).desired, 3);
}

#[test]
fn reason_is_one_line_with_inputs_and_limits() {
    let mut a = Autoscaler::new(pod_policy(Strategy::Hpa, 10.0, 1, 6));
    a.observe(0, pods(3, 30.0), 0.0);
    let d = a.decide(&fleet(3), 0.0);
    assert_eq!(
        d.reason(),
        "3 -> 6 (recommended 9; mean=30 target=10 ratio=3 ready=3; limited by scale-up rate, maxReplicas)"
    );
}

/// A fleet file with one PodAutoscaler `spec` (YAML, indented 4).
fn document(spec: &str) -> PodAutoscaler {
    let yaml = format!(
        "apiVersion: autoscaling.aibrix.ai/v1alpha1\nkind: PodAutoscaler\nmetadata: {{name: p}}\nspec:\n  scaleTargetRef: {{name: m}}\n  maxReplicas: 4\n{spec}"
    );
    match serde_yaml_ng::from_str::<brix_api::Resource>(&yaml) {
        Ok(brix_api::Resource::PodAutoscaler(p)) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn documents_resolve_source_kinds() {
    let p = Policy::from_document(
        &document(
            "  scalingStrategy: KPA\n  metricsSources:\n    - {metricSourceType: pod, targetMetric: num_requests_running, targetValue: '4'}\n    - {metricSourceType: external, targetMetric: gateway_in_flight, targetValue: '8'}\n    - {metricSourceType: domain, endpoint: 'o:8080', path: /m, targetMetric: 'vllm:deployment_replicas', targetValue: '100'}\n",
        ),
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<SourceKind> = p.sources.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        vec![SourceKind::PerPod, SourceKind::Gateway, SourceKind::Total]
    );
    assert_eq!(p.sync_s, 2.0);
    let slo = document("  scalingStrategy: SLO\n");
    assert_eq!(
        Policy::from_document(&slo, None),
        Err(PolicyError::NoProfile)
    );
}

#[test]
fn aibrix_benchmark_kpa_document_holds_scale_down_for_its_legacy_delay() {
    // AIBrix's benchmark KPA: the legacy label `kpa.autoscaling.aibrix.ai/scale-down-delay: 3m`
    // (which AIBrix ignores) is read as the 180 s scale-down window.
    let yaml = "apiVersion: autoscaling.aibrix.ai/v1alpha1\nkind: PodAutoscaler\nmetadata:\n  name: kpa\n  labels: {kpa.autoscaling.aibrix.ai/scale-down-delay: 3m}\nspec:\n  scaleTargetRef: {name: m}\n  minReplicas: 1\n  maxReplicas: 8\n  scalingStrategy: KPA\n  metricsSources:\n    - {metricSourceType: pod, protocolType: http, port: '8000', path: metrics, targetMetric: gpu_cache_usage_perc, targetValue: '0.5'}\n";
    let doc = match serde_yaml_ng::from_str::<brix_api::Resource>(yaml) {
        Ok(brix_api::Resource::PodAutoscaler(p)) => p,
        other => panic!("{other:?}"),
    };
    let p = Policy::from_document(&doc, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.knobs.scale_down_cooldown, secs(180));
    let mut a = Autoscaler::new(p);
    // Four pods at 0.75 KV usage: a total of 3 needs 6 pods at 0.5.
    let mut current = 4;
    let mut first_drop = None;
    for t in 0..900u32 {
        let total = if t < 180 { 3.0 } else { 1.0 };
        a.observe(0, pods(current, total / f64::from(current)), f64::from(t));
        if t >= 178 && t % 2 == 0 {
            let d = a.decide(&fleet(current), f64::from(t));
            if t == 178 {
                assert_eq!(d.desired, 6, "{}", d.reason());
            }
            if d.desired < current && current == 6 {
                first_drop.get_or_insert(t);
            }
            current = d.desired;
        }
    }
    // The stable window falls below 6 pods' worth about 45 s after the load does; the last
    // recommendation of 6 is then held for 180 s (not AIBrix's default 300 s).
    let first_drop = first_drop.unwrap_or_else(|| panic!("never scaled down"));
    assert!(
        (360..480).contains(&first_drop),
        "first drop at {first_drop}"
    );
    assert_eq!(current, 2);
}
