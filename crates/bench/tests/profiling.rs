//! The live profile measurer against `brix sim` on a real socket (`127.0.0.1:0`): a rate the
//! engine carries passes with every request measured, an SLO nothing can meet fails on the
//! same records. Runs are a fixed, small number of requests; nothing asserts how fast.

use std::time::Duration;

use brix_bench::live::LiveConfig;
use brix_bench::profiling::{LiveMeasurer, Measurer, Search, Shape};
use brix_optimizer::Slo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_measurer_judges_real_runs_against_the_slo() {
    let sim = brix_testkit::start_sim(&brix_testkit::sim_config("m")).await;
    let mut cfg = LiveConfig::new(&format!("http://{}", sim.addr), "m").expect("config");
    cfg.timeout = Duration::from_secs(60);
    let mut m = LiveMeasurer::new(cfg, tokio::runtime::Handle::current(), 2048);
    m.min_requests = 30;
    m.duration_s = 1.0;
    m.warmup = 0.0;
    let shape = Shape {
        input: 64,
        output: 8,
    };
    let loose = Slo {
        percentile: 90.0,
        ttft: Some(30.0),
        tpot: Some(5.0),
        e2e: None,
    };
    let impossible = Slo {
        percentile: 90.0,
        ttft: Some(1e-6),
        tpot: None,
        e2e: None,
    };
    // The measurer blocks on the runtime: call it from a blocking thread.
    let (l, i) = (loose.clone(), impossible.clone());
    let (ok, bad) = tokio::task::spawn_blocking(move || {
        (
            m.measure(shape, 10.0, &l).expect("run"),
            m.measure(shape, 10.0, &i).expect("run"),
        )
    })
    .await
    .expect("join");
    assert_eq!(ok.attainment, 1.0, "{ok:?}");
    assert!(
        ok.throughput > 0.0 && ok.throughput <= 10.0 + 1e-9,
        "{ok:?}"
    );
    assert!(Search::default().passes(&ok, 10.0, &loose), "{ok:?}");
    assert_eq!(bad.attainment, 0.0, "{bad:?}");
    assert!(!Search::default().passes(&bad, 10.0, &impossible));
}
