//! Engines' KV events into the gateways' exact per-pod indexes (`--kv-events`).

use brix_router::KvUpdate;

use super::Sim;

impl Sim<'_> {
    /// The step's KV events from engine `e`, into every gateway's exact index of the pod
    /// (each gateway subscribes to every pod itself). An event the index cannot apply (a gap,
    /// a full index) clears it, as the live subscriber does when replay cannot fill a gap.
    pub(super) fn kv_events(&mut self, e: usize) {
        if !self.cfg.kv_events {
            return;
        }
        let events = self.slots[e].engine.take_kv_events();
        if events.is_empty() {
            return;
        }
        for r in 0..self.cfg.replicas.gateways.max(1) {
            let fleet = self.replica_fleet(r);
            for ev in &events {
                let update = match ev {
                    brix_sim::KvEvent::Stored {
                        hashes,
                        parent,
                        token_ids,
                        block_size,
                        lora_name,
                        ..
                    } => KvUpdate::Stored {
                        parent: *parent,
                        hashes,
                        token_ids,
                        block_size: *block_size,
                        lora: lora_name.as_deref(),
                    },
                    brix_sim::KvEvent::Removed { hashes } => KvUpdate::Removed { hashes },
                    brix_sim::KvEvent::Cleared => KvUpdate::Cleared,
                };
                if fleet.kv_event(e, update).is_err() {
                    fleet.kv_clear(e);
                }
            }
        }
    }
}
