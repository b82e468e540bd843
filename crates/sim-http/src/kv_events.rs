//! `--kv-events-config`: the engine's KV events published as vLLM publishes them.
//!
//! The driver drains [`brix_sim::Engine::take_kv_events`] after every step and, when the step
//! produced any, publishes one batch (`ts` = wall-clock seconds) through a
//! [`brix_kvevents::Publisher`]. Fields vLLM fills from its KV cache spec are fixed to what a
//! single full-attention GPU group gives: `medium: "GPU"`, `group_idx: 0`,
//! `kv_cache_spec_kind: "full_attention"`, `data_parallel_rank: 0`; `extra_keys` carries the
//! adapter name per block as vLLM's does.

use std::time::{SystemTime, UNIX_EPOCH};

use brix_kvevents::{Batch, BlockRemoved, BlockStored, Event, KvEventsConfig, bind_address};
use brix_sim::KvEvent;

use crate::config::SimError;

/// vLLM's wire form of one step's events.
pub(crate) fn batch(events: Vec<KvEvent>) -> Batch {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let events = events.into_iter().map(event).collect();
    Batch {
        ts,
        events,
        data_parallel_rank: Some(0),
    }
}

fn event(e: KvEvent) -> Event {
    match e {
        KvEvent::Stored {
            hashes,
            parent,
            token_ids,
            block_size,
            lora_id,
            lora_name,
        } => Event::BlockStored(BlockStored {
            extra_keys: Some(vec![lora_name.clone().map(|n| vec![n]); hashes.len()]),
            block_hashes: hashes,
            parent_block_hash: parent,
            token_ids,
            block_size,
            lora_id: lora_id.map(i64::from),
            medium: Some("GPU".into()),
            lora_name,
            group_idx: Some(0),
            kv_cache_spec_kind: Some("full_attention".into()),
            kv_cache_spec_sliding_window: None,
        }),
        KvEvent::Removed { hashes } => Event::BlockRemoved(BlockRemoved {
            block_hashes: hashes,
            medium: Some("GPU".into()),
            group_idx: Some(0),
        }),
        KvEvent::Cleared => Event::AllBlocksCleared,
    }
}

/// Fails now, before the server starts, when a port to bind is taken (the sockets themselves
/// open in the driver's runtime right after).
pub(crate) fn precheck(cfg: &KvEventsConfig) -> Result<(), SimError> {
    for e in std::iter::once(&cfg.endpoint).chain(&cfg.replay_endpoint) {
        if !brix_kvevents::is_bind_endpoint(e) {
            continue;
        }
        let addr = bind_address(e);
        let addr = addr.trim_start_matches("tcp://");
        if addr.ends_with(":0") {
            continue;
        }
        std::net::TcpListener::bind(addr)
            .map_err(|source| SimError::KvEvents(format!("cannot bind {e}: {source}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_take_vllm_wire_form() {
        let b = batch(vec![
            KvEvent::Removed { hashes: vec![7] },
            KvEvent::Stored {
                hashes: vec![1, 2],
                parent: Some(9),
                token_ids: vec![5; 4],
                block_size: 2,
                lora_id: Some(1),
                lora_name: Some("sql".into()),
            },
            KvEvent::Cleared,
        ]);
        assert!(b.ts > 1e9 && b.data_parallel_rank == Some(0));
        let Event::BlockStored(s) = &b.events[1] else {
            panic!("{b:?}")
        };
        assert_eq!(s.extra_keys, Some(vec![Some(vec!["sql".to_string()]); 2]));
        assert_eq!((s.parent_block_hash, s.lora_id), (Some(9), Some(1)));
        assert_eq!(b.events[2], Event::AllBlocksCleared);
        let round = brix_kvevents::decode(&brix_kvevents::encode(&b));
        assert_eq!(round.as_ref(), Ok(&b));
    }
}
