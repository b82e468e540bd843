//! Table and scenario tests of the scheduler, prefix cache, LoRA slots and preemption.

use super::*;
use crate::drive::{run_closed_loop, run_open_loop};
use crate::outlen::OutputLen;
use crate::profile::Catalog;

fn engine_with(gpu: &str, tweak: impl FnOnce(&mut EngineConfig)) -> Engine {
    let c = Catalog::builtin();
    let (m, g) = match (c.model("llama-3-8b"), c.gpu(gpu)) {
        (Ok(m), Ok(g)) => (m.clone(), g.clone()),
        _ => panic!("missing profile"),
    };
    let mut cfg = EngineConfig::vllm_defaults(&m, &g);
    tweak(&mut cfg);
    Engine::new(cfg, m, g).unwrap_or_else(|e| panic!("{e}"))
}

fn req(id: u64, prompt: Vec<u32>, max_tokens: u32) -> NewRequest {
    NewRequest {
        id,
        prompt,
        max_tokens: Some(max_tokens),
        ignore_eos: true,
        ..NewRequest::default()
    }
}

fn tokens(n: u32, salt: u32) -> Vec<u32> {
    (0..n)
        .map(|i| i.wrapping_mul(2_654_435_761).wrapping_add(salt) % 100_000)
        .collect()
}

/// Steps until idle, returning every output.
fn drain(e: &mut Engine, mut now: f64) -> Vec<StepOutput> {
    let mut outs = Vec::new();
    while let Some(o) = e.step(now) {
        now = o.end;
        outs.push(o);
        assert!(outs.len() < 1_000_000, "engine did not drain");
    }
    outs
}

#[test]
fn one_request_runs_prefill_then_one_token_per_step() {
    let mut e = engine_with("A100-80GB", |_| {});
    e.add_request(req(1, tokens(100, 0), 10), 0.0)
        .unwrap_or_else(|x| panic!("{x}"));
    let outs = drain(&mut e, 0.0);
    assert_eq!(outs.len(), 10);
    assert_eq!(outs[0].num_tokens, 100);
    assert!(outs[1..].iter().all(|o| o.num_tokens == 1));
    let f = &outs[9].finished[0];
    assert_eq!(
        (f.reason, f.prompt_tokens, f.output_tokens),
        (FinishReason::Length, 100, 10)
    );
    assert_eq!(f.ttft(), Some(outs[0].end));
    assert_eq!(e.snapshot().kv_usage, 0.0);
    assert_eq!(
        (e.stats().prompt_tokens, e.stats().generation_tokens),
        (100, 10)
    );
}

#[test]
fn long_prompts_are_chunked_to_the_token_budget() {
    let mut e = engine_with("A100-80GB", |c| c.max_num_batched_tokens = 2048);
    e.add_request(req(1, tokens(5000, 0), 2), 0.0)
        .unwrap_or_else(|x| panic!("{x}"));
    let outs = drain(&mut e, 0.0);
    let chunks: Vec<u32> = outs.iter().map(|o| o.num_tokens).collect();
    assert_eq!(chunks, vec![2048, 2048, 904, 1]);
    assert!(
        outs[..2].iter().all(|o| o.tokens.is_empty()),
        "no token before the prompt is done"
    );
}

#[test]
fn repeated_prompt_hits_the_prefix_cache_and_has_lower_ttft() {
    for (caching, want_hits) in [(true, 992), (false, 0)] {
        let mut e = engine_with("A100-80GB", |c| c.enable_prefix_caching = caching);
        let prompt = tokens(1000, 7);
        e.add_request(req(1, prompt.clone(), 4), 0.0)
            .unwrap_or_else(|x| panic!("{x}"));
        let first = drain(&mut e, 0.0);
        let t1 = first.last().map(|o| o.end).unwrap_or(0.0);
        e.add_request(req(2, prompt, 4), t1)
            .unwrap_or_else(|x| panic!("{x}"));
        let second = drain(&mut e, t1);
        let ttft = |outs: &[StepOutput]| outs[0].tokens[0].latency;
        assert_eq!(e.stats().prefix_hits, want_hits, "caching={caching}");
        assert_eq!(e.stats().prefix_queries, 2000);
        // 1000 tokens = 62 full blocks (992 tokens) hit; only 8 are recomputed.
        if caching {
            assert_eq!(second[0].num_tokens, 8);
            assert!(
                ttft(&second) < 0.5 * ttft(&first),
                "{} vs {}",
                ttft(&second),
                ttft(&first)
            );
            assert_eq!(
                second.last().map(|o| o.finished[0].cached_tokens),
                Some(992)
            );
        } else {
            assert_eq!(second[0].num_tokens, 1000);
        }
    }
}

