//! N gateway replicas in virtual time (`brix bench sim --gateways N`): each replica has its
//! own routing core ([`Fleet`]: in-flight counts, measured latencies, prefix index) and routes
//! the requests the load balancer in front of them gives it (round-robin over arrivals, or a
//! seeded hash of the request id). Every `min_sync_s` (phase-shifted per replica, as live
//! replicas are not synchronised) a replica looks at its own per-pod loads and the prefix
//! blocks it booked since its last batch and, if either changed (or `sync_s` passed since its
//! last batch), publishes them; the others apply them at once
//! ([`Fleet::set_remote`], [`Fleet::peer_accepted`]), as the live Redis sync does; so the
//! only difference from one gateway is the staleness, which is what this measures. Every
//! replica scrapes the engines at the same ticks (optimistic: live probes are not aligned).

use brix_router::fleet::{Fleet, RemoteLoad};

use super::Sim;
use super::slot::Event;
use crate::vsim::SimError;

/// How the load balancer in front of the replicas spreads requests over them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Assign {
    /// One replica after the other, in arrival order.
    #[default]
    RoundRobin,
    /// A seeded hash of the request id (a stateless L4 balancer).
    Hash,
}

impl std::str::FromStr for Assign {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "round-robin" | "rr" => Ok(Self::RoundRobin),
            "hash" => Ok(Self::Hash),
            _ => Err(format!("{s:?}: expected round-robin or hash")),
        }
    }
}

/// The gateway replicas of a run, and how they share state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplicaConfig {
    /// Gateway replicas (1: one gateway, no sync).
    pub gateways: usize,
    /// Longest seconds between two batches of one replica (the live
    /// `routing.sync.interval_ms`).
    pub sync_s: f64,
    /// Seconds between two looks at a replica's own state; a change is published at the next
    /// look (the live `routing.sync.min_interval_ms`).
    pub min_sync_s: f64,
    /// How requests are spread over the replicas.
    pub assign: Assign,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            gateways: 1,
            sync_s: 0.1,
            min_sync_s: 0.005,
            assign: Assign::RoundRobin,
        }
    }
}

/// Replicas 1..N (replica 0's core is [`Sim`]'s own `fleet`) and what they have to publish.
pub(super) struct Replicas {
    others: Vec<Fleet>,
    cfg: ReplicaConfig,
    /// The replica that routed each request (by position), 0 until routed.
    owner: Vec<u16>,
    /// Per replica: (engine, blocks) booked since its last batch.
    booked: Vec<Vec<(usize, Vec<u64>)>>,
    arrivals: u64,
    seed: u64,
    ids: Vec<String>,
    /// Per replica: the loads of its last batch and when it went out.
    last: Vec<(Vec<RemoteLoad>, f64)>,
}

impl Replicas {
    /// Replicas cloned from `first` (engines probed), for `requests` requests; None for one.
    pub(super) fn new(
        cfg: ReplicaConfig,
        first: &Fleet,
        requests: usize,
        seed: u64,
    ) -> Option<Self> {
        (cfg.gateways > 1).then(|| Self {
            others: vec![first.clone(); cfg.gateways - 1],
            cfg,
            owner: vec![0; requests],
            booked: vec![Vec::new(); cfg.gateways],
            arrivals: 0,
            seed,
            ids: (0..cfg.gateways).map(|r| format!("gw-{r}")).collect(),
            last: vec![(Vec::new(), f64::NEG_INFINITY); cfg.gateways],
        })
    }

    /// When replica `r` first looks.
    pub(super) fn first_sync(&self, r: usize) -> f64 {
        self.cfg.min_sync_s * (r + 1) as f64 / self.cfg.gateways as f64
    }

    /// Picks the replica for request `i` (with id `id`) and remembers it.
    fn assign(&mut self, i: usize, id: u64) -> usize {
        let n = self.cfg.gateways as u64;
        let r = match self.cfg.assign {
            Assign::RoundRobin => self.arrivals % n,
            Assign::Hash => {
                let mut x = (id ^ self.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                x ^= x >> 29;
                x % n
            }
        };
        self.arrivals += 1;
        self.owner[i] = r as u16;
        r as usize
    }
}

/// The replica that routed request `i` (0 with one gateway).
pub(super) fn owner(reps: &Option<Replicas>, i: usize) -> usize {
    reps.as_ref().map_or(0, |x| x.owner[i] as usize)
}

/// Replica `r`'s core: `base` (the sim's own) for 0.
pub(super) fn core<'a>(
    reps: &'a mut Option<Replicas>,
    base: &'a mut Fleet,
    r: usize,
) -> &'a mut Fleet {
    match reps {
        Some(x) if r > 0 => &mut x.others[r - 1],
        _ => base,
    }
}

