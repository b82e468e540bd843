//! KPA: Knative's `autoscaler_test.go`-style cases (stable mode, panic entry, no scale-down
//! in panic, panic exit, rate clamps, scale to zero) and AIBrix's KPA defects as regressions.

use super::*;

/// Knative's defaults where AIBrix has none of its own: stable 60 s, panic 6 s, scale-up rate
/// 1000, no scale-down delay.
fn knative(target: f64, min: u32, max: u32) -> Policy {
    let mut p = pod_policy(Strategy::Kpa, target, min, max);
    p.knobs.stable_window = secs(60);
    p.knobs.panic_window = secs(6);
    p.knobs.max_scale_up_rate = 1000.0;
    p.knobs.scale_down_cooldown = secs(0);
    p
}

#[test]
fn stable_mode_total_over_target() {
    // Knative: desired = ceil(total / target) where total = per-pod mean × pods.
    for (ready, per_pod, want) in [
        (5, 10.0, 5), // 50 / 10
        (5, 12.0, 6), // 60 / 10
        (5, 10.1, 6), // 50.5 / 10: no tolerance band in Knative
        (4, 5.0, 2),  // 20 / 10, exactly the scale-down floor 4 / 2
        (10, 1.0, 5), // 10 / 10 = 1, floored at 10 / 2
        (2, 15.0, 3), // 30 / 10, 1.5 × ready: below the panic threshold
    ] {
        let mut a = Autoscaler::new(knative(10.0, 1, 100));
        feed(&mut a, 0, 60, |_| pods(ready, per_pod));
        let d = a.decide(&fleet(ready), 60.0);
        assert_eq!(d.desired, want, "{ready} × {per_pod}: {}", d.reason());
        assert!(!d.panic, "{}", d.reason());
    }
}

#[test]
fn aibrix_per_pod_mean_defect_is_fixed() {
    // Eight pods each at the target: the load needs eight. AIBrix divides the per-pod mean by
    // the target (0.5 / 0.5 = 1 pod) and scales down to its rate floor; Knative holds 8.
    let mut p = pod_policy(Strategy::Kpa, 0.5, 1, 10);
    p.knobs.scale_down_cooldown = secs(0);
    let mut a = Autoscaler::new(p.clone());
    feed(&mut a, 0, 180, |_| pods(8, 0.5));
    let d = a.decide(&fleet(8), 180.0);
    assert_eq!(d.desired, 8, "{}", d.reason());
    // And twice the target per pod asks for twice the pods (AIBrix: ceil(1 / 0.5) = 2).
    let mut a = Autoscaler::new(p);
    feed(&mut a, 0, 180, |_| pods(4, 1.0));
    let d = a.decide(&fleet(4), 180.0);
    assert_eq!(d.desired, 8, "{}", d.reason());
    assert_eq!(input(&d, "stable_total"), 4.0);
}

#[test]
fn aibrix_rates_clamp_relative_to_ready() {
    // AIBrix's default rates 2 / 2: at most ×2 up, ÷2 down per decision.
    let mut p = pod_policy(Strategy::Kpa, 10.0, 1, 100);
    p.knobs.scale_down_cooldown = secs(0);
    let mut a = Autoscaler::new(p.clone());
    feed(&mut a, 0, 180, |_| pods(3, 15.0)); // 45 → 5, capped at 6? no: 5 ≤ 6
    assert_eq!(a.decide(&fleet(3), 180.0).desired, 5);
    let mut a = Autoscaler::new(p.clone());
    feed(&mut a, 0, 180, |_| pods(2, 100.0)); // 200 → 20, capped at 4
    let d = a.decide(&fleet(2), 180.0);
    assert_eq!(d.desired, 4, "{}", d.reason());
    assert!(limited(&d, &Limit::ScaleUpRate));
    let mut a = Autoscaler::new(p);
    feed(&mut a, 0, 180, |_| pods(8, 0.0)); // 0 → floored at 4
    let d = a.decide(&fleet(8), 180.0);
    assert_eq!(d.desired, 4, "{}", d.reason());
    assert!(limited(&d, &Limit::ScaleDownRate));
}

