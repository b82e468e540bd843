//! Window math, Retry-After, all-or-nothing booking, settle and refund, through the public
//! API, on both backends.

#[macro_use]
mod support;

use std::collections::BTreeMap;

use brix_admission::{AdmissionConfig, Reject, User};
use support::{Backend, T0};

on_both_backends!(
    rpm_window_admits_the_limit_then_429_until_the_next_window,
    tpm_window_books_reservations_and_refuses_what_does_not_fit,
    a_later_rejection_books_nothing,
    settle_moves_the_window_by_the_difference,
    settle_after_the_window_leaves_the_new_window_alone,
    refund_gives_everything_back,
    model_rps_is_per_second_and_per_model,
    users_without_limits_and_unknown_users,
);

fn no_limits() -> AdmissionConfig {
    AdmissionConfig::default()
}

fn alice(rpm: Option<u64>, tpm: Option<u64>) -> User {
    User::new("alice", rpm, tpm)
}

async fn rpm_window_admits_the_limit_then_429_until_the_next_window(b: Backend) {
    let adm = b.with_user(no_limits(), alice(Some(3), None)).await;
    for _ in 0..3 {
        let t = adm
            .admit(Some("alice"), "m", 0, T0 + 10.0)
            .await
            .expect("admit");
        assert!(t.is_limited() && !t.meters_tokens());
    }
    let err = adm
        .admit(Some("alice"), "m", 0, T0 + 10.4)
        .await
        .expect_err("4th");
    assert_eq!(err, Reject::RpmExceeded { retry_after_s: 50 });
    assert_eq!(
        (err.status(), err.error_type(), err.code()),
        (429, "rate_limit_error", "rate_limit_exceeded")
    );
    assert_eq!(err.debug_header(), Some(("x-error-rpm-exceeded", "true")));
    assert_eq!(err.retry_after_s(), Some(50));
    let err = adm
        .admit(Some("alice"), "m", 0, T0 + 59.5)
        .await
        .expect_err("same window");
    assert_eq!(err.retry_after_s(), Some(1));
    // The next window has the whole budget again.
    for _ in 0..3 {
        let _ = adm
            .admit(Some("alice"), "m", 0, T0 + 60.0)
            .await
            .expect("next window");
    }
    assert!(adm.admit(Some("alice"), "m", 0, T0 + 61.0).await.is_err());
    // Another user is not affected.
    let _ = adm
        .admit(Some("bob"), "m", 0, T0 + 61.0)
        .await
        .expect("bob is unlimited");
}

async fn tpm_window_books_reservations_and_refuses_what_does_not_fit(b: Backend) {
    let adm = b.with_user(no_limits(), alice(None, Some(1000))).await;
    let now = T0 + 30.0;
    let t = adm.admit(Some("alice"), "m", 400, now).await.expect("400");
    assert!(t.meters_tokens() && t.reserved_tokens() == 400);
    let _ = adm.admit(Some("alice"), "m", 400, now).await.expect("800");
    let err = adm
        .admit(Some("alice"), "m", 400, now)
        .await
        .expect_err("1200 > 1000");
    assert_eq!(err, Reject::TpmExceeded { retry_after_s: 30 });
    assert_eq!(err.debug_header(), Some(("x-error-tpm-exceeded", "true")));
    // A smaller reservation still fits exactly; then the full window refuses even 0 tokens.
    let _ = adm
        .admit(Some("alice"), "m", 200, now)
        .await
        .expect("exactly 1000");
    assert!(matches!(
        adm.admit(Some("alice"), "m", 0, now).await,
        Err(Reject::TpmExceeded { .. })
    ));
    // A reservation larger than the whole limit never fits.
    let later = T0 + 60.0;
    let err = adm
        .admit(Some("alice"), "m", 1001, later)
        .await
        .expect_err("over the limit");
    assert_eq!(err, Reject::TpmExceeded { retry_after_s: 60 });
    let _ = adm
        .admit(Some("alice"), "m", 1000, later)
        .await
        .expect("the whole limit fits");
}

