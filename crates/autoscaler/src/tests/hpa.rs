//! HPA: Kubernetes' `replica_calculator.go` vectors, stabilization and rate policies.

use super::*;

/// One decision of a fresh HPA (no stabilization history) on one reading.
fn once(target: f64, reading: Reading, fleet: FleetState) -> Decision {
    let mut p = pod_policy(Strategy::Hpa, target, 1, 64);
    p.knobs.scale_down_cooldown = secs(0);
    let mut a = Autoscaler::new(p);
    a.observe(0, reading, 0.0);
    a.decide(&fleet, 0.0)
}

#[test]
fn kubernetes_docs_ratio_examples() {
    // "200m against 100m doubles, 50m halves, within 10 % skips" (HPA docs), 4 replicas.
    for (value, want, limit) in [
        (200.0, 8, None),
        (50.0, 2, None),
        (100.0, 4, Some(Limit::Tolerance)),
        (109.0, 4, Some(Limit::Tolerance)),
        (91.0, 4, Some(Limit::Tolerance)),
        (111.0, 5, None),
        (89.0, 4, None), // ceil(0.89 × 4) = 4: a ratio out of band can still keep the count
        (10.0, 1, None),
    ] {
        let d = once(100.0, pods(4, value), fleet(4));
        assert_eq!(d.desired, want, "{value}: {}", d.reason());
        assert_eq!(d.recommendation, Some(want), "{value}");
        if let Some(l) = limit {
            assert!(limited(&d, &l), "{value}: {}", d.reason());
        }
    }
}

#[test]
fn missing_pods_count_zero_on_scale_up_and_target_on_scale_down() {
    let p = |v: &[Option<f64>]| Reading::Pods(v.to_vec());
    let cases = [
        // Scale-up: the missing pod counts 0: (300 + 300 + 0) / 3 = 200 → ceil(2 × 3) = 6.
        (p(&[Some(300.0), Some(300.0), None]), fleet(3), 6),
        // Scale-down: missing pods count 100 %: (20 + 20 + 100 + 100) / 4 = 60 → ceil(2.4) = 3.
        (p(&[Some(20.0), Some(20.0), None, None]), fleet(4), 3),
        // Scale-down that the missing pods bring inside the band: (80 + 300) / 4 = 95 → hold.
        (p(&[Some(80.0), None, None, None]), fleet(4), 4),
        // Scale-up reversed by the missing pods: (150 + 0 + 0) / 3 = 50 < 100 → hold.
        (p(&[Some(150.0), None, None]), fleet(3), 3),
    ];
    for (reading, fleet, want) in cases {
        let d = once(100.0, reading.clone(), fleet);
        assert_eq!(d.desired, want, "{reading:?}: {}", d.reason());
    }
}

#[test]
fn starting_replicas_count_zero_on_scale_up() {
    // Two ready at 2× target, two more already starting: (200 + 200 + 0 + 0) / 4 = 100.
    let starting = FleetState {
        desired: 4,
        ready: 2,
        starting: 2,
        held: 0,
    };
    let d = once(100.0, pods(2, 200.0), starting);
    assert_eq!(d.desired, 4, "{}", d.reason());
    assert!(limited(&d, &Limit::Tolerance));
    // Without them the same reading doubles.
    assert_eq!(once(100.0, pods(2, 200.0), fleet(2)).desired, 4);
    // Starting replicas do not count on a scale-down.
    let down = FleetState {
        desired: 4,
        ready: 2,
        starting: 2,
        held: 0,
    };
    assert_eq!(once(100.0, pods(2, 40.0), down).desired, 1);
}

#[test]
fn external_average_value() {
    let mut p = policy(Strategy::Hpa, &[(SourceKind::Total, 100.0)], 1, 64);
    p.knobs.scale_down_cooldown = secs(0);
    for (value, current, want) in [
        (450.0, 3, 5),   // ceil(450 / 100)
        (310.0, 3, 3),   // 310 / 300 within 10 %
        (100.0, 8, 1),   // ceil(1)
        (1000.0, 2, 10), // ceil(10), before the rate policy (from 2: max(4, 6) = 6)
    ] {
        let mut a = Autoscaler::new(p.clone());
        a.observe(0, Reading::Total(value), 0.0);
        let d = a.decide(&fleet(current), 0.0);
        assert_eq!(d.recommendation, Some(want), "{value}: {}", d.reason());
    }
}

