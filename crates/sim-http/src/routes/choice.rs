//! One choice's text as vLLM's output processor builds it: detokenized token by token, cut
//! at the first `stop` string (held back while it could still be one), wrapped as JSON under
//! `response_format`, with plausible per-token logprobs.
//!
//! Logprobs are made up but consistent: the sampled token is always the most likely, its
//! log-probability and the alternatives' come from a hash of (token, position, seed), and the
//! alternatives' probabilities sum to less than what the sampled token leaves.

use std::sync::Arc;

use serde::Serialize;

use crate::tokenizer::Tokenizer;

/// What every choice of one request shares.
#[derive(Debug)]
pub(crate) struct ChoiceSpec {
    pub(crate) stop: Vec<String>,
    pub(crate) include_stop: bool,
    /// Alternatives per token when logprobs were asked for.
    pub(crate) logprobs: Option<u32>,
    /// Wrap the answer as `{"text": "..."}` (`response_format` json_object / json_schema).
    pub(crate) json: bool,
    /// Distinct filler tokens, the pool logprob alternatives are drawn from.
    pub(crate) vocab: Arc<[u32]>,
}

/// One token's logprob entry (shared by both APIs' renderings).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TokenLogprob {
    pub(crate) token: String,
    pub(crate) logprob: f64,
    /// The most likely tokens at this position, the sampled one first.
    pub(crate) top: Vec<(String, f64)>,
}

/// How a choice ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Finish {
    pub(crate) reason: &'static str,
    /// The stop string that ended it, if one did.
    pub(crate) stop_reason: Option<String>,
}

/// What one engine event adds to a choice: text to send, its logprobs, and maybe the end.
#[derive(Debug, Default)]
pub(crate) struct Delta {
    pub(crate) text: String,
    pub(crate) logprobs: Vec<TokenLogprob>,
    pub(crate) finish: Option<Finish>,
}

/// A choice being generated.
#[derive(Debug)]
pub(crate) struct ChoiceText {
    spec: Arc<ChoiceSpec>,
    seed: u64,
    /// Generated text so far (before JSON wrapping), cut at a stop string once found.
    text: String,
    /// Bytes of `text` already handed out.
    sent: usize,
    tokens: u32,
    holdback: usize,
    opened: bool,
    done: bool,
}

impl ChoiceText {
    pub(crate) fn new(spec: Arc<ChoiceSpec>, seed: u64) -> Self {
        let holdback = match spec.include_stop {
            true => 0,
            false => spec
                .stop
                .iter()
                .map(String::len)
                .max()
                .unwrap_or(1)
                .saturating_sub(1),
        };
        Self {
            spec,
            seed,
            text: String::new(),
            sent: 0,
            tokens: 0,
            holdback,
            opened: false,
            done: false,
        }
    }

    /// Tokens generated (what `usage.completion_tokens` counts).
    pub(crate) fn tokens(&self) -> u32 {
        self.tokens
    }

    /// Whether the choice has ended (by the engine or a stop string).
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Adds one generated token; `finish` is the engine's reason when it was the last.
    pub(crate) fn push(
        &mut self,
        tok: &Tokenizer,
        token: Option<u32>,
        finish: Option<&'static str>,
    ) -> Delta {
        let mut delta = Delta::default();
        if self.done {
            return delta;
        }
        let mut added = 0;
        if let Some(t) = token {
            let piece = tok.decode_one(t);
            if self.spec.logprobs.is_some() {
                delta.logprobs.push(self.logprob(tok, t, &piece));
            }
            self.tokens += 1;
            added = piece.len();
            self.text.push_str(&piece);
        }
        if let Some(stop) = self.find_stop(added) {
            self.done = true;
            delta.finish = Some(stop);
        } else if let Some(reason) = finish {
            self.done = true;
            delta.finish = Some(Finish {
                reason,
                stop_reason: None,
            });
        }
        delta.text = self.release();
        delta
    }