impl Sim<'_> {
    /// Makes replicas 1..N from the fleet as it starts and schedules every replica's first
    /// batch; refuses what the replicas do not model.
    pub(super) fn start_replicas(&mut self) -> Result<(), SimError> {
        let cfg = self.cfg;
        self.replicas = Replicas::new(cfg.replicas, &self.fleet, self.w.requests.len(), cfg.seed);
        let Some(x) = &self.replicas else {
            return Ok(());
        };
        let (sync, min) = (cfg.replicas.sync_s, cfg.replicas.min_sync_s);
        let timing_ok = sync.is_finite() && min > 0.0 && min <= sync;
        if cfg.autoscaler.is_some() || cfg.adapters.is_some() || !timing_ok {
            return Err(SimError::Replicas);
        }
        let firsts: Vec<f64> = (0..cfg.replicas.gateways)
            .map(|r| x.first_sync(r))
            .collect();
        for (r, at) in firsts.into_iter().enumerate() {
            self.push(at, Event::Sync(r));
        }
        Ok(())
    }

    /// The core of the replica routing request `i` now (assigning it on first call).
    pub(super) fn assign_replica(&mut self, i: usize) -> usize {
        let id = self.w.requests[i].id;
        self.replicas.as_mut().map_or(0, |x| x.assign(i, id))
    }

    /// The core of the replica that routed request `i`.
    pub(super) fn fleet_of(&mut self, i: usize) -> &mut Fleet {
        let r = owner(&self.replicas, i);
        core(&mut self.replicas, &mut self.fleet, r)
    }

    /// The core of replica `r`.
    pub(super) fn replica_fleet(&mut self, r: usize) -> &mut Fleet {
        core(&mut self.replicas, &mut self.fleet, r)
    }

    /// Replica `r` booked `blocks` on engine `e`: published in its next batch.
    pub(super) fn booked_by(&mut self, r: usize, e: usize, blocks: &[u64]) {
        if let Some(x) = &mut self.replicas
            && !blocks.is_empty()
        {
            x.booked[r].push((e, blocks.to_vec()));
        }
    }

    /// Feeds every other replica the scrape replica 0 just took.
    pub(super) fn scraped_by_all(&mut self, e: usize, now: f64, s: &brix_router::fleet::Scrape) {
        if let Some(x) = &mut self.replicas {
            for f in &mut x.others {
                f.scraped(e, now, s.clone());
            }
        }
    }

    /// Replica `r` looks at its state at `now`: if it changed since its last batch (or the
    /// heartbeat is due) it publishes and the others apply the batch; the next look is
    /// scheduled.
    pub(super) fn sync(&mut self, r: usize, now: f64) {
        let loads: Vec<RemoteLoad> = {
            let f = core(&mut self.replicas, &mut self.fleet, r);
            (0..f.len()).map(|e| f.core(e).own_load()).collect()
        };
        let Some(x) = &mut self.replicas else { return };
        let n = x.cfg.gateways;
        let (sync_s, min_s) = (x.cfg.sync_s, x.cfg.min_sync_s);
        let next = now + min_s;
        let due = now - x.last[r].1 >= sync_s - 1e-9;
        if !due && x.booked[r].is_empty() && loads == x.last[r].0 {
            if self.alive() {
                self.push(next, Event::Sync(r));
            }
            return;
        }
        let booked = std::mem::take(&mut x.booked[r]);
        let id = x.ids[r].clone();
        x.last[r] = (loads.clone(), now);
        for q in (0..n).filter(|&q| q != r) {
            let f = core(&mut self.replicas, &mut self.fleet, q);
            for (e, load) in loads.iter().enumerate() {
                // A replica's id is short and the peers few: never refused.
                let _ = f.set_remote(e, &id, *load, now);
            }
            for (e, blocks) in &booked {
                f.peer_accepted(*e, blocks, now);
            }
        }
        if self.alive() {
            self.push(next, Event::Sync(r));
        }
    }
}