#[test]
fn panic_entry_hold_and_exit() {
    let mut a = Autoscaler::new(knative(10.0, 1, 100));
    // A minute at the target with 5 pods, then a burst to 3× per pod for 6 s.
    feed(&mut a, 0, 60, |_| pods(5, 10.0));
    feed(&mut a, 60, 66, |_| pods(5, 30.0));
    let d = a.decide(&fleet(5), 65.0);
    // Stable: (54 × 50 + 6 × 150) / 60 = 60 → 6; panic: 150 → 15 ≥ 2 × 5: panic.
    assert!(d.panic, "{}", d.reason());
    assert_eq!(input(&d, "dspc"), 6.0);
    assert_eq!(input(&d, "dppc"), 15.0);
    assert_eq!(d.desired, 15, "{}", d.reason());

    // The burst ends at once; 15 pods serve a total of 10 again. In panic: no scale-down.
    let mut t = 66;
    while t < 124 {
        feed(&mut a, t, t + 2, |_| pods(15, 10.0 / 15.0));
        t += 2;
        let d = a.decide(&fleet(15), f64::from(t));
        assert!(d.panic, "t={t}: {}", d.reason());
        assert_eq!(d.desired, 15, "t={t}: {}", d.reason());
    }
    // A full stable window (60 s) after the last crossing (t = 65): panic ends, and the
    // count falls by at most half per decision.
    feed(&mut a, 124, 127, |_| pods(15, 10.0 / 15.0));
    let d = a.decide(&fleet(15), 127.0);
    assert!(!d.panic, "{}", d.reason());
    assert!(d.desired < 15 && d.desired >= 7, "{}", d.reason());
}

#[test]
fn panic_keeps_the_episode_maximum() {
    // Regression for AIBrix's inert MaxPanicPods guard: within one panic episode a lower panic
    // recommendation never lowers the count.
    let mut a = Autoscaler::new(knative(10.0, 1, 100));
    feed(&mut a, 0, 60, |_| pods(2, 10.0));
    feed(&mut a, 60, 66, |_| pods(2, 100.0)); // panic total 200 → 20
    let d = a.decide(&fleet(2), 65.0);
    assert!(d.panic);
    assert_eq!(d.desired, 20, "{}", d.reason());
    // Still over the threshold (6 × 10 on 2 ready... now 20 ready at 3 each: 60 → 6 pods,
    // 6 / 20 < 2: not over, but within the stable window of the last crossing).
    feed(&mut a, 66, 72, |_| pods(20, 3.0));
    let d = a.decide(&fleet(20), 72.0);
    assert!(d.panic, "{}", d.reason());
    assert_eq!(d.desired, 20, "{}", d.reason());
    assert!(limited(&d, &Limit::Panic));
}

#[test]
fn panic_compares_pods_to_ready_not_window_ratio() {
    // Regression for AIBrix's panic test (panic / stable > 2): a tiny stable value and a
    // slightly larger panic one is not a burst in pods.
    let mut a = Autoscaler::new(knative(10.0, 1, 100));
    feed(&mut a, 0, 54, |_| pods(4, 0.01));
    feed(&mut a, 54, 60, |_| pods(4, 0.1));
    let d = a.decide(&fleet(4), 59.0);
    assert!(!d.panic, "{}", d.reason());
}

#[test]
fn scale_to_zero_after_the_grace_period() {
    let mut a = Autoscaler::new(knative(10.0, 0, 10));
    feed(&mut a, 0, 60, |_| pods(1, 0.0));
    let mut current = 1;
    let mut zero_at = None;
    let mut t = 60;
    while t < 120 {
        feed(&mut a, t, t + 2, |_| pods(1, 0.0));
        t += 2;
        let d = a.decide(&fleet(current), f64::from(t));
        if d.desired == 0 {
            zero_at.get_or_insert(t);
        } else {
            assert!(limited(&d, &Limit::ScaleToZeroGrace), "{}", d.reason());
        }
        current = d.desired;
    }
    // The first zero recommendation came at t = 62; 30 s later the target goes to zero.
    assert_eq!(zero_at, Some(92));
}

