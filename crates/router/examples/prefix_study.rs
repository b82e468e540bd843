//! Routing quality in virtual time: 4 simulated vLLM engines (llama-3-8b on A100-80GB) serve a
//! shared-prefix multi-turn chat workload, every request routed by the real `route()`.
//!
//! Workload (seeded): a few long system prompts; conversations start as a Poisson process, pick
//! a system prompt, and grow turn by turn (the next turn is sent a think time after the reply
//! ends and carries the whole history). Text is word salad from a fixed vocabulary; token ids
//! are real cl100k ids (tiktoken), each message tokenized once as a chat template would.
//! Reported per policy: the engines' prefix-cache hit rate (prompt tokens served from cache),
//! mean and p99 TTFT, and the largest and smallest per-pod share of requests.
//!
//! Run: `cargo run --release -p brix-router --example prefix_study`

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use brix_router::{
    DEFAULT_SEED, EngineMetrics, Pod, PrefixConfig, PrefixIndex, RouteRequest, Weighted,
    hash_bytes, hash_tokens, route,
};
use brix_sim::{Catalog, Engine, EngineConfig, Finished, NewRequest, StepOutput};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const ENGINES: usize = 4;
const SYSTEM_PROMPTS: usize = 6;
const CONVERSATIONS: usize = 500;
/// Mean think time between a reply and the next turn, seconds (exponential).
const THINK_S: f64 = 8.0;
/// A conversation ends before its prompt plus reply would pass this many tokens.
const MAX_CONTEXT: usize = 7000;

/// One chat message: its text (the byte key) and its token ids (the engine's prompt).
struct Message {
    text: String,
    tokens: Vec<u32>,
}

struct Turn {
    user: Message,
    reply: Message,
}

struct Conversation {
    system: usize,
    start: f64,
    turns: Vec<Turn>,
}

struct Workload {
    systems: Vec<Message>,
    conversations: Vec<Conversation>,
}

#[path = "support/words.rs"]
mod support_words;
use support_words::WORDS;

fn words(rng: &mut SmallRng, n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        s.push_str(if i % 13 == 12 { ".\n" } else { " " });
    }
    s
}

fn message(bpe: &tiktoken_rs::CoreBPE, text: String) -> Message {
    let tokens = bpe.encode_ordinary(&text);
    Message { text, tokens }
}

fn workload(bpe: &tiktoken_rs::CoreBPE, rate: f64, seed: u64) -> Workload {
    let mut rng = SmallRng::seed_from_u64(seed);
    let systems: Vec<Message> = (0..SYSTEM_PROMPTS)
        .map(|_| {
            let n = rng.random_range(800..2000);
            message(bpe, words(&mut rng, n))
        })
        .collect();
    let mut start = 0.0;
    let mut conversations = Vec::with_capacity(CONVERSATIONS);
    for _ in 0..CONVERSATIONS {
        start += exp(&mut rng, 1.0 / rate);
        let system = rng.random_range(0..SYSTEM_PROMPTS);
        let mut context = systems[system].tokens.len();
        let mut turns = Vec::new();
        for _ in 0..rng.random_range(2..=8) {
            let (u, r) = (rng.random_range(30..250), rng.random_range(50..350));
            let turn = Turn {
                user: message(bpe, words(&mut rng, u)),
                reply: message(bpe, words(&mut rng, r)),
            };
            context += turn.user.tokens.len() + turn.reply.tokens.len();
            if context > MAX_CONTEXT {
                break;
            }
            turns.push(turn);
        }
        conversations.push(Conversation {
            system,
            start,
            turns,
        });
    }
    Workload {
        systems,
        conversations,
    }
}

fn exp(rng: &mut SmallRng, mean: f64) -> f64 {
    -mean * (1.0 - rng.random::<f64>()).ln()
}

