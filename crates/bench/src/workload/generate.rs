//! The synthetic generators: shared-prefix groups, and multi-turn sessions whose prompt grows
//! turn by turn. Pure: a spec and a seed give the same workload every time. Every request is
//! created with `at_s = 0`; [`super::schedule`] sets the times.

use rand::Rng;

use super::seed::{Stream, exponential, push_words, rng};
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
/// prompt (one of `systems`, shared across sessions) plus `user` words; turn k's prompt is
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