#[test]
fn no_zero_with_min_replicas_and_activation_from_zero() {
    let mut a = Autoscaler::new(knative(10.0, 1, 10));
    feed(&mut a, 0, 120, |_| pods(1, 0.0));
    let d = a.decide(&fleet(1), 120.0);
    assert_eq!(d.desired, 1);
    // At zero there are no pods to read: metrics are missing, the count holds at 0 until a
    // request is held, then one replica is asked for.
    let mut a = Autoscaler::new(knative(10.0, 0, 10));
    let d = a.decide(&fleet(0), 0.0);
    assert_eq!(d.desired, 0, "{}", d.reason());
    let held = FleetState {
        held: 3,
        ..fleet(0)
    };
    let d = a.decide(&held, 2.0);
    assert_eq!(d.desired, 1, "{}", d.reason());
    assert!(limited(&d, &Limit::Activation));
}

#[test]
fn gateway_in_flight_is_a_total() {
    let mut p = policy(Strategy::Kpa, &[(SourceKind::Gateway, 4.0)], 1, 20);
    p.knobs.scale_down_cooldown = secs(0);
    let mut a = Autoscaler::new(p);
    for t in 0..180 {
        let load = crate::Load {
            in_flight: 24,
            ..Default::default()
        };
        a.observe_load(&load, f64::from(t));
    }
    let d = a.decide(&fleet(3), 180.0);
    // 24 in flight / 4 per replica = 6 (= 2 × 3: at the panic threshold, so panicking too).
    assert_eq!(d.desired, 6, "{}", d.reason());
}

#[test]
fn the_grace_period_restarts_after_activation() {
    let mut p = policy(Strategy::Kpa, &[(SourceKind::Gateway, 4.0)], 0, 4);
    p.knobs.scale_down_cooldown = secs(0);
    let mut a = Autoscaler::new(p);
    let idle = crate::Load::default();
    let mut current = 1;
    for t in 0..=100 {
        a.observe_load(&idle, f64::from(t));
        if t % 2 == 0 {
            current = a.decide(&fleet(current), f64::from(t)).desired;
        }
    }
    assert_eq!(current, 0);
    // A request is held: one replica; once it serves and the load is gone, the last replica
    // stays for a whole grace period again.
    let held = FleetState {
        held: 1,
        ..fleet(0)
    };
    assert_eq!(a.decide(&held, 102.0).desired, 1);
    for t in [104.0, 120.0, 132.0] {
        a.observe_load(&idle, t);
        let d = a.decide(&fleet(1), t);
        assert_eq!(d.desired, 1, "t={t}: {}", d.reason());
        assert!(limited(&d, &Limit::ScaleToZeroGrace));
    }
    a.observe_load(&idle, 134.0);
    assert_eq!(a.decide(&fleet(1), 134.0).desired, 0);
}

#[test]
fn the_rate_cap_does_not_cancel_starting_replicas() {
    // One ready replica carries 3.5 × the target; three more are starting. Knative's cap
    // (2 × ready = 2 with AIBrix's rate) would cut the count to 2; Brix keeps the 4 asked for.
    let mut p = pod_policy(Strategy::Kpa, 10.0, 1, 8);
    p.knobs.scale_down_cooldown = secs(0);
    let mut a = Autoscaler::new(p.clone());
    feed(&mut a, 0, 180, |_| pods(1, 35.0));
    let starting = FleetState {
        desired: 4,
        ready: 1,
        starting: 3,
        held: 0,
    };
    let d = a.decide(&starting, 180.0);
    assert_eq!(d.desired, 4, "{}", d.reason());
    // From a converged fleet of one, the cap applies as in Knative.
    let mut a = Autoscaler::new(p);
    feed(&mut a, 0, 180, |_| pods(1, 35.0));
    let d = a.decide(&fleet(1), 180.0);
    assert_eq!(d.desired, 2, "{}", d.reason());
    assert!(limited(&d, &Limit::ScaleUpRate));
}
