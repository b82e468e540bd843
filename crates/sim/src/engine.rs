//! The engine: vLLM V1's scheduler loop over the block pool, priced by the roofline.
//!
//! One call to [`Engine::step`] is one engine iteration: schedule RUNNING requests first (each
//! gets its remaining tokens, capped by the step's token budget; when KV blocks run out the
//! last running request is preempted by recompute and goes back to the front of WAITING), then,
//! if nothing was preempted, admit WAITING requests in order while budget and `max_num_seqs`
//! allow (skipping, not preempting, a LoRA request whose adapter would exceed `max_loras`),
//! reusing prefix-cache hits. Tokens appear at the end of the step that completes them.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::config::{ConfigError, EngineConfig};
use crate::events::KvEvent;
use crate::hash::{BlockHasher, HashAlgo};
use crate::kv::BlockPool;
use crate::latency::{BatchItem, StepCost};
use crate::lora::LoraManager;
use crate::profile::{GpuProfile, ModelProfile};
use crate::request::{NewRequest, Request, RequestId, Status};

use tier::Tier;
pub use tier::{KvTier, SHM_LATENCY_S, TCP_GBPS, TCP_LATENCY_S, TierConfig, Transport};

pub use crate::outcome::{
    AddError, EngineSnapshot, EngineStats, FinishReason, Finished, StepOutput, TokenOut,
};

/// One simulated vLLM engine (one replica, possibly tensor-parallel).
#[derive(Clone, Debug)]
pub struct Engine {
    cfg: EngineConfig,
    model: ModelProfile,
    gpu: GpuProfile,
    cost: StepCost,
    pool: BlockPool,
    hasher: BlockHasher,
    lora: LoraManager,
    reqs: FxHashMap<RequestId, Request>,
    running: Vec<RequestId>,
    waiting: VecDeque<RequestId>,
    stats: EngineStats,
    filler: Vec<u32>,
    /// Seconds of API-server time each request costs before the scheduler sees it.
    intake_s: f64,
    /// When the (single) API server is free to take the next request.
    intake_free: f64,
    /// The KV tier below the prefix cache, if any.
    tier: Option<Tier>,
}

impl Engine {
    /// An idle engine; fails as vLLM would at start-up when the settings cannot work.
    pub fn new(
        cfg: EngineConfig,
        model: ModelProfile,
        gpu: GpuProfile,
    ) -> Result<Self, ConfigError> {
        let blocks = cfg.validate(&model, &gpu)?;
        let lora = LoraManager::new(
            cfg.enable_lora,
            cfg.max_loras,
            cfg.max_cpu_loras,
            cfg.max_lora_rank,
            &model,
        );
        // vLLM draws a random seed for xxhash_cbor without PYTHONHASHSEED; the sim derives one.
        let seed = match (&cfg.hash_seed, cfg.prefix_caching_hash_algo) {
            (Some(s), _) => Some(s.clone()),
            (None, HashAlgo::XxhashCbor) => Some(format!("brix-sim-{}", cfg.seed)),
            (None, _) => None,
        };
        Ok(Self {
            cost: StepCost::new(&model, &gpu),
            pool: BlockPool::new(blocks, cfg.enable_prefix_caching).with_events(cfg.kv_events),
            hasher: BlockHasher::new(cfg.prefix_caching_hash_algo, seed.as_deref()),
            lora,
            reqs: FxHashMap::default(),
            running: Vec::new(),
            waiting: VecDeque::new(),
            stats: EngineStats::default(),
            filler: (1000..1064).collect(),
            intake_s: gpu.request_intake_ms * 1e-3,
            intake_free: f64::NEG_INFINITY,
            tier: None,
            cfg,
            model,
            gpu,
        })
    }

    /// Sets the token ids generated text cycles through (so it detokenizes to real words).
    pub fn with_filler(mut self, tokens: Vec<u32>) -> Self {
        if !tokens.is_empty() {
            self.filler = tokens;
        }
        self
    }