#[test]
fn scale_down_takes_the_highest_recommendation_in_the_window() {
    // Regression for AIBrix's inverted stabilization (it takes the min inside the down window,
    // so a dip scales down at once).
    let mut a = Autoscaler::new(pod_policy(Strategy::Hpa, 100.0, 1, 64));
    let mut current = 4;
    a.observe(0, pods(4, 200.0), 0.0);
    let d = a.decide(&fleet(current), 0.0);
    assert_eq!(d.desired, 8);
    current = d.desired;
    // The load falls: recommendations of 2, held at 8 for the 300 s window.
    let mut t = 15.0;
    while t < 300.0 {
        a.observe(0, pods(current, 25.0), t);
        let d = a.decide(&fleet(current), t);
        assert_eq!(d.recommendation, Some(2), "{}", d.reason());
        assert_eq!(d.desired, 8, "t={t}: {}", d.reason());
        assert!(limited(&d, &Limit::Stabilization));
        t += 15.0;
    }
    a.observe(0, pods(current, 25.0), 300.0);
    assert_eq!(a.decide(&fleet(current), 300.0).desired, 2);
}

#[test]
fn scale_up_rate_policies_are_kubernetes_defaults() {
    let mut a = Autoscaler::new(pod_policy(Strategy::Hpa, 10.0, 1, 64));
    let mut current = 1;
    let mut seen = Vec::new();
    for step in 0..5 {
        let t = 15.0 * f64::from(step);
        // A load of 400 spread over the pods: 40 replicas needed.
        a.observe(0, pods(current, 400.0 / f64::from(current)), t);
        let d = a.decide(&fleet(current), t);
        current = d.desired;
        seen.push(current);
    }
    // From 1: max(+100 %, +4) per 15 s.
    assert_eq!(seen, vec![5, 10, 20, 40, 40]);
}

#[test]
fn several_sources_take_the_largest_and_skip_missing() {
    let mut p = policy(
        Strategy::Hpa,
        &[(SourceKind::PerPod, 10.0), (SourceKind::PerPod, 0.5)],
        1,
        64,
    );
    p.knobs.scale_down_cooldown = secs(0);
    let mut a = Autoscaler::new(p.clone());
    a.observe(0, pods(4, 20.0), 0.0); // 8
    a.observe(1, pods(4, 0.75), 0.0); // 6
    let d = a.decide(&fleet(4), 0.0);
    assert_eq!(d.desired, 8, "{}", d.reason());
    assert!(
        d.inputs
            .iter()
            .any(|(k, _)| k == "gpu_cache_usage_perc.ratio")
    );

    // The second source fails: the first alone decides a scale-up...
    let mut a = Autoscaler::new(p.clone());
    a.observe(0, pods(4, 20.0), 0.0);
    a.observe(1, Reading::Failed("connection refused".into()), 0.0);
    let d = a.decide(&fleet(4), 0.0);
    assert_eq!(d.desired, 8);
    // ...but not a scale-down, as Kubernetes.
    let mut a = Autoscaler::new(p);
    a.observe(0, pods(4, 2.0), 0.0);
    a.observe(1, Reading::Failed("connection refused".into()), 0.0);
    let d = a.decide(&fleet(4), 0.0);
    assert_eq!(d.recommendation, Some(1));
    assert_eq!(d.desired, 4, "{}", d.reason());
    assert!(d.reason().contains("connection refused"), "{}", d.reason());
}

#[test]
fn stale_readings_are_missing() {
    let mut a = Autoscaler::new(pod_policy(Strategy::Hpa, 10.0, 1, 64));
    a.observe(0, pods(4, 1.0), 0.0);
    let d = a.decide(&fleet(4), 31.0);
    assert_eq!(d.desired, 4);
    assert_eq!(d.recommendation, None);
    assert!(limited(&d, &Limit::MissingMetrics(String::new())));
    assert!(d.reason().contains("old"), "{}", d.reason());
}