#[test]
fn cached_prefix_tokens_predicts_admission_hits_without_changing_state() {
    let mut e = engine_with("A100-80GB", |_| {});
    let prompt = tokens(1000, 7);
    assert_eq!(e.cached_prefix_tokens(&prompt, None), 0);
    e.add_request(req(1, prompt.clone(), 4), 0.0)
        .unwrap_or_else(|x| panic!("{x}"));
    let t = drain(&mut e, 0.0).last().map_or(0.0, |o| o.end);
    let mut half = prompt[..500].to_vec();
    half.extend(tokens(300, 99));
    let stats = e.stats().clone();
    let cases: [(&[u32], Option<&str>, u32); 5] = [
        (&prompt, None, 992),      // 62 full blocks; the last token is always recomputed
        (&prompt[..64], None, 48), // 4 full blocks, at most 3 may hit
        (&half, None, 496),        // shares 31 full blocks, then diverges
        (&tokens(800, 3), None, 0),
        (&prompt, Some("unknown-adapter"), 0),
    ];
    for (p, lora, want) in cases {
        assert_eq!(e.cached_prefix_tokens(p, lora), want, "{} tokens", p.len());
    }
    assert_eq!(e.stats(), &stats, "a pure read");
    e.add_request(req(2, half, 1), t)
        .unwrap_or_else(|x| panic!("{x}"));
    let outs = drain(&mut e, t);
    assert_eq!(outs[0].finished[0].cached_tokens, 496);
    let off = engine_with("A100-80GB", |c| c.enable_prefix_caching = false);
    assert_eq!(off.cached_prefix_tokens(&prompt, None), 0);
}

#[test]
fn a_fully_cached_prompt_still_recomputes_its_last_token() {
    let mut e = engine_with("A100-80GB", |_| {});
    let prompt = tokens(64, 1);
    e.add_request(req(1, prompt.clone(), 1), 0.0)
        .unwrap_or_else(|x| panic!("{x}"));
    drain(&mut e, 0.0);
    e.add_request(req(2, prompt, 1), 1.0)
        .unwrap_or_else(|x| panic!("{x}"));
    let outs = drain(&mut e, 1.0);
    // 64 tokens = 4 full blocks, but at most (64 - 1) / 16 = 3 may hit: 16 are recomputed.
    assert_eq!(outs[0].num_tokens, 16);
    assert_eq!(e.stats().prefix_hits, 48);
}

#[test]
fn lora_adapters_get_their_own_cache_and_respect_max_loras() {
    let mut e = engine_with("A100-80GB", |c| {
        c.enable_lora = true;
        c.max_loras = 1;
        c.max_cpu_loras = 2;
    });
    for name in ["a", "b"] {
        e.load_lora(name, &format!("/adapters/{name}"))
            .unwrap_or_else(|x| panic!("{x}"));
    }
    let prompt = tokens(64, 3);
    let with = |id, lora: &str| NewRequest {
        lora: Some(lora.to_string()),
        ..req(id, prompt.clone(), 5)
    };
    e.add_request(with(1, "a"), 0.0)
        .unwrap_or_else(|x| panic!("{x}"));
    e.add_request(with(2, "b"), 0.0)
        .unwrap_or_else(|x| panic!("{x}"));
    e.add_request(with(3, "a"), 0.0)
        .unwrap_or_else(|x| panic!("{x}"));
    // Step once all three are through the API server (a few ms each).
    let first = e.step(1.0).unwrap_or_default();
    // Request 2 (adapter b) is skipped, not preempted; request 3 (adapter a) jumps it.
    let snap = e.snapshot();
    assert_eq!((snap.num_running, snap.num_waiting), (2, 1));
    assert_eq!(
        (snap.running_loras.clone(), snap.waiting_loras.clone()),
        (vec!["a".into()], vec!["b".into()])
    );
    assert_eq!(first.num_tokens, 64 + 64);
    let outs = drain(&mut e, first.end);
    let order: Vec<u64> = outs
        .iter()
        .flat_map(|o| o.finished.iter().map(|f| f.id))
        .collect();
    assert_eq!(order, vec![1, 3, 2]);
    // 1 and 3 shared a step, so neither could reuse the other's blocks yet.
    assert_eq!(e.stats().prefix_hits, 0);
    // Now a's blocks are cached: another a-request hits 3 blocks; the same text under a fresh
    // adapter c hits nothing, since the adapter is part of every block hash.
    e.load_lora("c", "/adapters/c")
        .unwrap_or_else(|x| panic!("{x}"));
    for (id, lora, hits) in [(4, "a", 48), (5, "c", 48)] {
        e.add_request(with(id, lora), 10.0)
            .unwrap_or_else(|x| panic!("{x}"));
        drain(&mut e, 10.0);
        assert_eq!(e.stats().prefix_hits, hits, "after request {id}");
    }
    assert_eq!(
        e.add_request(
            NewRequest {
                lora: Some("zz".into()),
                ..req(9, vec![1], 1)
            },
            9.0
        ),
        Err(AddError::UnknownLora("zz".into()))
    );
}

