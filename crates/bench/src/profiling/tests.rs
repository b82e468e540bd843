use brix_optimizer::{Grid, Slo};
use brix_sim::Catalog;

use super::*;

/// Passes below a known threshold, fails above it; counts its runs.
struct Threshold {
    at: f64,
    runs: AtomicUsize,
}

impl Measurer for Threshold {
    fn measure(&self, shape: Shape, rate: f64, _: &Slo) -> Result<Measurement, ProfilingError> {
        self.runs.fetch_add(1, Ordering::Relaxed);
        // The threshold scales with the shape, so a profile's cells differ.
        let at = self.at / f64::from(shape.input);
        Ok(Measurement {
            attainment: if rate <= at { 1.0 } else { 0.5 },
            throughput: rate,
        })
    }
}

fn threshold(at: f64) -> Threshold {
    Threshold {
        at,
        runs: AtomicUsize::new(0),
    }
}

#[test]
fn the_search_finds_a_known_threshold_within_tolerance() {
    let slo = Slo::default();
    let s = Search::default();
    for at in [0.05, 0.37, 3.7, 37.5, 900.0] {
        let m = threshold(at);
        let r = max_rate(
            &m,
            Shape {
                input: 1,
                output: 1,
            },
            &slo,
            &s,
        )
        .expect("synthetic");
        assert!(r <= at && r >= at / 1.03, "threshold {at}: found {r}");
        assert!(m.runs.load(Ordering::Relaxed) < 25, "{at}: too many runs");
    }
    // Below the floor: unservable, capacity 0; above the ceiling: the ceiling.
    let r = max_rate(
        &threshold(0.001),
        Shape {
            input: 1,
            output: 1,
        },
        &slo,
        &s,
    );
    assert_eq!(r.ok(), Some(0.0));
    let r = max_rate(
        &threshold(1e9),
        Shape {
            input: 1,
            output: 1,
        },
        &slo,
        &s,
    )
    .ok();
    assert!(
        r.is_some_and(|r| r <= s.max_rate && r > s.max_rate / 2.0),
        "{r:?}"
    );
}

#[test]
fn throughput_below_ninety_percent_fails_even_with_good_latency() {
    struct Backlog;
    impl Measurer for Backlog {
        fn measure(&self, _: Shape, rate: f64, _: &Slo) -> Result<Measurement, ProfilingError> {
            Ok(Measurement {
                attainment: 1.0,
                throughput: rate.min(10.0),
            })
        }
    }
    let r = max_rate(
        &Backlog,
        Shape {
            input: 1,
            output: 1,
        },
        &Slo::default(),
        &Search::default(),
    )
    .expect("synthetic");
    assert!(r > 10.0 && r <= 10.0 / 0.9, "{r}");
}

#[test]
fn a_profile_fills_every_bucket_in_aibrix_order() {
    let grid = Grid::log2(0, 2, 3, 4); // inputs 1, 2, 4; outputs 8, 16
    let meta = ProfileMeta {
        gpu: "X".into(),
        cost: 1.5,
        model: "m".into(),
        method: "synthetic".into(),
        max_model_len: 1 << 20,
    };
    let seen = AtomicUsize::new(0);
    let p = build_profile(
        &threshold(40.0),
        &meta,
        &grid,
        &Slo::default(),
        &Search::default(),
        2,
        &|_, _| {
            seen.fetch_add(1, Ordering::Relaxed);
        },
    )
    .expect("profile");
    assert_eq!(seen.load(Ordering::Relaxed), 6);
    assert_eq!(p.indexes, vec![vec![8, 16], vec![1, 2, 4]]);
    for row in &p.tputs {
        for (k, input) in [1.0, 2.0, 4.0].iter().enumerate() {
            let want = 40.0 / input;
            assert!(row[k] <= want && row[k] >= want / 1.031, "{row:?}");
        }
    }
    assert_eq!(p.method.as_deref(), Some("synthetic"));
    let bad = Slo {
        percentile: 0.0,
        ..Slo::default()
    };
    let err = build_profile(
        &threshold(1.0),
        &meta,
        &grid,
        &bad,
        &Search::default(),
        1,
        &|_, _| {},
    );
    assert!(matches!(err, Err(ProfilingError::Invalid(_))), "{err:?}");
}

#[test]
fn shapes_are_fitted_to_the_context_as_a_replay_cuts_them() {
    assert_eq!(
        Shape::fitted(16384, 2048, 8192),
        Shape {
            input: 6144,
            output: 2048
        }
    );
    assert_eq!(
        Shape::fitted(512, 64, 8192),
        Shape {
            input: 512,
            output: 64
        }
    );
    assert_eq!(Shape::fitted(10, 10_000, 8192).output, 8191);
}

