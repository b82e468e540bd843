//! What other gateway replicas say they have on one pod, so N replicas route as one.
//!
//! Each replica publishes its own per-pod load (absolute values, so a repeated or lost batch
//! does no harm) every sync interval; a receiver keeps the newest load per peer with the time
//! it arrived, and a routing snapshot adds the live ones (younger than the TTL) to its own.
//! A peer that stops publishing (crashed, partitioned, Redis down) stops counting after the
//! TTL, so a stale view can never pin a pod as busy for longer than that.

/// Most peers remembered per pod: a replica count, not a user input, but a broken or hostile
/// publisher must not grow the table.
pub const MAX_PEERS: usize = 64;
/// Longest gateway id kept (ids are random at start or configured; longer ones are refused).
pub const MAX_GATEWAY_ID_LEN: usize = 64;
/// Default seconds a peer's load counts after it arrived (10 missed 100 ms batches).
pub const DEFAULT_REMOTE_TTL_S: f64 = 1.0;

/// One replica's load on one pod: what it routed there and has not seen end (the fields
/// of [`crate::Pod`] a router books itself).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RemoteLoad {
    /// Requests in flight from that replica.
    pub in_flight: u32,
    /// Uncached prompt tokens it booked there with no first token yet.
    pub pending_prefill: f64,
    /// Its requests there past their first token.
    pub decoding: u32,
    /// Σ the context tokens of those decoding requests.
    pub decode_context: f64,
}

/// Largest token count taken from a peer for one pod (a broken peer cannot poison a sum).
const MAX_TOKENS: f64 = 1e12;

impl RemoteLoad {
    /// The sum of two loads (saturating).
    pub fn plus(self, o: Self) -> Self {
        Self {
            in_flight: self.in_flight.saturating_add(o.in_flight),
            pending_prefill: self.pending_prefill + o.pending_prefill,
            decoding: self.decoding.saturating_add(o.decoding),
            decode_context: self.decode_context + o.decode_context,
        }
    }

    /// The load with token counts that are not finite and non-negative made 0, and huge
    /// ones capped: what a peer says is input.
    pub fn sanitized(self) -> Self {
        let tokens = |x: f64| {
            if x.is_finite() && x > 0.0 {
                x.min(MAX_TOKENS)
            } else {
                0.0
            }
        };
        Self {
            pending_prefill: tokens(self.pending_prefill),
            decode_context: tokens(self.decode_context),
            ..self
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Peer {
    id: String,
    load: RemoteLoad,
    at: f64,
}

/// Why a peer's load was not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The gateway id is empty or longer than [`MAX_GATEWAY_ID_LEN`].
    BadId,
    /// [`MAX_PEERS`] live peers already report on this pod.
    Full,
}

/// The newest load of each peer on one pod, bounded, expiring after a TTL.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemoteLoads {
    peers: Vec<Peer>,
}

impl RemoteLoads {
    /// Stores `load` from peer `id`, arrived at `now` (it replaces that peer's older one).
    /// Peers older than `ttl_s` are forgotten first; a new peer beyond [`MAX_PEERS`] live ones
    /// is refused (the ones known keep their place).
    pub fn set(&mut self, id: &str, load: RemoteLoad, now: f64, ttl_s: f64) -> Result<(), Refused> {
        if id.is_empty() || id.len() > MAX_GATEWAY_ID_LEN {
            return Err(Refused::BadId);
        }
        let load = load.sanitized();
        if let Some(p) = self.peers.iter_mut().find(|p| p.id == id) {
            p.load = load;
            p.at = now;
            return Ok(());
        }
        self.peers.retain(|p| now - p.at <= ttl_s);
        if self.peers.len() >= MAX_PEERS {
            return Err(Refused::Full);
        }
        self.peers.push(Peer {
            id: id.to_string(),
            load,
            at: now,
        });
        Ok(())
    }

    /// The sum of the loads of peers heard from within `ttl_s` of `now`.
    pub fn sum(&self, now: f64, ttl_s: f64) -> RemoteLoad {
        self.live(now, ttl_s)
            .fold(RemoteLoad::default(), |s, p| s.plus(p.load))
    }

    /// Peers heard from within `ttl_s` of `now`.
    pub fn peers(&self, now: f64, ttl_s: f64) -> usize {
        self.live(now, ttl_s).count()
    }

    /// Forgets every peer.
    pub fn clear(&mut self) {
        self.peers.clear();
    }