/// A load level: conversations started per second (Poisson), and KV blocks per engine
/// (None: what the GPU holds).
struct Scenario {
    rate: f64,
    kv_blocks: Option<u32>,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        rate: 2.0,
        kv_blocks: None,
    },
    Scenario {
        rate: 8.0,
        kv_blocks: None,
    },
    Scenario {
        rate: 4.0,
        kv_blocks: Some(4096),
    },
    Scenario {
        rate: 4.0,
        kv_blocks: Some(2048),
    },
];

/// Workload seeds; each row pools all of them.
const SEEDS: [u64; 3] = [7, 8, 9];

/// What one policy routes on: its strategy and how prompts become block keys.
struct Policy {
    label: String,
    strategy: &'static str,
    tokens: bool,
    cfg: PrefixConfig,
}

/// The policies compared; `bytes_per_token` (measured on the workload) sizes one extra
/// `kv-cost` row whose per-request load in bytes equals the token rows' 64 tokens, so the unit
/// is the only difference.
fn policies(bytes_per_token: f64) -> Vec<Policy> {
    let bytes = PrefixConfig::default(); // 128-byte blocks, a request's load = 256 bytes
    let tokens = PrefixConfig {
        block_units: 32,
        // A request's load = 64 tokens, the 256-byte default at ~4 bytes a token.
        load_units_per_request: 64.0,
        ..PrefixConfig::default()
    };
    let scaled = PrefixConfig {
        load_units_per_request: 64.0 * bytes_per_token,
        ..PrefixConfig::default()
    };
    let p = |label: &str, strategy, tok: bool, cfg: &PrefixConfig| Policy {
        label: label.to_string(),
        strategy,
        tokens: tok,
        cfg: cfg.clone(),
    };
    vec![
        p("random", "random", false, &bytes),
        p("least-request", "least-request", false, &bytes),
        p("prefix-cache, bytes/128", "prefix-cache", false, &bytes),
        p("prefix-cache, tokens/32", "prefix-cache", true, &tokens),
        p("kv-cost, bytes/128", "kv-cost", false, &bytes),
        p(
            &format!(
                "kv-cost, bytes/128, load {:.0} B",
                scaled.load_units_per_request
            ),
            "kv-cost",
            false,
            &scaled,
        ),
        p("kv-cost, tokens/32", "kv-cost", true, &tokens),
    ]
}

/// The prompt of `turn`: system, then every earlier exchange, then this user message.
fn prompt(w: &Workload, c: &Conversation, turn: usize) -> (Vec<u8>, Vec<u32>) {
    let mut parts: Vec<&Message> = vec![&w.systems[c.system]];
    for t in &c.turns[..turn] {
        parts.push(&t.user);
        parts.push(&t.reply);
    }
    parts.push(&c.turns[turn].user);
    let text = parts.iter().flat_map(|m| m.text.bytes()).collect();
    let tokens = parts
        .iter()
        .flat_map(|m| m.tokens.iter().copied())
        .collect();
    (text, tokens)
}

#[derive(Default)]
struct Report {
    ttft: Vec<f64>,
    per_pod: [u32; ENGINES],
    hits: u64,
    queries: u64,
}

/// A pending arrival: (time bits, conversation, turn); non-negative f64 bits sort as numbers.
type Arrival = Reverse<(u64, usize, usize)>;

struct Fleet {
    engines: Vec<Engine>,
    pending: Vec<Option<StepOutput>>,
    pods: Vec<Pod>,
    index: PrefixIndex,
    rng: SmallRng,
}