    /// Looks for a stop string that the newest `added` bytes completed; cuts the text there.
    fn find_stop(&mut self, added: usize) -> Option<Finish> {
        let longest = self.spec.stop.iter().map(String::len).max()?;
        let mut from = self.text.len().saturating_sub(added + longest);
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let (at, s) = self
            .spec
            .stop
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|i| (from + i, s)))
            .min_by_key(|(i, _)| *i)?;
        let end = if self.spec.include_stop {
            at + s.len()
        } else {
            at
        };
        self.text.truncate(end);
        Some(Finish {
            reason: "stop",
            stop_reason: Some(s.clone()),
        })
    }

    /// The text that may be sent now: all of it once done, else all but the held-back tail.
    fn release(&mut self) -> String {
        let mut until = match self.done {
            true => self.text.len(),
            false => self.text.len().saturating_sub(self.holdback).max(self.sent),
        };
        while !self.text.is_char_boundary(until) {
            until -= 1;
        }
        let mut out = String::new();
        if self.spec.json && !self.opened && (until > self.sent || self.done) {
            out.push_str("{\"text\": \"");
            self.opened = true;
        }
        let fresh = &self.text[self.sent..until.max(self.sent)];
        match self.spec.json {
            true => out.push_str(&json_escape(fresh)),
            false => out.push_str(fresh),
        }
        self.sent = until.max(self.sent);
        if self.spec.json && self.done {
            out.push_str("\"}");
        }
        out
    }

    /// A plausible logprob entry for `token` at the next position.
    fn logprob(&self, tok: &Tokenizer, token: u32, piece: &str) -> TokenLogprob {
        let k = self.spec.logprobs.unwrap_or(0) as usize;
        let h = mix(self.seed ^ u64::from(token).rotate_left(17) ^ u64::from(self.tokens));
        // Sampled token: probability in [0.5, 0.98], so no alternative can beat it.
        let p0 = 0.5 + 0.48 * unit(h);
        let lp0 = p0.ln();
        let mut top = vec![(piece.to_string(), lp0)];
        let mut rest = 1.0 - p0;
        let vocab = &self.spec.vocab;
        let mut i = 0u64;
        while top.len() < k.max(1) && i < vocab.len() as u64 * 2 && !vocab.is_empty() {
            let cand = vocab[(mix(h.wrapping_add(i)) % vocab.len() as u64) as usize];
            i += 1;
            let text = tok.decode_one(cand);
            if top.iter().any(|(t, _)| *t == text) {
                continue;
            }
            let share = 0.3 + 0.4 * unit(mix(h ^ i));
            let p = rest * share;
            rest -= p;
            top.push((text, p.max(1e-12).ln()));
        }
        top[1..].sort_by(|a, b| b.1.total_cmp(&a.1));
        TokenLogprob {
            token: piece.to_string(),
            logprob: lp0,
            top,
        }
    }
}

/// JSON string escaping without the quotes.
fn json_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted[1..quoted.len().saturating_sub(1).max(1)].to_string()
}

/// SplitMix64's finalizer: a well-spread hash of one word.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash mapped to [0, 1).
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Completions' `logprobs` object.
#[derive(Debug, Default, Serialize)]
pub(crate) struct CompletionLogprobs {
    pub(crate) text_offset: Vec<usize>,
    pub(crate) token_logprobs: Vec<Option<f64>>,
    pub(crate) tokens: Vec<String>,
    pub(crate) top_logprobs: Vec<Option<serde_json::Map<String, serde_json::Value>>>,
}

impl CompletionLogprobs {
    /// Entries for `lps`, text offsets continuing from `offset` (in characters).
    pub(crate) fn push(&mut self, offset: &mut usize, lps: &[TokenLogprob], k: u32) {
        for lp in lps {
            self.text_offset.push(*offset);
            *offset += lp.token.chars().count();
            self.token_logprobs.push(Some(lp.logprob));
            self.tokens.push(lp.token.clone());
            let top = lp
                .top
                .iter()
                .take((k as usize).max(1))
                .map(|(t, l)| (t.clone(), serde_json::Value::from(*l)))
                .collect();
            self.top_logprobs.push(Some(top));
        }
    }

    /// Entries for echoed prompt tokens: the first has no logprob, as in vLLM.
    pub(crate) fn push_prompt(&mut self, offset: &mut usize, pieces: &[String]) {
        for (i, p) in pieces.iter().enumerate() {
            self.text_offset.push(*offset);
            *offset += p.chars().count();
            self.tokens.push(p.clone());
            match i {
                0 => {
                    self.token_logprobs.push(None);
                    self.top_logprobs.push(None);
                }
                _ => {
                    let lp = -1.0 - (mix(i as u64 ^ p.len() as u64) % 400) as f64 / 100.0;
                    self.token_logprobs.push(Some(lp));
                    let mut m = serde_json::Map::new();
                    m.insert(p.clone(), lp.into());
                    self.top_logprobs.push(Some(m));
                }
            }
        }
    }
}

