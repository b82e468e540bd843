//! The pool's side of the replica sync ([`crate::sync`]): own loads out, peers' loads in, and
//! the prefix blocks booked between two batches.

use std::sync::Arc;

use brix_router::fleet::{Refused, RemoteLoad};

use super::{PodState, Pool, lock};

impl PodState {
    /// The live peer replicas' load on the pod, summed.
    pub fn remote_load(&self) -> RemoteLoad {
        let cfg = self.config();
        self.core().remote_load(self.now(), &cfg)
    }

    /// This gateway's load on the pod, as published to peer replicas.
    pub fn own_load(&self) -> RemoteLoad {
        self.core().own_load()
    }

    /// Peer replica `gateway` reports `load` on the pod (received now).
    pub fn set_remote(&self, gateway: &str, load: RemoteLoad) -> Result<(), Refused> {
        let cfg = self.config();
        self.core().set_remote(gateway, load, self.now(), &cfg)
    }
}

impl Pool {
    /// Seconds on the gateway's clock.
    pub(crate) fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// Starts keeping the prefix blocks this gateway books, at most `max_blocks` between two
    /// [`Self::take_booked`] calls, for the replica sync to publish.
    pub(crate) fn keep_booked(&self, max_blocks: usize) {
        *lock(&self.booked) = Some(crate::sync::Outbox::new(max_blocks));
    }

    /// The blocks booked since the last call (empty while sync is off).
    pub(crate) fn take_booked(&self) -> crate::sync::Outbox {
        lock(&self.booked)
            .as_mut()
            .map(crate::sync::Outbox::take)
            .unwrap_or_default()
    }

    /// Each base model's pods (healthy or not), for the replica sync.
    pub(crate) fn models(&self) -> Vec<(String, Vec<Arc<PodState>>)> {
        let t = self.read();
        t.by_model
            .iter()
            .map(|(m, pods)| (m.clone(), pods.clone()))
            .collect()
    }

    /// A peer replica booked `blocks` of `model` on `address`, heard at `now`: booked here as
    /// this gateway's own acceptance would be, and not published again.
    pub fn peer_accepted(&self, model: &str, blocks: &[u64], address: &str, now: f64) {
        if !blocks.is_empty() {
            lock(&self.index(model)).insert(blocks, address, now);
        }
    }
}