/// Seconds of the decode steps (after the first two) of 16 requests under `adapters`
/// (`None`: the base model), on an engine with LoRA `enabled`.
fn decode_seconds(enabled: bool, adapters: &[Option<&str>]) -> f64 {
    let mut e = engine_with("A100-80GB", |c| {
        c.enable_lora = enabled;
        c.max_loras = 8;
        c.max_cpu_loras = 8;
    });
    for name in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .filter(|_| enabled)
    {
        e.load_lora(name, &format!("/adapters/{name}"))
            .unwrap_or_else(|x| panic!("{x}"));
    }
    for i in 0..16u64 {
        let lora = adapters[i as usize % adapters.len()].map(str::to_string);
        e.add_request(
            NewRequest {
                lora,
                ..req(i, tokens(64, i as u32), 40)
            },
            0.0,
        )
        .unwrap_or_else(|x| panic!("{x}"));
    }
    let outs = drain(&mut e, 1.0);
    assert_eq!(outs.iter().map(|o| o.finished.len()).sum::<usize>(), 16);
    outs.iter().skip(2).map(|o| o.end - o.start).sum()
}

#[test]
fn mixed_adapter_batches_cost_more_and_base_requests_pay_nothing() {
    let plain = decode_seconds(false, &[None]);
    // Base-model requests on a LoRA engine: the very same steps.
    assert_eq!(decode_seconds(true, &[None]), plain);
    let one = decode_seconds(true, &[Some("a")]);
    let eight = decode_seconds(
        true,
        &[
            Some("a"),
            Some("b"),
            Some("c"),
            Some("d"),
            Some("e"),
            Some("f"),
            Some("g"),
            Some("h"),
        ],
    );
    let half = decode_seconds(true, &[None, Some("a")]);
    // One adapter: a small surcharge; eight distinct adapters read eight adapters' weights.
    assert!(one > plain && one < 1.1 * plain, "{plain} {one}");
    assert!(eight - plain > 3.0 * (one - plain), "{plain} {one} {eight}");
    // Half the tokens under the adapter: between the base model and all under it.
    assert!(half > plain && half < one, "{plain} {half} {one}");
}

#[test]
fn saturating_load_fills_kv_queues_and_preempts() {
    // A small cache (2,000 blocks = 32k tokens) and long answers: the batch outgrows KV.
    let mut e = engine_with("A100-80GB", |c| c.num_gpu_blocks_override = Some(2000));
    let mut peak_usage: f64 = 0.0;
    let mut peak_waiting = 0;
    for i in 0..200 {
        e.add_request(req(i, tokens(500, i as u32), 1500), 0.0)
            .unwrap_or_else(|x| panic!("{x}"));
    }
    let mut now = 0.0;
    let mut finished = 0;
    while let Some(o) = e.step(now) {
        now = o.end;
        finished += o.finished.len();
        let s = e.snapshot();
        peak_usage = peak_usage.max(s.kv_usage);
        peak_waiting = peak_waiting.max(s.num_waiting);
    }
    assert_eq!(finished, 200);
    assert!(
        peak_usage > 0.95,
        "KV usage should climb to the top: {peak_usage}"
    );
    assert!(peak_waiting > 100, "requests should queue: {peak_waiting}");
    assert!(e.stats().preemptions > 0, "KV exhaustion should preempt");
    assert_eq!(e.snapshot().kv_usage, 0.0, "every block returned");
}