#[test]
fn judge_sees_backlog_and_latency() {
    let slo = Slo::default();
    // 400 arrivals at 10/s served in 1 s each: steady, every SLO met.
    let steady: Vec<Sample> = (0..400)
        .map(|i| {
            let a = f64::from(i) * 0.1;
            Sample {
                arrival: a,
                end: Some(a + 1.0),
                ttft: Some(0.2),
                tpot: Some(0.01),
            }
        })
        .collect();
    let m = judge(&mut steady.clone(), 10.0, &slo, 0.1);
    assert_eq!(m.attainment, 1.0);
    assert!((m.throughput - 10.0).abs() < 0.5, "{m:?}");
    // The same arrivals served one every 0.2 s: a queue that grows; throughput ~5/s.
    let mut slow: Vec<Sample> = steady
        .iter()
        .enumerate()
        .map(|(i, s)| Sample {
            end: Some(0.2 * (i as f64 + 1.0)),
            ..*s
        })
        .collect();
    let m = judge(&mut slow, 10.0, &slo, 0.1);
    assert!(m.throughput < 7.0, "{m:?}");
    // Latency over the bound for a fifth of the requests: attainment 0.8 < P90.
    let mut late = steady.clone();
    for s in late.iter_mut().step_by(5) {
        s.ttft = Some(3.0);
    }
    let m = judge(&mut late, 10.0, &slo, 0.0);
    assert!((m.attainment - 0.8).abs() < 1e-9, "{m:?}");
    assert!(!Search::default().passes(&m, 10.0, &slo));
}

fn setup(gpu: &str) -> (brix_sim::ModelProfile, brix_sim::GpuProfile) {
    let c = Catalog::builtin();
    match (c.model("llama-3-8b"), c.gpu(gpu)) {
        (Ok(m), Ok(g)) => (m.clone(), g.clone()),
        _ => panic!("missing built-in profile"),
    }
}

#[test]
fn simulated_capacity_falls_with_longer_requests_and_rises_with_the_gpu() {
    let slo = Slo::default();
    let s = Search {
        rel_tol: 0.1,
        ..Search::default()
    };
    let cap = |gpu: &str, input, output| {
        let (m, g) = setup(gpu);
        let mut meas = SimMeasurer::new(m, g).expect("fits");
        meas.min_requests = 120;
        meas.min_duration_s = 20.0;
        max_rate(&meas, Shape { input, output }, &slo, &s).expect("sim")
    };
    let base = cap("L4", 256, 32);
    let long_in = cap("L4", 4096, 32);
    let long_out = cap("L4", 256, 256);
    let h100 = cap("H100", 256, 32);
    assert!(base > 0.0, "{base}");
    assert!(
        long_in < base && long_out < base,
        "{base} {long_in} {long_out}"
    );
    assert!(h100 > base, "H100 {h100} vs L4 {base}");
}

#[test]
fn analytic_capacity_follows_the_same_order_and_has_a_steady_state() {
    let slo = Slo::default();
    let s = Search::default();
    let (m, g) = setup("A10");
    let a10 = AnalyticMeasurer::new(&m, &g).expect("fits");
    let (m, g) = setup("H100");
    let h100 = AnalyticMeasurer::new(&m, &g).expect("fits");
    let cap = |meas: &AnalyticMeasurer, input, output| {
        max_rate(meas, Shape { input, output }, &slo, &s).expect("analytic")
    };
    let base = cap(&a10, 512, 128);
    assert!(base > 0.0);
    assert!(cap(&a10, 4096, 128) < base);
    assert!(cap(&a10, 512, 1024) < base);
    assert!(cap(&h100, 512, 128) > base);
    // Low load: one decode per step, TTFT about one prefill.
    let st = a10
        .steady_state(
            Shape {
                input: 512,
                output: 128,
            },
            0.01,
            0.9,
        )
        .expect("steady");
    assert!(
        st.batch < 1.0 && st.step_s > 0.0 && st.ttft_s < 1.0,
        "{st:?}"
    );
    // Far over capacity: none.
    assert!(
        a10.steady_state(
            Shape {
                input: 512,
                output: 128
            },
            base * 10.0,
            0.9
        )
        .is_none()
    );
}

#[test]
fn comparison_reports_ratios_and_one_sided_buckets() {
    let grid = Grid::log2(0, 1, 0, 0);
    let p = |a: f64, b: f64| brix_optimizer::Profile {
        gpu: "X".into(),
        cost: 1.0,
        tputs: vec![vec![a, b]],
        indexes: vec![grid.outputs.clone(), grid.inputs.clone()],
        created: 0.0,
        slos: None,
        model: None,
        method: None,
    };
    let c = compare(&p(2.0, 1.0), &p(1.0, 0.0)).expect("same grid");
    assert_eq!((c.both, c.only_a, c.only_b), (1, 1, 0));
    assert_eq!(c.median_ratio, 2.0);
    let other = brix_optimizer::Profile {
        indexes: vec![vec![1], vec![1, 4]],
        ..p(1.0, 1.0)
    };
    assert!(compare(&p(1.0, 1.0), &other).is_none());
}
