//! The request bodies the load generator sends, built once before the run. Pure; no I/O.
//!
//! Each body is a system prompt drawn from K shared prefixes (1–2 KB of text each) plus a
//! short user turn that varies, so a prefix-cache router has real matching to do (a long
//! shared head, a differing tail) and a good one sends each prefix to a steady upstream.
//! Everything is seeded: the same flags give byte-identical bodies in every run.

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Which body shape the path expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiShape {
    /// `/v1/chat/completions`: `messages` with a system and a user turn.
    Chat,
    /// `/v1/completions`: one `prompt` string, the prefix then the user turn.
    Completion,
}

impl ApiShape {
    /// Chat unless the path is a legacy completions path.
    pub fn for_path(path: &str) -> Self {
        if path.ends_with("/completions") && !path.ends_with("/chat/completions") {
            Self::Completion
        } else {
            Self::Chat
        }
    }
}

/// How to build the bodies.
#[derive(Debug, Clone)]
pub struct PromptConfig {
    /// Body shape.
    pub shape: ApiShape,
    /// The `model` field.
    pub model: String,
    /// Whether to ask for SSE (`"stream": true`, with usage in the last chunk).
    pub stream: bool,
    /// Shared prefixes (K ≥ 1).
    pub prefixes: usize,
    /// Distinct user turns per prefix.
    pub turns_per_prefix: usize,
    /// `max_tokens` in every body.
    pub max_tokens: u32,
    /// Seeds the text.
    pub seed: u64,
}

const WORDS: &[&str] = &[
    "account",
    "answer",
    "billing",
    "cache",
    "careful",
    "cluster",
    "concise",
    "context",
    "customer",
    "policy",
    "deploy",
    "document",
    "engine",
    "escalate",
    "format",
    "gateway",
    "guideline",
    "helpful",
    "invoice",
    "kernel",
    "latency",
    "ledger",
    "manual",
    "model",
    "network",
    "order",
    "priority",
    "quota",
    "refund",
    "region",
    "replica",
    "request",
    "schedule",
    "secure",
    "service",
    "support",
    "tenant",
    "ticket",
    "token",
    "upgrade",
    "verify",
    "warranty",
    "always",
    "never",
    "politely",
    "briefly",
    "exactly",
    "the",
    "a",
    "of",
    "to",
    "and",
    "with",
    "for",
    "when",
    "if",
    "before",
];

/// Every body, prefix-major: bodies `[k * turns .. (k + 1) * turns)` share prefix `k`.
pub fn bodies(cfg: &PromptConfig) -> Vec<Bytes> {
    let mut rng = SmallRng::seed_from_u64(cfg.seed);
    let prefixes = cfg.prefixes.max(1);
    let turns = cfg.turns_per_prefix.max(1);
    let mut out = Vec::with_capacity(prefixes * turns);
    for k in 0..prefixes {
        let system = system_prompt(&mut rng, k);
        for t in 0..turns {
            let user = format!(
                "Question {t} for tenant {k}: {} {} {}?",
                word(&mut rng),
                word(&mut rng),
                word(&mut rng)
            );
            out.push(Bytes::from(body(cfg, &system, &user).to_string()));
        }
    }
    out
}

fn word(rng: &mut SmallRng) -> &'static str {
    WORDS[rng.random_range(0..WORDS.len())]
}

/// A system prompt of 1–2 KB; prefixes differ from their first sentence on (the number `k`).
fn system_prompt(rng: &mut SmallRng, k: usize) -> String {
    let target = rng.random_range(1024..2048);
    let mut s = format!("You are support assistant {k} of the Brix benchmark. ");
    while s.len() < target {
        let n = rng.random_range(6..14);
        for i in 0..n {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(word(rng));
        }
        s.push_str(". ");
    }
    s
}

fn body(cfg: &PromptConfig, system: &str, user: &str) -> Value {
    let mut v = match cfg.shape {
        ApiShape::Chat => json!({
            "model": cfg.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "max_tokens": cfg.max_tokens,
        }),
        ApiShape::Completion => json!({
            "model": cfg.model,
            "prompt": format!("{system}\n\n{user}"),
            "max_tokens": cfg.max_tokens,
        }),
    };
    if cfg.stream {
        v["stream"] = json!(true);
        v["stream_options"] = json!({"include_usage": true});
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(shape: ApiShape, stream: bool) -> PromptConfig {
        PromptConfig {
            shape,
            model: "mock".into(),
            stream,
            prefixes: 3,
            turns_per_prefix: 4,
            max_tokens: 8,
            seed: 7,
        }
    }

    #[test]
    fn shapes_sizes_and_shared_prefixes() {
        let chat = bodies(&cfg(ApiShape::Chat, true));
        assert_eq!(chat.len(), 12);
        assert_eq!(chat, bodies(&cfg(ApiShape::Chat, true)), "seeded");
        let parsed: Vec<Value> = chat
            .iter()
            .map(|b| serde_json::from_slice(b).expect("json"))
            .collect();
        let system = |i: usize| parsed[i]["messages"][0]["content"].as_str().map(str::len);
        for (i, v) in parsed.iter().enumerate() {
            assert_eq!(v["stream"], true);
            let len = system(i).expect("system prompt");
            assert!((1024..2200).contains(&len), "{len}");
        }
        assert_eq!(parsed[0]["messages"][0], parsed[3]["messages"][0]);
        assert_ne!(parsed[0]["messages"][1], parsed[3]["messages"][1]);
        assert_ne!(parsed[0]["messages"][0], parsed[4]["messages"][0]);

        let completion = bodies(&cfg(ApiShape::Completion, false));
        let v: Value = serde_json::from_slice(&completion[0]).expect("json");
        assert!(v["prompt"].as_str().is_some_and(|p| p.len() > 1024));
        assert!(v.get("stream").is_none());
    }

    #[test]
    fn shape_from_path() {
        assert_eq!(ApiShape::for_path("/v1/chat/completions"), ApiShape::Chat);
        assert_eq!(ApiShape::for_path("/v1/completions"), ApiShape::Completion);
        assert_eq!(ApiShape::for_path("/other"), ApiShape::Chat);
    }
}