#[test]
fn max_num_seqs_caps_the_batch() {
    let mut e = engine_with("A100-80GB", |c| c.max_num_seqs = 4);
    for i in 0..10 {
        e.add_request(req(i, tokens(20, i as u32), 3), 0.0)
            .unwrap_or_else(|x| panic!("{x}"));
    }
    e.step(1.0); // after every request's intake
    assert_eq!((e.snapshot().num_running, e.snapshot().num_waiting), (4, 6));
}

#[test]
fn abort_frees_blocks_and_reports_abort() {
    let mut e = engine_with("A100-80GB", |_| {});
    e.add_request(req(1, tokens(300, 0), 100), 0.0)
        .unwrap_or_else(|x| panic!("{x}"));
    let o = e.step(0.0).unwrap_or_default();
    assert!(e.snapshot().kv_usage > 0.0);
    let f = e.abort(1, o.end).unwrap_or_else(|| panic!("live request"));
    assert_eq!((f.reason, f.output_tokens), (FinishReason::Abort, 1));
    assert_eq!(e.snapshot().kv_usage, 0.0);
    assert!(e.abort(1, o.end).is_none());
    assert!(!e.has_work());
}

#[test]
fn refusals_carry_vllm_messages() {
    let mut e = engine_with("A100-80GB", |c| c.max_model_len = 1000);
    let cases = [
        (req(1, vec![], 5), "The prompt cannot be empty"),
        (req(1, tokens(10, 0), 0), "max_tokens must be at least 1"),
        (
            req(1, tokens(900, 0), 200),
            "you requested 1100 tokens (900 in the messages, 200 in the completion)",
        ),
        (
            req(1, tokens(1000, 0), 1),
            "your request has 1000 input tokens",
        ),
        (
            NewRequest {
                min_tokens: 9,
                ..req(1, tokens(5, 0), 5)
            },
            "min_tokens must be less than or equal",
        ),
    ];
    for (r, want) in cases {
        let err = e
            .add_request(r, 0.0)
            .err()
            .map(|x| x.to_string())
            .unwrap_or_default();
        assert!(err.contains(want), "want '{want}' in '{err}'");
    }
    e.add_request(req(1, tokens(10, 0), 5), 0.0)
        .unwrap_or_else(|x| panic!("{x}"));
    assert_eq!(
        e.add_request(req(1, tokens(10, 0), 5), 0.0),
        Err(AddError::DuplicateId(1))
    );
}