async fn a_later_rejection_books_nothing(b: Backend) {
    let cfg = AdmissionConfig {
        model_rps: BTreeMap::from([("m".into(), 1)]),
        ..no_limits()
    };
    let adm = b.with_user(cfg, alice(Some(3), Some(100))).await;
    let now = T0;
    // TPM refuses: the RPM slot is not kept.
    let err = adm
        .admit(Some("alice"), "other", 150, now)
        .await
        .expect_err("tpm");
    assert!(matches!(err, Reject::TpmExceeded { .. }));
    // Model RPS refuses after RPM and TPM passed: neither keeps the booking.
    let _ = adm
        .admit(None, "m", 0, now)
        .await
        .expect("takes the model's only slot");
    let err = adm
        .admit(Some("alice"), "m", 100, now)
        .await
        .expect_err("model rps");
    assert_eq!(err, Reject::ModelRpsExceeded { retry_after_s: 1 });
    // So all 3 requests and all 100 tokens are still there.
    for cost in [50, 25, 25] {
        let _ = adm
            .admit(Some("alice"), "other", cost, now)
            .await
            .expect("still free");
    }
    let err = adm
        .admit(Some("alice"), "other", 0, now)
        .await
        .expect_err("now full");
    assert!(
        matches!(err, Reject::RpmExceeded { .. }),
        "RPM is checked first: {err:?}"
    );
}

async fn settle_moves_the_window_by_the_difference(b: Backend) {
    let adm = b.with_user(no_limits(), alice(None, Some(1000))).await;
    let now = T0 + 5.0;
    // Reserve 500, use 100: 400 come back.
    let t = adm.admit(Some("alice"), "m", 500, now).await.expect("500");
    adm.settle(t, 100).await;
    let _ = adm
        .admit(Some("alice"), "m", 900, now)
        .await
        .expect("100 + 900");
    assert!(adm.admit(Some("alice"), "m", 1, now).await.is_err());
    // Reserve 100, use 1000: the window goes over, and refuses until it ends.
    let later = T0 + 65.0;
    let t = adm
        .admit(Some("alice"), "m", 100, later)
        .await
        .expect("100");
    adm.settle(t, 1000).await;
    let err = adm
        .admit(Some("alice"), "m", 0, later)
        .await
        .expect_err("over");
    assert_eq!(err, Reject::TpmExceeded { retry_after_s: 55 });
    // Settling the exact reservation changes nothing.
    let t = adm
        .admit(Some("alice"), "m", 300, T0 + 120.0)
        .await
        .expect("300");
    adm.settle(t, 300).await;
    let _ = adm
        .admit(Some("alice"), "m", 700, T0 + 120.0)
        .await
        .expect("300 + 700");
    assert!(adm.admit(Some("alice"), "m", 1, T0 + 120.0).await.is_err());
}

async fn settle_after_the_window_leaves_the_new_window_alone(b: Backend) {
    let adm = b.with_user(no_limits(), alice(None, Some(1000))).await;
    let old = adm
        .admit(Some("alice"), "m", 600, T0)
        .await
        .expect("old window");
    let _ = adm
        .admit(Some("alice"), "m", 900, T0 + 60.0)
        .await
        .expect("new window");
    adm.settle(old, 0).await;
    // The 600 given back belonged to the old window; the new one still holds 900.
    assert!(adm.admit(Some("alice"), "m", 101, T0 + 61.0).await.is_err());
    let _ = adm
        .admit(Some("alice"), "m", 100, T0 + 61.0)
        .await
        .expect("exactly full");
}

async fn refund_gives_everything_back(b: Backend) {
    let cfg = AdmissionConfig {
        model_rps: BTreeMap::from([("m".into(), 1)]),
        ..no_limits()
    };
    let adm = b.with_user(cfg, alice(Some(1), Some(100))).await;
    for _ in 0..3 {
        let t = adm
            .admit(Some("alice"), "m", 100, T0)
            .await
            .expect("everything is free again");
        adm.refund(t).await;
    }
    let _kept = adm.admit(Some("alice"), "m", 100, T0).await.expect("admit");
    assert!(matches!(
        adm.admit(Some("alice"), "m", 0, T0).await,
        Err(Reject::RpmExceeded { .. })
    ));
}

