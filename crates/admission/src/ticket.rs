//! What an admitted request holds until it ends: the counters it booked, so that it can be
//! settled with the real token count or refunded if it never reached an engine.

use std::time::Duration;

use tokio::time::Instant;

use crate::store::Charge;
use crate::window::{BINS, Kind};

/// Proof of admission; give it back with [`crate::Admission::settle`] when the request ends,
/// or [`crate::Admission::refund`] when it never reached an engine. Dropping it keeps every
/// booking (the safe side for a limiter). Not `Clone`, so it cannot be settled twice.
#[must_use = "settle the ticket with the tokens used, or refund it if no engine saw the request"]
#[derive(Debug)]
pub struct Ticket {
    pub(crate) charges: Vec<Charge>,
    /// Monotonic time of admission; only used to skip adjustments so late that the window's
    /// bin (and so its key) may have been reused, never to decide admission.
    pub(crate) issued: Instant,
}

impl Ticket {
    /// Tokens booked against the user's TPM window at admission (0 when TPM is unlimited).
    pub fn reserved_tokens(&self) -> u64 {
        self.charge(Kind::Tpm).map_or(0, |c| c.cost)
    }

    /// Whether a TPM limit applies, i.e. whether the gateway must read the response's `usage`
    /// (and ask a streaming engine for it) to settle the ticket.
    pub fn meters_tokens(&self) -> bool {
        self.charge(Kind::Tpm).is_some()
    }

    /// Whether any counter was booked; an unlimited request's ticket is a no-op to settle.
    pub fn is_limited(&self) -> bool {
        !self.charges.is_empty()
    }

    pub(crate) fn charge(&self, kind: Kind) -> Option<&Charge> {
        self.charges.iter().find(|c| c.kind == kind)
    }

    /// Whether a later adjustment of `charge` can still only reach its own window: a bin
    /// comes back after 64 windows, and Redis cannot tell windows of one bin apart.
    pub(crate) fn still_own_window(&self, charge: &Charge) -> bool {
        let recurs_after = Duration::from_secs(charge.kind.window_secs() * (BINS - 1));
        self.issued.elapsed() < recurs_after
    }
}
