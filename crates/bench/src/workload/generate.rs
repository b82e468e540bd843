//! The synthetic generators: shared-prefix groups, and multi-turn sessions whose prompt grows
//! turn by turn. Pure: a spec and a seed give the same workload every time. Every request is
//! created with `at_s = 0`; [`super::schedule`] sets the times.

use rand::Rng;

use super::seed::{Stream, exponential, normal, push_words, rng};
use super::{Turn, WorkRequest, Workload};

/// `shared-prefix`: `groups` random prefixes of `prefix` words; each request picks a group
/// (uniformly, seeded) and appends `suffix` words of its own, so a prefix-aware router and the
/// engine's prefix cache have exactly `groups` prefixes to find.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedPrefix {
    /// Distinct prefixes (≥ 1).
    pub groups: u32,
    /// Words (tokens) in each shared prefix.
    pub prefix: u32,
    /// Words unique to each request, after its prefix.
    pub suffix: u32,
    /// Tokens to generate per request (≥ 1).
    pub output: u32,
    /// Requests in all (≥ 1).
    pub requests: u32,
}

impl Default for SharedPrefix {
    fn default() -> Self {
        Self {
            groups: 8,
            prefix: 1024,
            suffix: 64,
            output: 128,
            requests: 400,
        }
    }
}

impl SharedPrefix {
    /// The requests, in order; request `i` is the same for any `requests > i`.
    pub fn generate(&self, seed: u64) -> Workload {
        let prefixes: Vec<Vec<u32>> = (0..self.groups.max(1))
            .map(|g| {
                let mut words = Vec::new();
                push_words(
                    &mut rng(seed, Stream::GroupPrefix, &[g.into()]),
                    self.prefix as usize,
                    &mut words,
                );
                words
            })
            .collect();
        let requests = (0..u64::from(self.requests))
            .map(|i| {
                let group = rng(seed, Stream::GroupPick, &[i]).random_range(0..prefixes.len());
                let mut prompt = Vec::with_capacity((self.prefix + self.suffix) as usize);
                prompt.extend_from_slice(&prefixes[group]);
                push_words(
                    &mut rng(seed, Stream::Suffix, &[i]),
                    self.suffix as usize,
                    &mut prompt,
                );
                WorkRequest {
                    id: i,
                    at_s: 0.0,
                    session: None,
                    prompt,
                    output_tokens: self.output,
                }
            })
            .collect();
        Workload { requests }
    }
}

/// `multi-turn`: `sessions` conversations of `turns` turns. Turn 0's prompt is a system
/// prompt (one of `systems`, shared across sessions), `context` words of the session's own
/// (LMCache multi-round QA's per-user info: a document, a history), and `user` words; turn k's
/// prompt is
/// turn k−1's whole prompt, a synthetic assistant reply of turn k−1's `output` words, and
/// `user` new words, as a chat client resends the history. Think time before each later turn
/// is exponential with mean `think` seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiTurn {
    /// Conversations (≥ 1).
    pub sessions: u32,
    /// Turns per conversation (≥ 1).
    pub turns: u32,
    /// Words in the system prompt.
    pub system: u32,
    /// Distinct system prompts; session `s` uses number `s % systems` (≥ 1).
    pub systems: u32,
    /// Words of per-session context after the system prompt (0: none): makes each
    /// conversation's working set large without a long system prompt everyone shares.
    pub context: u32,
    /// Words in each user message.
    pub user: u32,
    /// Tokens to generate per turn, and so the length of the reply in the next turn (≥ 1).
    pub output: u32,
    /// Mean think time between a turn's end and the next turn's start, seconds.
    pub think: f64,
}

impl Default for MultiTurn {
    fn default() -> Self {
        Self {
            sessions: 40,
            turns: 5,
            system: 512,
            systems: 1,
            context: 0,
            user: 64,
            output: 64,
            think: 1.0,
        }
    }
}

impl MultiTurn {
    /// The requests, session by session and turn by turn within a session.
    pub fn generate(&self, seed: u64) -> Workload {
        let systems = self.systems.max(1);
        let mut requests = Vec::with_capacity((self.sessions * self.turns) as usize);
        for s in 0..u64::from(self.sessions) {
            let mut prompt = Vec::new();
            let system = s % u64::from(systems);
            push_words(
                &mut rng(seed, Stream::System, &[system]),
                self.system as usize,
                &mut prompt,
            );
            push_words(
                &mut rng(seed, Stream::Context, &[s]),
                self.context as usize,
                &mut prompt,
            );
            for t in 0..self.turns {
                let think_s = if t == 0 {
                    0.0
                } else {
                    let reply = u64::from(t - 1);
                    push_words(
                        &mut rng(seed, Stream::Reply, &[s, reply]),
                        self.output as usize,
                        &mut prompt,
                    );
                    exponential(&mut rng(seed, Stream::Think, &[s, t.into()]), self.think)
                };
                push_words(
                    &mut rng(seed, Stream::User, &[s, t.into()]),
                    self.user as usize,
                    &mut prompt,
                );
                requests.push(WorkRequest {
                    id: requests.len() as u64,
                    at_s: 0.0,
                    session: Some(Turn {
                        session: s,
                        turn: t,
                        think_s,
                    }),
                    prompt: prompt.clone(),
                    output_tokens: self.output,
                });
            }
        }
        Workload { requests }
    }
}

/// `synthetic`: independent requests with normally distributed prompt and output lengths
/// (rounded, at least 1 token) and prompts of fresh random words, so no two share a prefix:
/// AIBrix's autoscaling harness (prompts 1024 ± 696, outputs 43 ± 34 tokens).
#[derive(Clone, Debug, PartialEq)]
pub struct Synthetic {
    /// Requests in all (≥ 1).
    pub requests: u32,
    /// Mean prompt length, tokens.
    pub prompt: u32,
    /// Standard deviation of the prompt length.
    pub prompt_std: u32,
    /// Mean output length, tokens (≥ 1).
    pub output: u32,
    /// Standard deviation of the output length.
    pub output_std: u32,
    /// Longest prompt + output kept (lengths are cut to fit; 0 = no cap).
    pub max_len: u32,
}

impl Default for Synthetic {
    fn default() -> Self {
        Self {
            requests: 1000,
            prompt: 1024,
            prompt_std: 696,
            output: 43,
            output_std: 34,
            max_len: 0,
        }
    }
}

impl Synthetic {
    /// The requests, in order; request `i` is the same for any `requests > i`.
    pub fn generate(&self, seed: u64) -> Workload {
        let requests = (0..u64::from(self.requests))
            .map(|i| {
                let mut lens = rng(seed, Stream::SyntheticLen, &[i]);
                let draw = |rng: &mut _, mean: u32, std: u32| {
                    normal(rng, f64::from(mean), f64::from(std))
                        .round()
                        .max(1.0) as u32
                };
                let mut prompt_len = draw(&mut lens, self.prompt, self.prompt_std);
                let mut output = draw(&mut lens, self.output, self.output_std);
                if self.max_len >= 2 && prompt_len + output > self.max_len {
                    output = output.min(self.max_len / 2);
                    prompt_len = prompt_len.min(self.max_len - output);
                }
                let mut prompt = Vec::with_capacity(prompt_len as usize);
                push_words(
                    &mut rng(seed, Stream::SyntheticPrompt, &[i]),
                    prompt_len as usize,
                    &mut prompt,
                );
                WorkRequest {
                    id: i,
                    at_s: 0.0,
                    session: None,
                    prompt,
                    output_tokens: output,
                }
            })
            .collect();
        Workload { requests }
    }
}