    fn live(&self, now: f64, ttl_s: f64) -> impl Iterator<Item = &Peer> {
        self.peers.iter().filter(move |p| now - p.at <= ttl_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(n: u32) -> RemoteLoad {
        RemoteLoad {
            in_flight: n,
            ..RemoteLoad::default()
        }
    }

    #[test]
    fn table() {
        // (step, peer, in_flight, now) then the expected (sum, peers) at `now`.
        type Step = (&'static str, u32, f64, u32, usize);
        let steps: &[Step] = &[
            ("a", 3, 0.0, 3, 1),
            ("b", 2, 0.1, 5, 2),
            // Absolute values: a repeat replaces, never adds.
            ("a", 3, 0.2, 5, 2),
            ("a", 1, 0.3, 3, 2),
            // b last spoke at 0.1: at 1.2 it is past the 1 s TTL.
            ("a", 1, 1.2, 1, 1),
            // b comes back.
            ("b", 4, 1.3, 5, 2),
            // a peer at zero still counts as a peer.
            ("a", 0, 1.4, 4, 2),
        ];
        let mut r = RemoteLoads::default();
        for &(id, n, now, sum, peers) in steps {
            assert_eq!(r.set(id, load(n), now, 1.0), Ok(()));
            assert_eq!(r.sum(now, 1.0), load(sum), "{id} {n} at {now}");
            assert_eq!(r.peers(now, 1.0), peers, "{id} {n} at {now}");
        }
        // Everyone silent past the TTL: nothing counts.
        assert_eq!(r.sum(2.5, 1.0), load(0));
        assert_eq!(r.peers(2.5, 1.0), 0);
    }

    #[test]
    fn bounded_peers_and_ids() {
        let mut r = RemoteLoads::default();
        assert_eq!(r.set("", load(1), 0.0, 1.0), Err(Refused::BadId));
        let long = "x".repeat(MAX_GATEWAY_ID_LEN + 1);
        assert_eq!(r.set(&long, load(1), 0.0, 1.0), Err(Refused::BadId));
        for i in 0..MAX_PEERS {
            assert_eq!(r.set(&format!("g{i}"), load(1), 0.0, 1.0), Ok(()));
        }
        assert_eq!(r.set("new", load(1), 0.5, 1.0), Err(Refused::Full));
        // Known peers still update while full.
        assert_eq!(r.set("g0", load(2), 0.5, 1.0), Ok(()));
        assert_eq!(r.sum(0.5, 1.0), load(MAX_PEERS as u32 + 1));
        // Once the others expire, a new peer gets a place.
        assert_eq!(r.set("new", load(7), 1.2, 1.0), Ok(()));
        assert_eq!(r.peers(1.2, 1.0), 2, "g0 (0.5) and new");
        assert_eq!(r.sum(1.2, 1.0), load(9));
        assert!(r.peers.len() <= MAX_PEERS);
        r.clear();
        assert_eq!(r.peers(1.2, 1.0), 0);
    }

    #[test]
    fn booked_work_sums_and_bad_numbers_count_as_zero() {
        let mut r = RemoteLoads::default();
        let a = RemoteLoad {
            in_flight: 2,
            pending_prefill: 1000.0,
            decoding: 1,
            decode_context: 512.0,
        };
        let bad = RemoteLoad {
            in_flight: 1,
            pending_prefill: f64::NAN,
            decoding: 3,
            decode_context: -5.0,
        };
        assert_eq!(r.set("a", a, 0.0, 1.0), Ok(()));
        assert_eq!(r.set("b", bad, 0.0, 1.0), Ok(()));
        let sum = r.sum(0.5, 1.0);
        assert_eq!(
            sum,
            RemoteLoad {
                in_flight: 3,
                pending_prefill: 1000.0,
                decoding: 4,
                decode_context: 512.0,
            }
        );
        let huge = RemoteLoad {
            pending_prefill: f64::MAX,
            ..RemoteLoad::default()
        };
        assert_eq!(r.set("a", huge, 0.6, 1.0), Ok(()));
        assert!(r.sum(0.6, 1.0).pending_prefill <= MAX_TOKENS);
    }

    #[test]
    fn sums_saturate() {
        let mut r = RemoteLoads::default();
        assert_eq!(r.set("a", load(u32::MAX), 0.0, 1.0), Ok(()));
        assert_eq!(r.set("b", load(5), 0.0, 1.0), Ok(()));
        assert_eq!(r.sum(0.0, 1.0), load(u32::MAX));
    }
}