async fn model_rps_is_per_second_and_per_model(b: Backend) {
    let cfg = AdmissionConfig {
        model_rps: BTreeMap::from([("llama".into(), 2)]),
        ..no_limits()
    };
    let adm = b.admission(cfg).await;
    for now in [T0, T0 + 0.5] {
        let t = adm
            .admit(None, "llama", 10, now)
            .await
            .expect("2 per second");
        assert!(t.is_limited() && !t.meters_tokens() && t.reserved_tokens() == 0);
    }
    let err = adm
        .admit(Some("anyone"), "llama", 0, T0 + 0.9)
        .await
        .expect_err("3rd");
    assert_eq!(err, Reject::ModelRpsExceeded { retry_after_s: 1 });
    assert_eq!(
        err.debug_header(),
        Some(("x-error-model-rps-exceeded", "true"))
    );
    assert_eq!(err.as_label(), "model_rps_exceeded");
    let _ = adm
        .admit(None, "llama", 0, T0 + 1.0)
        .await
        .expect("next second");
    for _ in 0..10 {
        let t = adm
            .admit(None, "mistral", 0, T0)
            .await
            .expect("unlisted model");
        assert!(!t.is_limited());
    }
}

async fn users_without_limits_and_unknown_users(b: Backend) {
    let open = b.with_user(no_limits(), alice(None, None)).await;
    for user in [Some("alice"), Some("nobody"), Some(""), None] {
        for _ in 0..5 {
            let t = open
                .admit(user, "m", 1_000_000, T0)
                .await
                .expect("no limits");
            assert!(!t.is_limited());
            open.settle(t, 5).await;
        }
    }
    let strict = AdmissionConfig {
        require_known_user: true,
        ..no_limits()
    };
    let strict = b.with_user(strict, alice(None, None)).await;
    let _ = strict
        .admit(Some("alice"), "m", 0, T0)
        .await
        .expect("known");
    // Without a user (no header, an empty one, or one the gateway could not read as UTF-8)
    // a gateway that requires known users refuses: limits cannot be dodged by omission.
    for none in [None, Some("")] {
        let err = strict.admit(none, "m", 0, T0).await.expect_err("no user");
        assert_eq!(err, Reject::MissingUser);
        assert_eq!((err.status(), err.code()), (401, "invalid_user"));
    }
    let long = "m".repeat(100_000);
    let err = strict
        .admit(Some(&long), "m", 0, T0)
        .await
        .expect_err("unknown");
    assert!(err.to_string().len() < 300, "the echoed name is bounded");
    let err = strict
        .admit(Some("mallory"), "m", 0, T0)
        .await
        .expect_err("unknown");
    assert_eq!(err, Reject::UnknownUser("mallory".into()));
    assert_eq!(
        (err.status(), err.error_type(), err.code()),
        (401, "authentication_error", "invalid_user")
    );
    assert_eq!(err.debug_header(), Some(("x-error-user", "true")));
}

/// A refund so late that the window's bin may have come back is skipped, so it cannot free
/// a slot in a later window that reuses the key.
#[tokio::test(start_paused = true)]
async fn very_late_refund_is_skipped() {
    let adm = Backend::Memory
        .with_user(no_limits(), alice(Some(1), None))
        .await;
    let t = adm.admit(Some("alice"), "m", 0, T0).await.expect("admit");
    tokio::time::advance(std::time::Duration::from_secs(63 * 60)).await;
    adm.refund(t).await;
    assert!(
        adm.admit(Some("alice"), "m", 0, T0).await.is_err(),
        "the refund was skipped"
    );
}

#[tokio::test]
async fn api_keys() {
    let adm = Backend::Memory
        .admission(AdmissionConfig {
            api_keys: vec!["sk-a".into(), "sk-b".into()],
            ..no_limits()
        })
        .await;
    assert_eq!(adm.authenticate(Some("Bearer sk-b")), Ok(()));
    for bad in [None, Some("Bearer sk-c"), Some("sk-a"), Some("Bearer ")] {
        let err = adm.authenticate(bad).expect_err("refused");
        assert_eq!(err, Reject::InvalidApiKey);
        assert_eq!(
            (err.status(), err.code(), err.param()),
            (401, "invalid_api_key", Some("api_key"))
        );
        assert_eq!(err.error_type(), "authentication_error");
    }
    let open = Backend::Memory.admission(no_limits()).await;
    assert_eq!(open.authenticate(None), Ok(()));
}
