use crate::workload::{
    Arrival, ArrivalError, ArrivalSpec, MultiTurn, SharedPrefix, Workload, is_closed_loop, schedule,
};

fn singles(n: u32) -> Workload {
    SharedPrefix {
        groups: 1,
        prefix: 2,
        suffix: 1,
        output: 1,
        requests: n,
    }
    .generate(0)
}

fn times(w: &Workload) -> Vec<f64> {
    w.requests.iter().map(|r| r.at_s).collect()
}

#[test]
fn arrivals_parse_and_print() {
    let cases = [
        ("poisson:5", Arrival::Poisson { rate: 5.0 }),
        ("constant:2", Arrival::Constant { rate: 2.0 }),
        ("trace:0.5", Arrival::Trace { scale: 0.5 }),
        ("trace", Arrival::Trace { scale: 1.0 }),
        ("trace:0", Arrival::Trace { scale: 0.0 }),
        ("closed:16", Arrival::ClosedLoop { users: 16 }),
    ];
    for (text, arrival) in cases {
        assert_eq!(text.parse::<Arrival>(), Ok(arrival), "{text}");
        assert_eq!(arrival.to_string().parse::<Arrival>(), Ok(arrival));
    }
    assert!(is_closed_loop(&Arrival::ClosedLoop { users: 2 }));
    assert!(!is_closed_loop(&Arrival::Poisson { rate: 1.0 }));
    assert_eq!(Arrival::ClosedLoop { users: 3 }.users(), Some(3));
}