fn fleet(cfg: &PrefixConfig, kv_blocks: Option<u32>) -> Fleet {
    let catalog = Catalog::builtin();
    let (Ok(model), Ok(gpu)) = (catalog.model("llama-3-8b"), catalog.gpu("A100-80GB")) else {
        panic!("builtin profiles missing");
    };
    let engines = (0..ENGINES)
        .map(|i| {
            let ecfg = EngineConfig {
                seed: i as u64,
                num_gpu_blocks_override: kv_blocks,
                ..EngineConfig::vllm_defaults(model, gpu)
            };
            Engine::new(ecfg, model.clone(), gpu.clone()).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let pods = (0..ENGINES)
        .map(|i| Pod {
            name: format!("engine-{i}"),
            address: format!("10.0.0.{i}:8000"),
            ..Pod::default()
        })
        .collect();
    Fleet {
        engines,
        pending: (0..ENGINES).map(|_| None).collect(),
        pods,
        index: PrefixIndex::new(cfg.clone()),
        rng: SmallRng::seed_from_u64(42),
    }
}

fn at(t: f64, conv: usize, turn: usize) -> Arrival {
    Reverse((t.max(0.0).to_bits(), conv, turn))
}

fn simulate(w: &Workload, policy: &Policy, kv_blocks: Option<u32>) -> Report {
    let strategy: Weighted = policy.strategy.parse().unwrap_or_else(|e| panic!("{e}"));
    let mut f = fleet(&policy.cfg, kv_blocks);
    let mut think = SmallRng::seed_from_u64(3);
    let mut report = Report::default();
    let mut arrivals: BinaryHeap<Arrival> = (0..w.conversations.len())
        .filter(|&c| !w.conversations[c].turns.is_empty())
        .map(|c| at(w.conversations[c].start, c, 0))
        .collect();
    loop {
        let next_end = (0..ENGINES)
            .filter_map(|e| f.pending[e].as_ref().map(|o| (o.end, e)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let next_arrival = arrivals.peek().map(|Reverse((t, ..))| f64::from_bits(*t));
        match (next_end, next_arrival) {
            (Some((end, e)), a) if a.is_none_or(|a| end <= a) => {
                let Some(out) = f.pending[e].take() else {
                    break;
                };
                for done in out.finished {
                    finish(w, &mut f, &mut report, &mut arrivals, &mut think, e, &done);
                }
                f.pending[e] = f.engines[e].step(end);
            }
            (_, Some(t)) => {
                let Some(Reverse((_, c, turn))) = arrivals.pop() else {
                    break;
                };
                arrive(w, policy, &strategy, &mut f, &mut report, t, c, turn);
            }
            _ => break,
        }
    }
    for e in &f.engines {
        report.hits += e.stats().prefix_hits;
        report.queries += e.stats().prefix_queries;
    }
    report
}

#[expect(clippy::too_many_arguments, reason = "one event of the study's loop")]
fn arrive(
    w: &Workload,
    policy: &Policy,
    strategy: &Weighted,
    f: &mut Fleet,
    report: &mut Report,
    now: f64,
    c: usize,
    turn: usize,
) {
    let conv = &w.conversations[c];
    let (text, tokens) = prompt(w, conv, turn);
    let (blocks, units) = if policy.tokens {
        (hash_tokens(&tokens, 32, DEFAULT_SEED), tokens.len())
    } else {
        (hash_bytes(&text, 128, DEFAULT_SEED), text.len())
    };
    for (pod, engine) in f.pods.iter_mut().zip(&f.engines) {
        let s = engine.snapshot();
        pod.metrics = EngineMetrics {
            running: Some(s.num_running as f64),
            waiting: Some(s.num_waiting as f64),
            kv_usage: Some(s.kv_usage),
        };
    }
    let req = RouteRequest {
        blocks: &blocks,
        prompt_units: units as u32,
        ..RouteRequest::default()
    };
    let d =
        route(strategy, &req, &f.pods, &f.index, now, &mut f.rng).unwrap_or_else(|e| panic!("{e}"));
    f.index.insert(&blocks, &f.pods[d.pod].address, now);
    f.pods[d.pod].in_flight += 1;
    report.per_pod[d.pod] += 1;
    let new = NewRequest {
        id: (c * 100 + turn) as u64,
        prompt: tokens,
        max_tokens: Some(conv.turns[turn].reply.tokens.len().max(1) as u32),
        ignore_eos: true,
        ..NewRequest::default()
    };
    if let Err(e) = f.engines[d.pod].add_request(new, now) {
        panic!("request {c}/{turn} refused: {e}");
    }
    if f.pending[d.pod].is_none() {
        f.pending[d.pod] = f.engines[d.pod].step(now);
    }
}

fn finish(
    w: &Workload,
    f: &mut Fleet,
    report: &mut Report,
    arrivals: &mut BinaryHeap<Arrival>,
    think: &mut SmallRng,
    e: usize,
    done: &Finished,
) {
    f.pods[e].in_flight -= 1;
    report.ttft.extend(done.ttft());
    let (c, turn) = ((done.id / 100) as usize, (done.id % 100) as usize);
    if turn + 1 < w.conversations[c].turns.len() {
        arrivals.push(at(done.end + exp(think, THINK_S), c, turn + 1));
    }
}

/// Text bytes per cl100k token over every message of the workloads.
fn bytes_per_token(workloads: &[Workload]) -> f64 {
    let (b, t) = workloads
        .iter()
        .flat_map(|w| {
            let turns = w.conversations.iter().flat_map(|c| &c.turns);
            w.systems
                .iter()
                .chain(turns.flat_map(|t| [&t.user, &t.reply]))
        })
        .fold((0, 0), |(b, t), m| (b + m.text.len(), t + m.tokens.len()));
    b as f64 / t.max(1) as f64
}

fn main() {
    let bpe = tiktoken_rs::cl100k_base().unwrap_or_else(|e| panic!("cl100k: {e}"));
    for sc in SCENARIOS {
        let workloads: Vec<Workload> = SEEDS.iter().map(|&s| workload(&bpe, sc.rate, s)).collect();
        let requests: usize = workloads
            .iter()
            .flat_map(|w| &w.conversations)
            .map(|c| c.turns.len())
            .sum();
        let bytes_per_token = bytes_per_token(&workloads);
        let kv = sc.kv_blocks.map_or("all GPU memory".to_string(), |b| {
            format!("{b} blocks of 16 tokens")
        });
        println!(
            "\n{ENGINES} engines llama-3-8b/A100-80GB, KV: {kv}; {SYSTEM_PROMPTS} system prompts, \
             {CONVERSATIONS} conversations at {}/s, think {THINK_S} s; seeds {SEEDS:?}, \
             {requests} requests in all, {bytes_per_token:.2} bytes a token\n",
            sc.rate
        );
        println!("| policy | prefix hit rate | mean TTFT | p99 TTFT | max / min pod share |");
        println!("|---|---|---|---|---|");
        for policy in policies(bytes_per_token) {
            let mut pooled = Report::default();
            for w in &workloads {
                let r = simulate(w, &policy, sc.kv_blocks);
                pooled.ttft.extend(r.ttft);
                for (a, b) in pooled.per_pod.iter_mut().zip(r.per_pod) {
                    *a += b;
                }
                pooled.hits += r.hits;
                pooled.queries += r.queries;
            }
            row(&policy, pooled);
        }
    }
}

fn row(policy: &Policy, mut r: Report) {
    r.ttft.sort_by(f64::total_cmp);
    let n = r.ttft.len().max(1);
    let mean = r.ttft.iter().sum::<f64>() / n as f64;
    let p99 = r.ttft.get(n * 99 / 100).copied().unwrap_or(0.0);
    let total = f64::from(r.per_pod.iter().sum::<u32>().max(1));
    let share = |x: Option<&u32>| f64::from(*x.unwrap_or(&0)) / total * 100.0;
    println!(
        "| {} | {:.1} % | {:.0} ms | {:.0} ms | {:.1} % / {:.1} % |",
        policy.label,
        r.hits as f64 / r.queries.max(1) as f64 * 100.0,
        mean * 1e3,
        p99 * 1e3,
        share(r.per_pod.iter().max()),
        share(r.per_pod.iter().min()),
    );
}