    /// Queues a request that arrived at `now`.
    pub fn add_request(&mut self, req: NewRequest, now: f64) -> Result<(), AddError> {
        let max_len = self.cfg.max_model_len;
        let prompt = req.prompt.len().min(u32::MAX as usize) as u32;
        // The model (adapter) is checked first, as vLLM answers 404 before validating the body.
        let lora = match &req.lora {
            Some(name) => Some(
                self.lora
                    .id(name)
                    .ok_or_else(|| AddError::UnknownLora(name.clone()))?,
            ),
            None => None,
        };
        if self.reqs.contains_key(&req.id) {
            return Err(AddError::DuplicateId(req.id));
        }
        if prompt == 0 {
            return Err(AddError::EmptyPrompt);
        }
        if prompt >= max_len {
            return Err(AddError::PromptTooLong {
                prompt,
                max_model_len: max_len,
            });
        }
        let max_tokens = req.max_tokens.unwrap_or(max_len - prompt);
        if max_tokens == 0 {
            return Err(AddError::ZeroMaxTokens);
        }
        if req.min_tokens > max_tokens {
            return Err(AddError::MinAboveMax {
                min_tokens: req.min_tokens,
                max_tokens,
            });
        }
        if u64::from(prompt) + u64::from(max_tokens) > u64::from(max_len) {
            return Err(AddError::TooLong {
                prompt,
                max_tokens,
                max_model_len: max_len,
            });
        }
        let mut rng = SmallRng::seed_from_u64(match req.seed {
            Some(seed) => seed,
            None => self.cfg.seed ^ req.id.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        });
        let natural = self.cfg.output_len.sample(&mut rng);
        let target_output = if req.ignore_eos {
            max_tokens
        } else {
            natural.max(req.min_tokens).min(max_tokens)
        };
        let (mut hashes, mut last_digest) = (Vec::new(), None);
        if self.cfg.enable_prefix_caching {
            self.hasher.extend(
                &mut hashes,
                &mut last_digest,
                &req.prompt,
                self.cfg.block_size as usize,
                lora.and_then(|l| self.lora.key(l)),
            );
        }
        // The API server takes requests one at a time: a burst reaches the scheduler as a ramp.
        let ready = now.max(self.intake_free) + self.intake_s;
        self.intake_free = ready;
        let r = Request {
            id: req.id,
            tokens: req.prompt,
            prompt_len: prompt,
            target_output,
            max_tokens,
            lora,
            status: Status::Waiting,
            num_computed: 0,
            blocks: Vec::new(),
            hashes,
            last_digest,
            num_cached_blocks: 0,
            cached_tokens: 0,
            external_tokens: 0,
            pool_keys: Vec::new(),
            pool_offered: 0,
            filler_offset: rng.random_range(0..self.filler.len()),
            arrival: now,
            ready,
            first_scheduled: None,
            first_token: None,
            last_token: now,
            num_preemptions: 0,
        };
        self.reqs.insert(r.id, r);
        self.waiting.push_back(req.id);
        Ok(())
    }

    /// Removes a live request, freeing its blocks; None if it is unknown or already done.
    pub fn abort(&mut self, id: RequestId, now: f64) -> Option<Finished> {
        let r = self.reqs.remove(&id)?;
        match r.status {
            Status::Running => self.running.retain(|&x| x != id),
            Status::Waiting => self.waiting.retain(|&x| x != id),
        }
        self.pool.free(&r.blocks);
        Some(finished(&r, FinishReason::Abort, now))
    }

    /// Runs one iteration starting at `now`, or, when nothing runs and every waiting request
    /// is still in the API server, at the moment the first one reaches the scheduler
    /// (`StepOutput::start`); None when there is nothing to do.
    pub fn step(&mut self, now: f64) -> Option<StepOutput> {
        if !self.has_work() {
            return None;
        }
        let mut now = match self.waiting.front().and_then(|id| self.reqs.get(id)) {
            Some(r) if self.running.is_empty() => now.max(r.ready),
            _ => now,
        };
        if self.cfg.frontend_blocks_engine {
            now = now.max(self.intake_free);
        }
        let mut budget = self.cfg.max_num_batched_tokens;
        let mut sched: Vec<(RequestId, BatchItem)> = Vec::with_capacity(self.running.len() + 8);
        let preemptions = self.schedule_running(&mut budget, &mut sched);
        let mut load_s = 0.0;
        if preemptions == 0 {
            load_s = self.schedule_waiting(&mut budget, &mut sched, now);
        }
        let (offers, store_s) = self.tier_offers(&sched);
        let lora_tokens: Vec<(u32, u32)> = sched
            .iter()
            .filter_map(|(id, it)| Some((self.reqs.get(id)?.lora?, it.new_tokens)))
            .collect();
        let lora_items = self.lora.batch_items(&lora_tokens);
        let mut batch_loras: Vec<u32> = lora_tokens.iter().map(|(l, _)| *l).collect();
        batch_loras.sort_unstable();
        batch_loras.dedup();
        let swap = self.lora.activate(&batch_loras);
        let duration = self.cost.step_time(sched.iter().map(|(_, it)| *it), 0.0)
            + self
                .cost
                .lora_time(lora_items, self.lora.io_bytes_per_token)
            + swap.from_disk / (self.cfg.lora_disk_gbps * 1e9)
            + swap.to_gpu / (self.gpu.pcie_gbps * 1e9)
            + load_s
            + store_s;
        let end = now + duration;
        self.stats.external_load_time += load_s;
        self.stats.external_store_time += store_s;
        self.tier_store(&offers, end);
        let mut out = StepOutput {
            start: now,
            end,
            num_tokens: sched.iter().map(|(_, it)| it.new_tokens).sum(),
            preemptions,
            ..StepOutput::default()
        };
        for (id, item) in &sched {
            self.complete(*id, item.new_tokens, end, &mut out);
        }
        if !out.finished.is_empty() {
            self.running.retain(|id| self.reqs.contains_key(id));
        }
        self.stats.steps += 1;
        self.stats.busy_time += duration;
        Some(out)
    }

