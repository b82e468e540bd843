//! `session-affinity`: keep a session on one pod, by pin (`x-session-id`) or by rendezvous
//! hash of `x-aibrix-session-key`.

use rand::RngCore;

use super::{Ctx, Scorer};
use crate::decision::{Decision, Fallback};
use crate::pod::{Pod, RouteRequest};
use crate::strategy::Strategy;

/// The pinned or hashed pod; least-request (`no_session`) without a pin or key.
pub(crate) struct SessionAffinity;

impl Scorer for SessionAffinity {
    fn strategy(&self) -> Strategy {
        Strategy::SessionAffinity
    }

    fn costs(&self, cx: &Ctx<'_>, _rng: &mut dyn RngCore) -> Vec<Option<f64>> {
        let pinned = session_pod(cx.req, cx.pods);
        (0..cx.pods.len())
            .map(|p| Some(if Some(p) == pinned { 0.0 } else { 1.0 }))
            .collect()
    }

    fn decide(&self, cx: &Ctx<'_>, _rng: &mut dyn RngCore) -> Decision {
        match session_pod(cx.req, cx.pods) {
            Some(pod) => Decision::chose(pod),
            None => cx.fallback(Fallback::NoSession),
        }
    }
}

/// The pinned pod (`x-session-id` = its address), else the rendezvous-hash winner for the key.
fn session_pod(req: &RouteRequest<'_>, pods: &[Pod]) -> Option<usize> {
    if let Some(pin) = req.session_pod
        && let Some(p) = pods.iter().position(|p| p.address == pin)
    {
        return Some(p);
    }
    let key = req.session_key?;
    (0..pods.len()).max_by(|&a, &b| {
        let (ha, hb) = (
            rendezvous(key, &pods[a].address),
            rendezvous(key, &pods[b].address),
        );
        // Highest hash wins; on a tie the smaller address.
        ha.cmp(&hb)
            .then_with(|| pods[b].address.cmp(&pods[a].address))
    })
}

/// FNV-1a 64 over `key ‖ '|' ‖ address`, as AIBrix's session router hashes.
fn rendezvous(key: &str, address: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain([b'|']).chain(address.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
