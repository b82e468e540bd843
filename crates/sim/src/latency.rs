//! Step time from a roofline: the slower of compute and memory traffic, plus fixed overhead.
//!
//! For a batch of items, each computing `q` new tokens on top of `c` tokens already in KV:
//! `T = Σq`; `FLOPs = 2·P·T + 4·L·d·Σ(q·c + q²/2)`; `bytes = P·w + kv·Σc + kv·T + lora`;
//! `t = max(FLOPs / (η_c·peak), bytes / (η_m·BW)) + t_fixed + t_seq·n + all-reduce`.
//! Everything is per GPU of the tensor-parallel group.
//!
//! LoRA adapters add their own kernels (Punica's SGMV/BGMV: shrink `x·A`, then expand `·B`
//! added to the base projection's output), launched after the base GEMMs and so priced as a
//! second roofline added to the first ([`StepCost::lora_time`]): for each distinct adapter `a`
//! in the batch with `T_a` tokens and `p_a` parameters (`r_a · L · Σ(d_in + d_out)`),
//! `FLOPs = 2·Σ T_a·p_a`, `bytes = Σ p_a·w + io·Σ T_a` (its weights read once per step, and
//! each token's activations read and written by the two kernels); base-model tokens pay nothing.

use crate::profile::{GpuProfile, ModelProfile};

/// One request's share of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchItem {
    /// Tokens computed this step (1 for a decode, the chunk for a prefill).
    pub new_tokens: u32,
    /// Tokens already in the KV cache before this step.
    pub context: u32,
}

/// One distinct adapter's share of a step (see [`StepCost::lora_time`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoraItem {
    /// Tokens of requests under this adapter computed this step.
    pub tokens: u32,
    /// Bytes of the adapter's weights (read once per step, whatever the tokens).
    pub bytes: f64,
}

/// Precomputed roofline constants for one model on one GPU type.
#[derive(Clone, Debug)]
pub struct StepCost {
    flops_per_token: f64,
    attn_flops_coeff: f64,
    weight_bytes: f64,
    kv_bytes_per_token: f64,
    compute_rate: f64,
    mem_rate: f64,
    fixed_s: f64,
    per_seq_s: f64,
    allreduce_fixed_s: f64,
    allreduce_s_per_token: f64,
    dtype_bytes: f64,
}

impl StepCost {
    /// Constants for `model` on `gpu`.
    pub fn new(model: &ModelProfile, gpu: &GpuProfile) -> Self {
        let tp = f64::from(model.tensor_parallel_size);
        let layers = f64::from(model.num_layers);
        let attn_dim = f64::from(model.num_heads * model.head_dim);
        let w = f64::from(model.dtype_bytes);
        let (allreduce_fixed_s, allreduce_s_per_token) = if model.tensor_parallel_size > 1 {
            // Two all-reduces per layer (after attention and after the MLP), ring algorithm.
            let per_token = 2.0 * layers * 2.0 * (tp - 1.0) / tp * f64::from(model.hidden_size) * w
                / (gpu.interconnect_gbps * 1e9);
            (2.0 * layers * gpu.allreduce_latency_us * 1e-6, per_token)
        } else {
            (0.0, 0.0)
        };
        Self {
            flops_per_token: 2.0 * model.params / tp,
            attn_flops_coeff: 4.0 * layers * attn_dim / tp,
            weight_bytes: model.weight_bytes_per_gpu(),
            kv_bytes_per_token: model.kv_bytes_per_token_per_gpu(),
            compute_rate: gpu.compute_efficiency * gpu.tflops_16bit * 1e12,
            mem_rate: gpu.mem_efficiency * gpu.bandwidth_gbps * 1e9,
            fixed_s: gpu.step_overhead_ms * 1e-3,
            per_seq_s: gpu.per_seq_overhead_us * 1e-6,
            allreduce_fixed_s,
            allreduce_s_per_token,
            dtype_bytes: w,
        }
    }

    /// Seconds the LoRA kernels add to a step: a roofline of their own over the adapters in
    /// the batch; `io_bytes_per_token` is the activation traffic per LoRA token (input read
    /// by the shrink kernel, output read and written by the expand kernel, all layers). Zero
    /// for a batch without adapters.
    pub fn lora_time(
        &self,
        adapters: impl IntoIterator<Item = LoraItem>,
        io_bytes_per_token: f64,
    ) -> f64 {
        let (mut flops, mut bytes) = (0.0, 0.0);
        for a in adapters {
            let t = f64::from(a.tokens);
            // One multiply-add per parameter per token.
            flops += 2.0 * t * a.bytes / self.dtype_bytes;
            bytes += a.bytes + io_bytes_per_token * t;
        }
        (flops / self.compute_rate).max(bytes / self.mem_rate)
    }