#[test]
fn output_lengths_follow_max_min_and_ignore_eos() {
    let mut e = engine_with("H200", |c| c.output_len = OutputLen::Fixed(50));
    let base = NewRequest {
        prompt: tokens(10, 0),
        ..NewRequest::default()
    };
    let cases = [
        (
            NewRequest {
                id: 1,
                max_tokens: Some(20),
                ..base.clone()
            },
            20,
            FinishReason::Length,
        ),
        (
            NewRequest {
                id: 2,
                max_tokens: Some(80),
                ..base.clone()
            },
            50,
            FinishReason::Stop,
        ),
        (
            NewRequest {
                id: 3,
                max_tokens: Some(80),
                min_tokens: 70,
                ..base.clone()
            },
            70,
            FinishReason::Stop,
        ),
        (
            NewRequest {
                id: 4,
                max_tokens: Some(80),
                ignore_eos: true,
                ..base.clone()
            },
            80,
            FinishReason::Length,
        ),
    ];
    for (r, len, reason) in cases {
        let id = r.id;
        let (done, _) = run_closed_loop(&mut e, 1, 1, |_| r.clone());
        assert_eq!(
            (done[0].output_tokens, done[0].reason),
            (len, reason),
            "request {id}"
        );
    }
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut e = engine_with("A100-80GB", |c| c.seed = seed);
        let arrivals = (0..50)
            .map(|i| {
                (
                    f64::from(i) * 0.05,
                    NewRequest {
                        id: u64::from(i),
                        prompt: tokens(200 + i, i),
                        ..NewRequest::default()
                    },
                )
            })
            .collect();
        run_open_loop(&mut e, arrivals)
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn a_burst_reaches_the_scheduler_as_a_ramp_and_steps_overlap_intake() {
    // One API server takes requests one at a time; V1's engine core steps meanwhile.
    let mut e = engine_with("H100", |_| {});
    let intake = e.gpu().request_intake_ms * 1e-3;
    assert!(intake > 0.0);
    for id in 0..10 {
        e.add_request(req(id, tokens(64, id as u32), 4), 0.0)
            .unwrap_or_else(|x| panic!("{x}"));
    }
    let first = e.step(0.0).unwrap_or_else(|| panic!("no step"));
    // Nothing is ready at 0: the step starts when the first request is, and holds only it.
    assert!((first.start - intake).abs() < 1e-12, "{}", first.start);
    assert_eq!(first.num_tokens, 64);
    // The next step admits exactly those whose intake ended by then.
    let second = e.step(first.end).unwrap_or_else(|| panic!("no step"));
    let ready = ((first.end / intake).floor() as u32).min(10) - 1;
    assert_eq!(second.num_tokens, 1 + 64 * ready, "end {}", first.end);
    let outs = drain(&mut e, second.end);
    let ttfts: Vec<f64> = outs
        .iter()
        .flat_map(|o| &o.finished)
        .filter_map(Finished::ttft)
        .collect();
    assert_eq!(ttfts.len(), 10);
    assert!(ttfts.iter().all(|&t| t >= first.end - 1e-12));
}

#[test]
fn a_v0_front_end_starts_no_step_until_the_burst_is_taken_in() {
    let mut e = engine_with("H100", |c| c.frontend_blocks_engine = true);
    let intake = e.gpu().request_intake_ms * 1e-3;
    for id in 0..10 {
        e.add_request(req(id, tokens(64, id as u32), 4), 0.0)
            .unwrap_or_else(|x| panic!("{x}"));
    }
    let first = e.step(0.0).unwrap_or_else(|| panic!("no step"));
    assert!(
        (first.start - 10.0 * intake).abs() < 1e-9,
        "{}",
        first.start
    );
    assert_eq!(first.num_tokens, 640);
}

#[test]
fn an_idle_engine_charges_intake_once_per_request() {
    // Requests far apart never queue in the API server: each pays exactly one intake.
    let mut e = engine_with("A100-80GB", |_| {});
    let intake = e.gpu().request_intake_ms * 1e-3;
    let arrivals = (0..3)
        .map(|i| (f64::from(i) * 10.0, req(u64::from(i), tokens(100, i), 2)))
        .collect();
    let done = run_open_loop(&mut e, arrivals);
    let base = done[0].first_scheduled.unwrap_or(f64::NAN) - done[0].arrival;
    assert!((base - intake).abs() < 1e-12, "{base}");
    for f in &done {
        let queued = f.queue_time().unwrap_or(f64::NAN);
        assert!((queued - intake).abs() < 1e-9, "{queued}");
    }
}

#[test]
fn a_client_seed_fixes_length_and_text_whatever_the_id() {
    let mut e = engine_with("A100-80GB", |c| {
        c.output_len = OutputLen::Uniform { lo: 5, hi: 50 };
    });
    let seeded = |id, seed| NewRequest {
        id,
        prompt: tokens(20, id as u32),
        max_tokens: Some(100),
        seed,
        ..NewRequest::default()
    };
    let answers = |e: &mut Engine, reqs: Vec<NewRequest>| -> Vec<Vec<u32>> {
        let ids: Vec<u64> = reqs.iter().map(|r| r.id).collect();
        for r in reqs {
            e.add_request(r, 0.0).unwrap_or_else(|x| panic!("{x}"));
        }
        let outs = drain(e, 0.0);
        ids.iter()
            .map(|id| {
                outs.iter()
                    .flat_map(|o| &o.tokens)
                    .filter(|t| t.id == *id)
                    .map(|t| t.token)
                    .collect()
            })
            .collect()
    };
    let a = answers(
        &mut e,
        vec![seeded(1, Some(7)), seeded(2, Some(7)), seeded(3, Some(8))],
    );
    assert_eq!(a[0], a[1]);
    assert_ne!(a[0], a[2]);
    let again = answers(&mut e, vec![seeded(9, Some(7))]);
    assert_eq!(again[0], a[0]);
}
