//! The pool with exact indexes: events applied and counted, cached tokens filled per request,
//! the approximate index's guesses compared.

use std::sync::Arc;
use std::time::Instant;

use brix_router::fleet::CoreConfig;
use brix_router::{KvUpdate, PrefixConfig, RouteRequest, StoreError, Weighted};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::*;
use crate::discovery::Target;
use crate::metrics::Metrics;
use crate::pool::Pool;

fn pool(n: usize) -> (Pool, Vec<Arc<PodState>>) {
    let pool = Pool::new(
        PrefixConfig::default(),
        CoreConfig::default(),
        Instant::now(),
    );
    let ts: Targets = [(
        "m".to_string(),
        (0..n)
            .map(|i| Target {
                name: format!("p{i}"),
                address: format!("h:{i}"),
                kv_events: None,
                metrics: None,
            })
            .collect(),
    )]
    .into();
    pool.apply(&ts);
    for p in pool.all() {
        p.probe_health(true);
    }
    let pods = pool.candidates("m");
    (pool, pods)
}

fn stored<'a>(parent: Option<u64>, hashes: &'a [u64], tokens: &'a [u32]) -> KvUpdate<'a> {
    KvUpdate::Stored {
        parent,
        hashes,
        token_ids: tokens,
        block_size: 16,
        lora: None,
    }
}

#[test]
fn decisions_read_each_pods_exact_index_and_measure_the_approximate_one() {
    let metrics = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
    let m = &metrics.kv;
    let (pool, pods) = pool(3);
    let tokens: Vec<u32> = (0..100).collect(); // 6 full blocks + 4
    // Pods 0 and 1 publish events; pod 1 holds 4 blocks, pod 0 none; pod 2 publishes none.
    pods[0].kv_enable(1000);
    pods[1].kv_enable(1000);
    assert_eq!(
        apply(&pods[1], m, stored(None, &[1, 2], &tokens[..32])),
        Ok(())
    );
    assert_eq!(
        apply(&pods[1], m, stored(Some(2), &[3, 4], &tokens[32..64])),
        Ok(())
    );
    assert_eq!(
        apply(&pods[0], m, stored(Some(9), &[5], &tokens[..16])),
        Err(StoreError::Gap(9))
    );
    assert_eq!(
        apply(&pods[1], m, KvUpdate::Removed { hashes: &[4] }),
        Ok(())
    );
    let count = |c: &prometheus::IntCounterVec, l: &[&str]| c.with_label_values(l).get();
    assert_eq!(count(&m.events, &["p1", "stored"]), 2);
    assert_eq!(count(&m.events, &["p1", "removed"]), 1);
    assert_eq!(count(&m.gaps, &["p0", "parent"]), 1);
    assert_eq!(m.blocks.with_label_values(&["p1"]).get(), 3);
    // The approximate index believes pod 0 has the prompt.
    let blocks = [11, 12, 13];
    pool.accepted("m", &blocks, "h:0", 0.0);
    let req = RouteRequest {
        blocks: &blocks,
        prompt_units: 400,
        tokens: Some(&tokens),
        ..RouteRequest::default()
    };
    let s: Weighted = "prefix-cache".parse().unwrap_or_else(|e| panic!("{e}"));
    let mut seen = KvSeen::default();
    let d = pool
        .decide_measured(
            "m",
            &pods,
            &s,
            &req,
            1.0,
            &mut SmallRng::seed_from_u64(1),
            &mut seen,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(seen.cached, vec![Some(0), Some(48), None]);
    // Pod 0's approximate claim does not count: its events say it holds nothing.
    assert_eq!(d.pod, 1);
    assert_eq!(
        seen.predictions,
        vec![
            Prediction {
                approx: 1.0,
                exact: 0.0
            },
            Prediction {
                approx: 0.0,
                exact: 0.48
            },
        ]
    );
    assert_eq!(
        seen.predictions
            .iter()
            .map(|p| p.outcome())
            .collect::<Vec<_>>(),
        ["over", "under"]
    );
    // Without token ids nothing is exact.
    let blind = RouteRequest {
        tokens: None,
        ..req
    };
    pool.decide_measured(
        "m",
        &pods,
        &s,
        &blind,
        1.0,
        &mut SmallRng::seed_from_u64(1),
        &mut seen,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((seen.cached, seen.predictions), (vec![None; 3], vec![]));
    pods[1].kv_clear();
    assert_eq!(pods[1].kv_blocks(), Some(0));
}

#[test]
fn outcomes_and_endpoints() {
    let p = |approx, exact| Prediction { approx, exact }.outcome();
    assert_eq!(
        [p(1.0, 0.0), p(0.0, 0.5), p(0.5, 0.45), p(0.0, 0.0)],
        ["over", "under", "agree", "agree"]
    );
    let cfg = KvEventsConfig {
        models: vec![KvModelConfig {
            name: "m".into(),
            enabled: true,
            tokenizer: None,
            port: Some(5557),
            replay_port: None,
            topic: String::new(),
        }],
        ..KvEventsConfig::default()
    };
    let models = KvModels::load(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let e = models.endpoints("m", "10.0.0.1:8000", None);
    assert_eq!(
        e.map(|e| (e.events, e.replay)),
        Some(("tcp://10.0.0.1:5557".into(), None))
    );
    let own = KvEndpoints {
        events: "tcp://h:1".into(),
        replay: Some("tcp://h:2".into()),
    };
    assert_eq!(models.endpoints("m", "x:1", Some(&own)), Some(own.clone()));
    assert_eq!(models.endpoints("other", "x:1", Some(&own)), None);
}

#[test]
fn config_parses_validates_and_a_missing_tokenizer_stops_the_start() {
    let cfg: crate::GatewayConfig = serde_yaml_ng::from_str(
        "kv_events:\n  capacity_blocks: 64\n  models:\n    - {name: m, port: 5557, replay_port: 5558}\n    - {name: off, enabled: false}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.validate().is_ok());
    let kv = &cfg.kv_events;
    assert_eq!((kv.capacity_blocks, kv.timeout_ms), (64, 2000));
    assert_eq!(kv.model("m").map(|m| m.replay_port), Some(Some(5558)));
    assert_eq!(kv.model("off"), None, "disabled");
    let models = KvModels::load(kv).unwrap_or_else(|e| panic!("{e}"));
    assert!(models.get("m").is_some() && models.get("off").is_none());
    for bad in [
        "kv_events: {capacity_blocks: 0}\n",
        "kv_events: {models: [{name: m}, {name: m}]}\n",
        "kv_events: {models: [{name: ' '}]}\n",
        "kv_events: {models: [{name: m, port: 0}]}\n",
    ] {
        let cfg: crate::GatewayConfig =
            serde_yaml_ng::from_str(bad).unwrap_or_else(|e| panic!("{e}"));
        assert!(cfg.validate().is_err(), "{bad}");
    }
    let unknown: Result<crate::GatewayConfig, _> =
        serde_yaml_ng::from_str("kv_events: {models: [{name: m, prot: 1}]}\n");
    assert!(unknown.is_err(), "unknown keys are refused");
    let missing = KvEventsConfig {
        models: vec![KvModelConfig {
            name: "m".into(),
            enabled: true,
            tokenizer: Some("/no/such/tokenizer".into()),
            port: None,
            replay_port: None,
            topic: String::new(),
        }],
        ..KvEventsConfig::default()
    };
    let err = KvModels::load(&missing).err().unwrap_or_default();
    assert!(err.contains("kv_events model 'm'"), "{err}");
}
