//! Which replicas leave when the count drops, and the load gauges a driver hands the policy:
//! the platform-side rules both drivers (`brix up`'s local platform, `brix bench sim`) apply.

use crate::Load;

/// Where a replica is in its life, as far as choosing one to stop goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Out of rotation (unready, restarting, crash-looping): costs without serving.
    Broken,
    /// Serving.
    Ready,
    /// Asked for, not ready yet: capacity on its way, which the policy counts. Never stopped.
    Starting,
}

/// One replica as the victim choice sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaView {
    /// Its phase.
    pub phase: Phase,
    /// Requests in flight to it (what stopping it must drain).
    pub in_flight: u32,
    /// Order of creation: a higher number is newer.
    pub order: u64,
}

/// The positions in `replicas` to stop so that at most `desired` of those past their start
/// remain: never one that is starting (a surplus starting replica is trimmed once ready, by
/// calling this again); broken ones first, then ready ones with the fewest requests in flight,
/// the newest among equals.
pub fn scale_down_victims(replicas: &[ReplicaView], desired: u32) -> Vec<usize> {
    let mut past_start: Vec<usize> = (0..replicas.len())
        .filter(|&i| replicas[i].phase != Phase::Starting)
        .collect();
    let extra = past_start.len().saturating_sub(desired as usize);
    past_start.sort_by_key(|&i| {
        let r = &replicas[i];
        (r.phase, r.in_flight, std::cmp::Reverse(r.order))
    });
    past_start.truncate(extra);
    past_start
}

impl Load {
    /// Sets the engine gauges from the ready pods' last scrapes, `(waiting, kv_usage)` each
    /// where known: `waiting` is their sum, `kv_usage` their mean; `None` when no pod has one.
    pub fn set_gauges(&mut self, pods: impl IntoIterator<Item = (Option<f64>, Option<f64>)>) {
        let (mut waiting, mut kv, mut kv_n) = (None::<f64>, 0.0, 0u32);
        for (w, k) in pods {
            if let Some(w) = w {
                waiting = Some(waiting.unwrap_or(0.0) + w);
            }
            if let Some(k) = k {
                kv += k;
                kv_n += 1;
            }
        }
        self.waiting = waiting;
        self.kv_usage = (kv_n > 0).then(|| kv / f64::from(kv_n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(phase: Phase, in_flight: u32, order: u64) -> ReplicaView {
        ReplicaView {
            phase,
            in_flight,
            order,
        }
    }

    #[test]
    fn victims_skip_starting_and_take_broken_then_idle_then_newest() {
        let fleet = [
            r(Phase::Ready, 3, 0),
            r(Phase::Starting, 0, 1),
            r(Phase::Ready, 1, 2),
            r(Phase::Broken, 9, 3),
            r(Phase::Ready, 1, 4),
        ];
        // Four past their start, two wanted: the broken one, then the newest of the two idlest.
        assert_eq!(scale_down_victims(&fleet, 2), vec![3, 4]);
        assert_eq!(scale_down_victims(&fleet, 3), vec![3]);
        // The starting replica is never chosen, even at zero.
        assert_eq!(scale_down_victims(&fleet, 0), vec![3, 4, 2, 0]);
        assert!(scale_down_victims(&fleet, 4).is_empty());
        assert!(scale_down_victims(&[r(Phase::Starting, 0, 0)], 0).is_empty());
    }

    #[test]
    fn gauges_sum_the_queue_and_average_kv_usage() {
        let mut load = Load::default();
        load.set_gauges([(Some(2.0), Some(0.5)), (None, Some(0.1)), (Some(3.0), None)]);
        assert_eq!(load.waiting, Some(5.0));
        assert!((load.kv_usage.unwrap_or(0.0) - 0.3).abs() < 1e-12);
        load.set_gauges([(None, None)]);
        assert_eq!((load.waiting, load.kv_usage), (None, None));
    }
}