/// One entry of chat's `logprobs.content`.
#[derive(Debug, Serialize)]
pub(crate) struct ChatLogprob {
    pub(crate) token: String,
    pub(crate) logprob: f64,
    pub(crate) bytes: Vec<u8>,
    pub(crate) top_logprobs: Vec<ChatTopLogprob>,
}

/// One alternative in chat's `top_logprobs`.
#[derive(Debug, Serialize)]
pub(crate) struct ChatTopLogprob {
    pub(crate) token: String,
    pub(crate) logprob: f64,
    pub(crate) bytes: Vec<u8>,
}

/// Chat's `logprobs` object.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ChatLogprobs {
    pub(crate) content: Vec<ChatLogprob>,
}

impl ChatLogprobs {
    pub(crate) fn push(&mut self, lps: &[TokenLogprob], k: u32) {
        for lp in lps {
            self.content.push(ChatLogprob {
                token: lp.token.clone(),
                logprob: lp.logprob,
                bytes: lp.token.as_bytes().to_vec(),
                top_logprobs: lp
                    .top
                    .iter()
                    .take(k as usize)
                    .map(|(t, l)| ChatTopLogprob {
                        token: t.clone(),
                        logprob: *l,
                        bytes: t.as_bytes().to_vec(),
                    })
                    .collect(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> Tokenizer {
        Tokenizer::cl100k().unwrap_or_else(|e| panic!("{e}"))
    }

    fn spec(stop: &[&str], include: bool, json: bool, lp: Option<u32>) -> Arc<ChoiceSpec> {
        let t = tok();
        let mut vocab = t.filler();
        vocab.sort_unstable();
        vocab.dedup();
        Arc::new(ChoiceSpec {
            stop: stop.iter().map(|s| s.to_string()).collect(),
            include_stop: include,
            logprobs: lp,
            json,
            vocab: vocab.into(),
        })
    }

    /// Feeds the filler until done (or `max` tokens), returning the text sent and the end.
    fn run(spec: Arc<ChoiceSpec>, max: usize) -> (String, Option<Finish>, u32) {
        let t = tok();
        let mut c = ChoiceText::new(spec, 1);
        let filler = t.filler();
        let mut out = String::new();
        for (i, &id) in filler.iter().take(max).enumerate() {
            let last = (i + 1 == max).then_some("length");
            let d = c.push(&t, Some(id), last);
            out.push_str(&d.text);
            if d.finish.is_some() {
                return (out, d.finish, c.tokens());
            }
        }
        (out, None, c.tokens())
    }

    #[test]
    fn stop_strings_cut_the_text_and_are_reported() {
        // The filler starts "The simulated engine answers every request ..."
        let (text, fin, n) = run(spec(&["engine", "zzz"], false, false, None), 40);
        assert_eq!(text, "The simulated ");
        assert_eq!(
            fin.map(|f| (f.reason, f.stop_reason)),
            Some(("stop", Some("engine".into())))
        );
        assert!(n >= 3);
        let (text, _, _) = run(spec(&[" engine"], true, false, None), 40);
        assert_eq!(text, "The simulated engine");
        let (text, fin, n) = run(spec(&[], false, false, None), 3);
        assert_eq!((text.as_str(), n), ("The simulated engine", 3));
        assert_eq!(fin.map(|f| f.reason), Some("length"));
    }

    #[test]
    fn json_answers_parse_and_logprobs_are_plausible() {
        let (text, _, _) = run(spec(&[], false, true, None), 5);
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(
            v["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("The simulated"))
        );
        let t = tok();
        let mut c = ChoiceText::new(spec(&[], false, false, Some(5)), 3);
        let d = c.push(&t, Some(t.filler()[0]), None);
        let lp = &d.logprobs[0];
        assert_eq!(lp.top.len(), 5);
        assert_eq!(lp.top[0], (lp.token.clone(), lp.logprob));
        let total: f64 = lp.top.iter().map(|(_, l)| l.exp()).sum();
        assert!(total <= 1.0 && lp.logprob < 0.0, "{total}");
        assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
    }
}
