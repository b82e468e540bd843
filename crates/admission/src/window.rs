//! Fixed-window arithmetic and AIBrix's Redis key names; pure.
//!
//! A window of `secs` seconds is numbered by `floor(now) / secs` (its *index*); the Redis key
//! carries `index % 64` (its *bin*), exactly as AIBrix's `ratelimiter/redis.go` does, so
//! dashboards and tools that read AIBrix's keys keep working.

/// Bins per limiter: AIBrix keys a window by `index % 64`, so a bin recurs every 64 windows.
pub(crate) const BINS: u64 = 64;

/// Counters and costs are clamped to 2^53 so that Redis's Lua (IEEE doubles) compares them
/// exactly; a limit this large is effectively unlimited.
pub(crate) const MAX_COUNT: u64 = 1 << 53;

/// Which counter a charge books into; decides the key, the window and the rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Requests per minute of one user.
    Rpm,
    /// Tokens per minute of one user.
    Tpm,
    /// Requests per second of one model.
    ModelRps,
}

impl Kind {
    /// Window length in seconds: 60 for users (AIBrix limiter `aibrix`), 1 for models
    /// (`aibrix_model`).
    pub(crate) const fn window_secs(self) -> u64 {
        match self {
            Kind::Rpm | Kind::Tpm => 60,
            Kind::ModelRps => 1,
        }
    }

    /// AIBrix's key for `subject` (a user or model name) in window `index`.
    pub(crate) fn key(self, subject: &str, index: u64) -> String {
        let bin = index % BINS;
        match self {
            Kind::Rpm => format!("aibrix:{subject}_RPM_CURRENT:{bin}"),
            Kind::Tpm => format!("aibrix:{subject}_TPM_CURRENT:{bin}"),
            Kind::ModelRps => format!("aibrix_model:{subject}_MODEL_RPS_CURRENT:{bin}"),
        }
    }
}

/// The whole seconds of an injected time; negative, NaN or infinite times read as 0 so that
/// a bad clock can never panic the limiter.
pub(crate) fn whole_secs(now_unix_s: f64) -> u64 {
    if now_unix_s.is_finite() && now_unix_s > 0.0 {
        // Truncation is the point: AIBrix keys by integer unix seconds.
        now_unix_s as u64
    } else {
        0
    }
}

/// Index of the window of `secs` seconds that contains `now_unix_s`.
pub(crate) fn index(now_unix_s: f64, secs: u64) -> u64 {
    whole_secs(now_unix_s) / secs.max(1)
}

/// Seconds until the window containing `now_unix_s` ends, rounded up, at least 1: the value
/// of `Retry-After`, since a fixed window frees its whole budget at its end.
pub(crate) fn retry_after_s(now_unix_s: f64, secs: u64) -> u64 {
    let secs = secs.max(1);
    let end = (index(now_unix_s, secs) + 1).saturating_mul(secs);
    let now = if now_unix_s.is_finite() && now_unix_s > 0.0 {
        now_unix_s
    } else {
        0.0
    };
    let left = (end as f64 - now).ceil();
    if left >= 1.0 { left as u64 } else { 1 }
}

/// The user record's Redis key, shared with AIBrix's metadata service.
pub(crate) fn user_key(name: &str) -> String {
    format!("aibrix-users/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_bin_and_retry_after() {
        // (now, window, index, retry_after)
        let cases: &[(f64, u64, u64, u64)] = &[
            (0.0, 60, 0, 60),
            (59.0, 60, 0, 1),
            (59.9, 60, 0, 1),
            (60.0, 60, 1, 60),
            (61.5, 60, 1, 59),
            (119.999, 60, 1, 1),
            (1_700_000_040.0, 60, 28_333_334, 60),
            (1_700_000_040.25, 1, 1_700_000_040, 1),
            (-5.0, 60, 0, 60),
            (f64::NAN, 60, 0, 60),
        ];
        for &(now, secs, want_index, want_retry) in cases {
            assert_eq!(index(now, secs), want_index, "index({now}, {secs})");
            assert_eq!(
                retry_after_s(now, secs),
                want_retry,
                "retry_after({now}, {secs})"
            );
        }
    }

    #[test]
    fn keys_match_aibrix() {
        assert_eq!(Kind::Rpm.key("alice", 64 + 3), "aibrix:alice_RPM_CURRENT:3");
        assert_eq!(Kind::Tpm.key("alice", 5), "aibrix:alice_TPM_CURRENT:5");
        assert_eq!(
            Kind::ModelRps.key("llama", 1_700_000_041),
            format!(
                "aibrix_model:llama_MODEL_RPS_CURRENT:{}",
                1_700_000_041 % 64
            )
        );
        assert_eq!(user_key("bob"), "aibrix-users/bob");
    }
}