#[test]
fn arrival_errors_name_the_field() {
    let cases = [
        ("poisson:0", "rate"),
        ("poisson", "rate"),
        ("constant:-2", "rate"),
        ("constant:NaN", "rate"),
        ("trace:-1", "scale"),
        ("closed:0", "users"),
        ("closed:2.5", "users"),
    ];
    for (text, expected) in cases {
        match text.parse::<Arrival>() {
            Err(ArrivalError::BadValue { field, .. }) => assert_eq!(field, expected, "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
    assert_eq!(
        "burst:3".parse::<Arrival>(),
        Err(ArrivalError::UnknownKind {
            kind: "burst".into()
        })
    );
}

#[test]
fn poisson_arrivals_have_the_mean_rate_and_are_seeded() {
    let arrival = Arrival::Poisson { rate: 5.0 };
    let w = schedule(singles(20_000), &arrival, 42, None, None);
    let t = times(&w);
    assert!(t.windows(2).all(|p| p[0] <= p[1]) && t[0] > 0.0);
    let rate = t.len() as f64 / t[t.len() - 1];
    assert!((rate - 5.0).abs() < 0.1, "rate {rate}");
    let gaps: Vec<f64> = t.windows(2).map(|p| p[1] - p[0]).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    assert!(
        (var.sqrt() / mean - 1.0).abs() < 0.05,
        "exponential gaps have CV 1"
    );
    assert_eq!(schedule(singles(20_000), &arrival, 42, None, None), w);
    assert_ne!(
        times(&schedule(singles(10), &arrival, 43, None, None)),
        t[..10]
    );
}

#[test]
fn constant_arrivals_are_exact() {
    let w = schedule(singles(5), &Arrival::Constant { rate: 2.0 }, 1, None, None);
    assert_eq!(times(&w), [0.0, 0.5, 1.0, 1.5, 2.0]);
}

#[test]
fn trace_arrivals_scale_the_workloads_own_times() {
    let mut w = singles(4);
    for (i, r) in w.requests.iter_mut().enumerate() {
        r.at_s = i as f64 * 3.0;
    }
    assert_eq!(
        times(&schedule(
            w.clone(),
            &Arrival::Trace { scale: 0.5 },
            1,
            None,
            None
        )),
        [0.0, 1.5, 3.0, 4.5]
    );
    assert_eq!(
        times(&schedule(
            w.clone(),
            &Arrival::Trace { scale: 1.0 },
            1,
            None,
            None
        )),
        times(&w)
    );
    let closed = schedule(w, &Arrival::ClosedLoop { users: 2 }, 1, None, None);
    assert_eq!(times(&closed), [0.0; 4]);
}

#[test]
fn duration_and_cap_trim_and_renumber() {
    let arrival = Arrival::Constant { rate: 2.0 };
    let w = schedule(singles(100), &arrival, 1, Some(10.0), None);
    assert_eq!(w.requests.len(), 20, "starts in [0, 10)");
    let w = schedule(singles(100), &arrival, 1, Some(10.0), Some(7));
    assert_eq!(w.requests.len(), 7);
    let spec = ArrivalSpec {
        arrival,
        duration_s: None,
        max_requests: Some(3),
    };
    let w = spec.apply(singles(100), 1);
    assert_eq!(
        w.requests.iter().map(|r| r.id).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let poisson = schedule(
        singles(1000),
        &Arrival::Poisson { rate: 10.0 },
        5,
        Some(30.0),
        None,
    );
    assert!(poisson.requests.iter().all(|r| r.at_s < 30.0));
    assert!(
        (250..350).contains(&poisson.requests.len()),
        "{}",
        poisson.requests.len()
    );
}

#[test]
fn sessions_get_one_start_and_are_trimmed_whole() {
    let spec = MultiTurn {
        sessions: 10,
        turns: 3,
        system: 4,
        systems: 1,
        context: 0,
        user: 2,
        output: 2,
        think: 1.0,
    };
    let w = schedule(
        spec.generate(1),
        &Arrival::Constant { rate: 1.0 },
        1,
        None,
        None,
    );
    for chunk in w.requests.chunks(3) {
        let start = chunk[0].at_s;
        let mut expected = start;
        for r in chunk {
            let turn = r.session.expect("session");
            expected += turn.think_s;
            assert!(
                (r.at_s - expected).abs() < 1e-9,
                "later turns: start + think so far"
            );
        }
        assert_eq!(start, chunk[0].session.map_or(0, |t| t.session) as f64);
    }
    let trimmed = schedule(
        spec.generate(1),
        &Arrival::Constant { rate: 1.0 },
        1,
        Some(4.0),
        None,
    );
    assert_eq!(
        trimmed.requests.len(),
        12,
        "sessions starting at 0..=3, all three turns each"
    );
    let closed = schedule(
        spec.generate(1),
        &Arrival::ClosedLoop { users: 4 },
        1,
        Some(4.0),
        Some(5),
    );
    assert_eq!(times(&closed), [0.0; 5]);
}

#[test]
fn time_varying_arrivals_parse_and_refuse_bad_fields() {
    let sine = Arrival::Sine {
        mean: 12.0,
        amplitude: 3.6,
        period_s: 120.0,
    };
    assert_eq!("sine:12,3.6,120".parse::<Arrival>(), Ok(sine));
    assert_eq!(sine.to_string().parse::<Arrival>(), Ok(sine));
    let onoff = Arrival::OnOff {
        peak: 20.0,
        base: 0.0,
        on_s: 60.0,
        off_s: 120.0,
    };
    assert_eq!("onoff:20,0,60,120".parse::<Arrival>(), Ok(onoff));
    assert_eq!(onoff.to_string().parse::<Arrival>(), Ok(onoff));
    for (text, field) in [
        ("sine:12,3.6", "period"),
        ("sine:12,13,120", "amplitude"),
        ("sine:0,0,120", "mean"),
        ("sine:12,3.6,120,4", "fields"),
        ("onoff:20,2,x,120", "on"),
        ("onoff:20,-1,60,120", "base"),
    ] {
        match text.parse::<Arrival>() {
            Err(ArrivalError::BadValue { field: f, .. }) => assert_eq!(f, field, "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
}

/// Starts in [from, to) per second.
fn rate_between(t: &[f64], from: f64, to: f64) -> f64 {
    t.iter().filter(|x| **x >= from && **x < to).count() as f64 / (to - from)
}

#[test]
fn sine_arrivals_follow_the_rate_curve() {
    let arrival = Arrival::Sine {
        mean: 20.0,
        amplitude: 10.0,
        period_s: 100.0,
    };
    let w = schedule(singles(20_000), &arrival, 7, Some(1000.0), None);
    let t = times(&w);
    assert!(t.windows(2).all(|p| p[0] <= p[1]));
    // Over whole periods the mean rate; around the crest (t = 25 mod 100) near 30/s, around
    // the trough (t = 75 mod 100) near 10/s.
    let mean = rate_between(&t, 0.0, 1000.0);
    assert!((mean - 20.0).abs() < 1.0, "mean {mean}");
    let crest: f64 = (0..10)
        .map(|k| rate_between(&t, 100.0 * f64::from(k) + 20.0, 100.0 * f64::from(k) + 30.0))
        .sum::<f64>()
        / 10.0;
    let trough: f64 = (0..10)
        .map(|k| rate_between(&t, 100.0 * f64::from(k) + 70.0, 100.0 * f64::from(k) + 80.0))
        .sum::<f64>()
        / 10.0;
    assert!(crest > 2.5 * trough, "crest {crest} trough {trough}");
    assert_eq!(
        schedule(singles(500), &arrival, 7, None, None),
        schedule(singles(500), &arrival, 7, None, None)
    );
}

#[test]
fn onoff_arrivals_burst_and_rest() {
    let arrival = Arrival::OnOff {
        peak: 30.0,
        base: 1.0,
        on_s: 10.0,
        off_s: 30.0,
    };
    let w = schedule(singles(5_000), &arrival, 3, Some(400.0), None);
    let t = times(&w);
    let on: f64 = (0..10)
        .map(|k| rate_between(&t, 40.0 * f64::from(k), 40.0 * f64::from(k) + 10.0))
        .sum::<f64>()
        / 10.0;
    let off: f64 = (0..10)
        .map(|k| rate_between(&t, 40.0 * f64::from(k) + 10.0, 40.0 * f64::from(k) + 40.0))
        .sum::<f64>()
        / 10.0;
    assert!((on - 30.0).abs() < 3.0 && off < 2.0, "on {on} off {off}");
}
