//! APA: AIBrix's tolerance bands and rate caps (`algorithm/apa.go`), then Kubernetes
//! stabilization.

use super::*;

/// AIBrix's benchmark APA: target as given, up tolerance 0.1, down 0.2, window 30 s; no
/// scale-down cooldown so one decision shows the formula.
fn apa(target: f64) -> Policy {
    let mut p = pod_policy(Strategy::Apa, target, 1, 100);
    p.knobs.scale_down_tolerance = 0.2;
    p.knobs.stable_window = secs(30);
    p.knobs.panic_window = secs(30);
    p.knobs.scale_down_cooldown = secs(0);
    p
}

/// One decision after a stable window of `per_pod` on `n` pods.
fn steady(p: &Policy, n: u32, per_pod: f64) -> Decision {
    let mut a = Autoscaler::new(p.clone());
    feed(&mut a, 0, 30, |_| pods(n, per_pod));
    a.decide(&fleet(n), 30.0)
}

#[test]
fn aibrix_apa_vectors() {
    let p = apa(0.5);
    for (n, u, want, limit) in [
        // r = 1.6 > 1.1: min(ceil(5 × 1.6), ceil(5 × 2)) = 8
        (5, 0.8, 8, None),
        // r = 4: min(20, 10) = 10, capped by the scale-up rate
        (5, 2.0, 10, Some(Limit::ScaleUpRate)),
        // r = 1.04, inside [0.8, 1.1]: hold
        (5, 0.52, 5, Some(Limit::Tolerance)),
        // r = 1.1 exactly: still inside
        (10, 0.55, 10, Some(Limit::Tolerance)),
        // r = 0.84: inside the wider down band
        (10, 0.42, 10, Some(Limit::Tolerance)),
        // r = 0.7 < 0.8: max(ceil(7), floor(10 / 2)) = 7
        (10, 0.35, 7, None),
        // r = 0.4: max(4, 5) = 5, floored by the scale-down rate
        (10, 0.2, 5, Some(Limit::ScaleDownRate)),
        // r = 0: floor(1 / 2) = 0, then minReplicas 1
        (1, 0.0, 1, Some(Limit::MinReplicas)),
    ] {
        let d = steady(&p, n, u);
        assert_eq!(d.desired, want, "{n} × {u}: {}", d.reason());
        if let Some(l) = limit {
            assert!(limited(&d, &l), "{n} × {u}: {}", d.reason());
        }
    }
}

#[test]
fn hold_keeps_replicas_that_are_starting() {
    // Inside the band with 3 ready and 2 starting: the count stays 5, it does not drop to 3.
    let mut a = Autoscaler::new(apa(0.5));
    feed(&mut a, 0, 30, |_| pods(3, 0.5));
    let f = FleetState {
        desired: 5,
        ready: 3,
        starting: 2,
        held: 0,
    };
    assert_eq!(a.decide(&f, 30.0).desired, 5);
}

#[test]
fn a_total_source_is_divided_by_ready_pods() {
    let mut p = apa(100.0);
    p.sources[0].kind = SourceKind::Total;
    let mut a = Autoscaler::new(p);
    feed(&mut a, 0, 30, |_| Reading::Total(800.0));
    // u = 800 / 4 = 200, r = 2: min(8, 8) = 8.
    assert_eq!(a.decide(&fleet(4), 30.0).desired, 8);
}

#[test]
fn the_stable_window_smooths_a_spike() {
    // A 2 s spike to twice the target inside a 30 s window moves the mean by a fifteenth.
    let mut a = Autoscaler::new(apa(0.5));
    feed(&mut a, 0, 30, |t| {
        pods(4, if t >= 28.0 { 1.0 } else { 0.5 })
    });
    let d = a.decide(&fleet(4), 29.5);
    // mean = (28 × 0.5 + 2 × 1.0) / 30 = 0.533: r = 1.07, inside the band.
    assert_eq!(d.desired, 4, "{}", d.reason());
}

#[test]
fn scale_down_is_stabilized_with_kubernetes_semantics() {
    let mut p = apa(0.5);
    p.knobs.scale_down_cooldown = secs(60);
    let mut a = Autoscaler::new(p);
    feed(&mut a, 0, 30, |_| pods(4, 1.0));
    let d = a.decide(&fleet(4), 30.0);
    assert_eq!(d.desired, 8);
    // The load halves: a quarter of the target per pod on 8 pods, r = 0.5 → 4, held at 8
    // while a recommendation of 8 is inside the 60 s window (t = 30, and t = 40 where the
    // window still held the older load and the band kept 8).
    let mut fed = 30;
    for t in [40, 60, 80, 99] {
        feed(&mut a, fed, t + 1, |_| pods(8, 0.25));
        fed = t + 1;
        let d = a.decide(&fleet(8), f64::from(t));
        assert_eq!(d.desired, 8, "t={t}: {}", d.reason());
    }
    feed(&mut a, fed, 102, |_| pods(8, 0.25));
    assert_eq!(a.decide(&fleet(8), 101.0).desired, 4);
}

#[test]
fn the_rate_cap_does_not_cancel_starting_replicas() {
    let mut a = Autoscaler::new(apa(0.5));
    feed(&mut a, 0, 30, |_| pods(1, 1.75)); // r = 3.5 on one ready pod: ceil(3.5) = 4
    let starting = FleetState {
        desired: 4,
        ready: 1,
        starting: 3,
        held: 0,
    };
    assert_eq!(a.decide(&starting, 30.0).desired, 4);
    let d = a.decide(&fleet(1), 31.0);
    assert_eq!(d.desired, 2, "{}", d.reason());
}
