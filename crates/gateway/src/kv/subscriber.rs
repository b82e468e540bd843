//! One task per pod whose engine publishes KV events: a `brix-kvevents` [`Subscriber`] (live
//! SUB stream, replays of gaps, reconnects with back-off, a timeout on every wait) whose
//! batches feed the pod's exact index. Lost batches or a sequence reset (the engine
//! restarted) clear the index: what it knew is no longer the engine's cache.

use std::sync::Arc;
use std::time::Duration;

use brix_kvevents::{BlockStored, Event, Subscriber, SubscriberConfig, Update};
use brix_router::KvUpdate;
use tokio::task::AbortHandle;

use super::apply;
use crate::discovery::KvEndpoints;
use crate::metrics::KvMetrics;
use crate::pool::PodState;

/// Subscribes to `pod`'s engine at `endpoints` until the returned handle is aborted (the pod
/// left discovery).
pub(crate) fn spawn(
    pod: Arc<PodState>,
    endpoints: KvEndpoints,
    topic: String,
    timeout: Duration,
    metrics: Arc<crate::metrics::Metrics>,
) -> AbortHandle {
    let mut cfg = SubscriberConfig::new(endpoints.events, endpoints.replay);
    cfg.topic = topic;
    cfg.timeout = timeout;
    tokio::spawn(async move {
        let mut sub = Subscriber::spawn(cfg);
        let m = &metrics.kv;
        while let Some(update) = sub.next().await {
            match update {
                Update::Batch { batch, .. } => {
                    for event in &batch.events {
                        apply_event(&pod, m, event);
                    }
                }
                Update::Lost { from, to } => {
                    m.gaps.with_label_values(&[&pod.name, "seq"]).inc();
                    m.lost
                        .with_label_values(&[&pod.name])
                        .inc_by(to.saturating_sub(from));
                    clear(&pod, m, "lost");
                }
                Update::Reset { .. } => clear(&pod, m, "reset"),
            }
        }
    })
    .abort_handle()
}

fn clear(pod: &PodState, m: &KvMetrics, reason: &str) {
    pod.kv_clear();
    m.clears.with_label_values(&[&pod.name, reason]).inc();
    m.blocks.with_label_values(&[&pod.name]).set(0);
    tracing::info!(pod = %pod.name, reason, "kv_events: exact index cleared");
}

/// One decoded event into the index. Only the GPU tier's first KV cache group is the prefix
/// cache requests hit; offloaded tiers and other groups (hybrid models) are skipped.
fn apply_event(pod: &PodState, m: &KvMetrics, event: &Event) {
    let update = match event {
        Event::BlockStored(s) if !primary(s.medium.as_deref(), s.group_idx) => return,
        Event::BlockRemoved(r) if !primary(r.medium.as_deref(), r.group_idx) => return,
        Event::BlockStored(s) => stored(s),
        Event::BlockRemoved(r) => KvUpdate::Removed {
            hashes: &r.block_hashes,
        },
        Event::AllBlocksCleared => KvUpdate::Cleared,
    };
    let _ = apply(pod, m, update);
}

fn primary(medium: Option<&str>, group: Option<i64>) -> bool {
    medium.is_none_or(|m| m.eq_ignore_ascii_case("GPU")) && group.is_none_or(|g| g == 0)
}

fn stored(s: &BlockStored) -> KvUpdate<'_> {
    KvUpdate::Stored {
        parent: s.parent_block_hash,
        hashes: &s.block_hashes,
        token_ids: &s.token_ids,
        block_size: s.block_size,
        lora: s.lora_name.as_deref(),
    }
}