    /// Schedules RUNNING requests in order, preempting from the tail when blocks run out.
    fn schedule_running(
        &mut self,
        budget: &mut u32,
        sched: &mut Vec<(RequestId, BatchItem)>,
    ) -> u32 {
        let mut preemptions = 0;
        let mut i = 0;
        'running: while i < self.running.len() && *budget > 0 {
            let id = self.running[i];
            let Some(r) = self.reqs.get(&id) else { break };
            let n = chunk(&self.cfg, r.num_tokens() - r.num_computed, *budget);
            let context = r.num_computed;
            if n == 0 {
                i += 1;
                continue;
            }
            while !self.allocate(id, n) {
                let Some(victim) = self.running.pop() else {
                    break 'running;
                };
                self.preempt(victim);
                preemptions += 1;
                if victim == id {
                    break 'running;
                }
            }
            sched.push((
                id,
                BatchItem {
                    new_tokens: n,
                    context,
                },
            ));
            *budget -= n;
            i += 1;
        }
        preemptions
    }

    /// Admits WAITING requests in order while budget, `max_num_seqs`, LoRA slots and blocks
    /// allow; returns the seconds their KV-tier loads add to the step.
    fn schedule_waiting(
        &mut self,
        budget: &mut u32,
        sched: &mut Vec<(RequestId, BatchItem)>,
        now: f64,
    ) -> f64 {
        let mut load_s = 0.0;
        // vLLM counts the adapters of the RUNNING requests scheduled this step (a running
        // request left out by the token budget holds no slot).
        let mut loras: Vec<u32> = sched
            .iter()
            .filter_map(|(id, _)| self.reqs.get(id)?.lora)
            .collect();
        loras.sort_unstable();
        loras.dedup();
        let mut skipped = Vec::new();
        let bs = self.cfg.block_size;
        while *budget > 0 && (self.running.len() as u32) < self.cfg.max_num_seqs {
            let Some(&id) = self.waiting.front() else {
                break;
            };
            let Some(r) = self.reqs.get_mut(&id) else {
                break;
            };
            if r.ready > now {
                break; // still in the API server; the queue is in intake order
            }
            if let Some(l) = r.lora
                && !loras.contains(&l)
                && loras.len() as u32 >= self.cfg.max_loras
            {
                skipped.push(id);
                self.waiting.pop_front();
                continue;
            }
            // Prefix-cache lookup over full blocks, never the whole prompt: vLLM recomputes
            // the last token so the step has logits to sample from.
            let mut hits: Vec<u32> = Vec::new();
            if self.cfg.enable_prefix_caching {
                self.hasher.extend(
                    &mut r.hashes,
                    &mut r.last_digest,
                    &r.tokens,
                    bs as usize,
                    r.lora.and_then(|l| self.lora.key(l)),
                );
                let max_hit = ((r.num_tokens() - 1) / bs) as usize;
                for h in r.hashes.iter().take(max_hit) {
                    match self.pool.lookup(*h) {
                        Some(b) => hits.push(b),
                        None => break,
                    }
                }
            }
            let (local, num_hits) = (hits.len() as u32 * bs, hits.len());
            let ext = match &self.tier {
                Some(t) => t.admit(r, local, bs, &self.cost, &self.lora, now),
                None => tier::Admission::default(),
            };
            let computed = local + ext.tokens;
            let n = chunk(&self.cfg, r.num_tokens() - computed, *budget);
            let need = (computed + n).div_ceil(bs) - hits.len() as u32;
            let hits_on_free_list = hits.iter().filter(|&&b| self.pool.is_free(b)).count() as u32;
            if need + hits_on_free_list > self.pool.num_free() {
                break;
            }
            for &b in &hits {
                self.pool.touch(b);
            }
            r.blocks = hits;
            let allocated = self.pool.allocate(need, &mut r.blocks);
            debug_assert!(allocated, "free-block check passed but allocation failed");
            self.stats.prefix_queries += u64::from(r.num_tokens());
            self.stats.prefix_hits += u64::from(local);
            load_s += ext.book(r, &mut self.stats, self.tier.is_some());
            if r.first_scheduled.is_none() {
                r.first_scheduled = Some(now);
                r.cached_tokens = computed;
            }
            r.num_computed = computed;
            // Loaded blocks are cached when the step ends, like computed ones.
            r.num_cached_blocks = num_hits;
            r.status = Status::Running;
            if let Some(l) = r.lora
                && !loras.contains(&l)
            {
                loras.push(l);
            }
            self.waiting.pop_front();
            self.running.push(id);
            sched.push((
                id,
                BatchItem {
                    new_tokens: n,
                    context: computed,
                },
            ));
            *budget -= n;
        }
        for id in skipped.into_iter().rev() {
            self.waiting.push_front(id);
        }
        load_s
    }

    /// Gives `id` the blocks to hold `n` more tokens; false (and no change) if too few are free.
    fn allocate(&mut self, id: RequestId, n: u32) -> bool {
        let bs = self.cfg.block_size;
        let Some(r) = self.reqs.get_mut(&id) else {
            return false;
        };
        let need = (r.num_computed + n)
            .div_ceil(bs)
            .saturating_sub(r.blocks.len() as u32);
        self.pool.allocate(need, &mut r.blocks)
    }

    fn preempt(&mut self, id: RequestId) {
        let Some(r) = self.reqs.get_mut(&id) else {
            return;
        };
        self.pool.free(&r.blocks);
        r.blocks.clear();
        r.num_computed = 0;
        r.num_cached_blocks = 0;
        r.status = Status::Waiting;
        r.num_preemptions += 1;
        self.waiting.push_front(id);
        self.stats.preemptions += 1;
    }

    /// Books `n` computed tokens for `id` at `end`: caches full blocks, emits a token when the
    /// sequence is fully computed, and retires the request when it is done.
    fn complete(&mut self, id: RequestId, n: u32, end: f64, out: &mut StepOutput) {
        let bs = self.cfg.block_size;
        let Some(r) = self.reqs.get_mut(&id) else {
            return;
        };
        r.num_computed += n;
        if self.cfg.enable_prefix_caching {
            let computed = r.num_computed as usize;
            self.hasher.extend(
                &mut r.hashes,
                &mut r.last_digest,
                &r.tokens[..computed],
                bs as usize,
                r.lora.and_then(|l| self.lora.key(l)),
            );
            let (start, full) = (
                r.num_cached_blocks,
                ((r.num_computed / bs) as usize).min(r.blocks.len()),
            );
            for i in start..full {
                self.pool.cache(r.blocks[i], r.hashes[i]);
            }
            if self.pool.emits_events() && full > start {
                // vLLM's cache_full_blocks: one BlockStored for the newly full blocks.
                let b = bs as usize;
                self.pool.events.push(KvEvent::Stored {
                    hashes: r.hashes[start..full].to_vec(),
                    parent: start.checked_sub(1).map(|p| r.hashes[p]),
                    token_ids: r.tokens[start * b..full * b].to_vec(),
                    block_size: bs,
                    lora_id: r.lora,
                    lora_name: r.lora.and_then(|l| self.lora.name(l)).map(str::to_string),
                });
            }
            r.num_cached_blocks = r.num_cached_blocks.max(full);
        }
        if r.num_computed < r.num_tokens() {
            return; // a prefill chunk that does not finish the prompt emits nothing
        }
        let token = self.filler[(r.filler_offset + r.output_len() as usize) % self.filler.len()];
        r.tokens.push(token);
        let first = r.first_token.is_none();
        let latency = if first {
            r.first_token = Some(end);
            self.stats.prompt_tokens += u64::from(r.prompt_len);
            end - r.arrival
        } else {
            end - r.last_token
        };
        r.last_token = end;
        self.stats.generation_tokens += 1;
        out.tokens.push(TokenOut {
            id,
            token,
            first,
            latency,
        });
        if r.output_len() >= r.target_output {
            let reason = if r.output_len() >= r.max_tokens {
                FinishReason::Length
            } else {
                FinishReason::Stop
            };
            if let Some(r) = self.reqs.remove(&id) {
                self.pool.free(&r.blocks);
                out.finished.push(finished(&r, reason, end));
            }
        }
    }
}

/// Tokens a request may compute this step: what remains, within budget and the long-prefill cap.
fn chunk(cfg: &EngineConfig, remaining: u32, budget: u32) -> u32 {
    let n = remaining.min(budget);
    match cfg.long_prefill_token_threshold {
        0 => n,
        t => n.min(t),
    }
}

fn finished(r: &Request, reason: FinishReason, end: f64) -> Finished {
    Finished {
        id: r.id,
        reason,
        prompt_tokens: r.prompt_len,
        output_tokens: r.output_len(),
        cached_tokens: r.cached_tokens,
        external_tokens: r.external_tokens,
        max_tokens: r.max_tokens,
        arrival: r.arrival,
        first_scheduled: r.first_scheduled,
        first_token: r.first_token,
        end,
        num_preemptions: r.num_preemptions,
    }
}

#[path = "tier.rs"]
mod tier;

#[path = "engine_views.rs"]
mod views;

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "events_tests.rs"]
mod events_tests;
