//! Step time from a roofline: the slower of compute and memory traffic, plus fixed overhead.
//!
//! For a batch of items, each computing `q` new tokens on top of `c` tokens already in KV:
//! `T = Σq`; `FLOPs = 2·P·T + 4·L·d·Σ(q·c + q²/2)`; `bytes = P·w + kv·Σc + kv·T + lora`;
//! `t = max(FLOPs / (η_c·peak), bytes / (η_m·BW)) + t_fixed + t_seq·n + all-reduce`.
//! Everything is per GPU of the tensor-parallel group.

use crate::profile::{GpuProfile, ModelProfile};

/// One request's share of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchItem {
    /// Tokens computed this step (1 for a decode, the chunk for a prefill).
    pub new_tokens: u32,
    /// Tokens already in the KV cache before this step.
    pub context: u32,
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
        }
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