    /// Seconds computing `new_tokens` on top of `context` cached tokens adds to a step: the
    /// roof of that work alone (its FLOPs, or its KV reads and writes), without the step's
    /// fixed costs or weight streaming, which the step pays anyway. What loading those tokens'
    /// KV from a pool instead of recomputing them would save.
    pub fn prefill_time(&self, new_tokens: u32, context: u32) -> f64 {
        let (q, c) = (f64::from(new_tokens), f64::from(context));
        let flops = self.flops_per_token * q + self.attn_flops_coeff * (q * c + q * q / 2.0);
        let bytes = self.kv_bytes_per_token * (c + q);
        (flops / self.compute_rate).max(bytes / self.mem_rate) + self.allreduce_s_per_token * q
    }

    /// Seconds one step of `items` takes; `extra_bytes` adds memory traffic (LoRA weights).
    pub fn step_time(&self, items: impl IntoIterator<Item = BatchItem>, extra_bytes: f64) -> f64 {
        let (mut tokens, mut attn, mut ctx, mut seqs) = (0.0, 0.0, 0.0, 0.0);
        for it in items {
            let (q, c) = (f64::from(it.new_tokens), f64::from(it.context));
            tokens += q;
            attn += q * c + q * q / 2.0;
            ctx += c;
            seqs += 1.0;
        }
        if seqs == 0.0 {
            return 0.0;
        }
        let flops = self.flops_per_token * tokens + self.attn_flops_coeff * attn;
        let bytes = self.weight_bytes + self.kv_bytes_per_token * (ctx + tokens) + extra_bytes;
        let roof = (flops / self.compute_rate).max(bytes / self.mem_rate);
        roof + self.fixed_s
            + self.per_seq_s * seqs
            + self.allreduce_fixed_s
            + self.allreduce_s_per_token * tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Catalog;

    fn cost(model: &str, gpu: &str) -> StepCost {
        let c = Catalog::builtin();
        match (c.model(model), c.gpu(gpu)) {
            (Ok(m), Ok(g)) => StepCost::new(m, g),
            (m, g) => panic!("{:?} {:?}", m.err(), g.err()),
        }
    }

    fn decode(n: u32, ctx: u32) -> Vec<BatchItem> {
        vec![
            BatchItem {
                new_tokens: 1,
                context: ctx
            };
            n as usize
        ]
    }

    #[test]
    fn shapes_of_the_roofline() {
        let a100 = cost("llama-3-8b", "A100-80GB");
        // Table of (batch, expectation): decode is memory-bound, so 8x the batch costs far
        // less than 8x the time; a long prefill is compute-bound and scales with tokens.
        let t1 = a100.step_time(decode(1, 1000), 0.0);
        let t8 = a100.step_time(decode(8, 1000), 0.0);
        assert!(
            t8 < 1.2 * t1,
            "decode batching should be nearly free: {t1} vs {t8}"
        );
        let p1k = a100.step_time(
            [BatchItem {
                new_tokens: 1024,
                context: 0,
            }],
            0.0,
        );
        let p2k = a100.step_time(
            [BatchItem {
                new_tokens: 2048,
                context: 0,
            }],
            0.0,
        );
        assert!(
            p2k > 1.8 * p1k && p1k > 4.0 * t1,
            "prefill should be compute-bound: {p1k} {p2k}"
        );
        // H200 streams weights faster than A100: its bs=1 decode is quicker.
        let h200 = cost("llama-3-8b", "H200");
        assert!(h200.step_time(decode(1, 1000), 0.0) < t1);
        assert_eq!(a100.step_time([], 0.0), 0.0);
    }

    #[test]
    fn lora_kernels_grow_with_tokens_and_distinct_adapters() {
        let c = cost("llama-3-8b", "A100-80GB");
        // Rank 16 on the attention projections of Llama-3-8B: 27 MB; activations ≈ 1.3 MB a
        // token (what `LoraManager` derives for this model).
        let (bytes, io) = (27.3e6, 1.3e6);
        let one = |tokens| LoraItem { tokens, bytes };
        assert_eq!(c.lora_time([], io), 0.0);
        let base = c.step_time(decode(32, 1000), 0.0);
        // 32 decodes under one adapter: well under a percent of the base step, which streams
        // 16 GB of base weights.
        let shared = c.lora_time([one(32)], io);
        assert!(shared > 0.0 && shared < 0.01 * base, "{shared} vs {base}");
        // The same 32 decodes over 32 adapters read 32 adapters' weights: 10× more, still
        // a few percent.
        let mixed = c.lora_time(std::iter::repeat_n(one(1), 32), io);
        assert!(mixed > 10.0 * shared, "{mixed} vs {shared}");
        assert!(mixed < 0.1 * base, "{mixed} vs {base}");
        // A long prefill under one adapter: grows with its tokens.
        let (p1, p2) = (c.lora_time([one(1024)], io), c.lora_time([one(4096)], io));
        assert!(p2 > 2.5 * p1, "{p1} {p2}");
    }

    #[test]
    fn tensor_parallel_splits_work_but_pays_all_reduce() {
        let tp4 = cost("llama-3-70b-tp4", "H100");
        let tp8 = cost("llama-3-70b-tp8", "H100");
        let (a, b) = (
            tp4.step_time(decode(32, 2000), 0.0),
            tp8.step_time(decode(32, 2000), 0.0),
        );
        assert!(b < a && b > a / 2.0, "tp8 faster but not 2x: {a} {b}");
    }
}
