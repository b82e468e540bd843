//! The done-when: under concurrency, RPM/TPM (and model RPS) limits admit exactly the
//! configured amount, in memory and with a real Redis, never more and never fewer.

#[macro_use]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use brix_admission::{Admission, AdmissionConfig, Reject, User};
use support::{Backend, T0};
use tokio::sync::Barrier;

on_both_backends!(
    rpm_admits_exactly_the_limit,
    tpm_admits_exactly_the_limit,
    mixed_costs_never_overbook_nor_overreject,
    model_rps_admits_exactly_the_limit,
    concurrent_refunds_leave_the_window_empty,
);

const TASKS: usize = 64;

/// Runs `TASKS` admissions at once (a barrier releases them together); returns each task's
/// cost and result.
async fn storm(
    adm: &Arc<Admission>,
    user: &'static str,
    model: &'static str,
    cost: impl Fn(usize) -> u64,
) -> Vec<(u64, Result<brix_admission::Ticket, Reject>)> {
    let gate = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let (adm, gate, cost) = (Arc::clone(adm), Arc::clone(&gate), cost(i));
            tokio::spawn(async move {
                gate.wait().await;
                (cost, adm.admit(Some(user), model, cost, T0 + 1.0).await)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(TASKS);
    for task in tasks {
        out.push(task.await.expect("task"));
    }
    out
}

fn admitted(results: &[(u64, Result<brix_admission::Ticket, Reject>)]) -> usize {
    results.iter().filter(|(_, r)| r.is_ok()).count()
}

async fn rpm_admits_exactly_the_limit(b: Backend) {
    let adm = Arc::new(
        b.with_user(AdmissionConfig::default(), User::new("u", Some(10), None))
            .await,
    );
    let results = storm(&adm, "u", "m", |_| 0).await;
    assert_eq!(admitted(&results), 10);
    for (_, r) in &results {
        if let Err(err) = r {
            assert!(
                matches!(err, Reject::RpmExceeded { retry_after_s: 59 }),
                "{err:?}"
            );
        }
    }
}

async fn tpm_admits_exactly_the_limit(b: Backend) {
    let adm = Arc::new(
        b.with_user(AdmissionConfig::default(), User::new("u", None, Some(1000)))
            .await,
    );
    let results = storm(&adm, "u", "m", |_| 100).await;
    assert_eq!(admitted(&results), 10);
    assert!(
        results
            .iter()
            .all(|(_, r)| matches!(r, Ok(_) | Err(Reject::TpmExceeded { .. })))
    );
}

async fn mixed_costs_never_overbook_nor_overreject(b: Backend) {
    const LIMIT: u64 = 1000;
    let adm = Arc::new(
        b.with_user(
            AdmissionConfig::default(),
            User::new("u", None, Some(LIMIT)),
        )
        .await,
    );
    // A fixed spread of costs, small and large (no RNG: the test is deterministic in inputs).
    let results = storm(&adm, "u", "m", |i| [1, 7, 30, 120, 333, 64, 5, 250][i % 8]).await;
    let booked: u64 = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(c, _)| c)
        .sum();
    assert!(booked <= LIMIT, "overbooked: {booked}");
    // Every refusal was right even against the final count: the counter only grew, so a
    // request refused earlier could not have fitted later either.
    for (cost, r) in &results {
        if r.is_err() {
            assert!(
                booked + cost > LIMIT,
                "cost {cost} refused with only {booked} booked"
            );
        }
    }
    // And the window holds exactly `booked`: what is left fits, one more token does not.
    if booked < LIMIT {
        let _ = adm
            .admit(Some("u"), "m", LIMIT - booked, T0 + 2.0)
            .await
            .expect("the rest fits");
    }
    assert!(adm.admit(Some("u"), "m", 1, T0 + 2.0).await.is_err());
}

async fn model_rps_admits_exactly_the_limit(b: Backend) {
    let cfg = AdmissionConfig {
        model_rps: BTreeMap::from([("m".into(), 5)]),
        ..Default::default()
    };
    let adm = Arc::new(b.admission(cfg).await);
    let results = storm(&adm, "anyone", "m", |_| 0).await;
    assert_eq!(admitted(&results), 5);
}

async fn concurrent_refunds_leave_the_window_empty(b: Backend) {
    let adm = Arc::new(
        b.with_user(
            AdmissionConfig::default(),
            User::new("u", Some(10), Some(500)),
        )
        .await,
    );
    let gate = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (adm, gate) = (Arc::clone(&adm), Arc::clone(&gate));
            tokio::spawn(async move {
                gate.wait().await;
                if let Ok(ticket) = adm.admit(Some("u"), "m", 50, T0).await {
                    adm.refund(ticket).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    // Everything came back: the whole window is free again.
    for _ in 0..10 {
        let _ = adm.admit(Some("u"), "m", 50, T0).await.expect("free");
    }
    assert!(adm.admit(Some("u"), "m", 0, T0).await.is_err());
}

/// Two gateway replicas sharing one Redis admit exactly the limit between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_redis_admit_exactly_the_limit() {
    let Some(b) = Backend::redis() else { return };
    let one = Arc::new(
        b.with_user(AdmissionConfig::default(), User::new("u", Some(10), None))
            .await,
    );
    let two = Arc::new(b.admission(AdmissionConfig::default()).await);
    let gate = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let adm = Arc::clone(if i % 2 == 0 { &one } else { &two });
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                gate.wait().await;
                adm.admit(Some("u"), "m", 0, T0).await.is_ok()
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += usize::from(task.await.expect("task"));
    }
    assert_eq!(admitted, 10);
}
