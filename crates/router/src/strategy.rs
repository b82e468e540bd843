//! Strategy names as AIBrix spells them, and weighted mixes such as `prefix-cache:2,least-request:1`.

use std::fmt;
use std::str::FromStr;

/// One routing strategy, by its `routing-strategy` header value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Uniform over ready pods.
    Random,
    /// Fewest requests in flight from this gateway.
    LeastRequest,
    /// Lowest KV-cache usage (`vllm:kv_cache_usage_perc`).
    LeastKvCache,
    /// The less loaded of two random pods.
    PowerOfTwo,
    /// Keep a session on one pod (`x-session-id`, `x-aibrix-session-key`).
    SessionAffinity,
    /// Longest cached prompt prefix, guarded against load imbalance (AIBrix's algorithm).
    PrefixCache,
    /// Least estimated work: uncached prefill units on the pod plus its load, no threshold.
    KvCost,
    /// Fewest weighted tokens per second (`2 × prompt + output`), as this gateway measured.
    Throughput,
    /// Least estimated latency of this request, from gateway-measured TTFT, TPOT and queue.
    LeastLatency,
    /// Per-user token fairness (AIBrix's virtual token counter, basic variant).
    VtcBasic,
    /// LoRA adapters: prefer a pod whose running batch has the adapter, then one with a free
    /// GPU slot, weighed against load (llm-d's LoRA affinity, as one linear cost).
    LoraAffinity,
    /// Least estimated time to first token: booked prefill, decode load and this prompt's
    /// uncached tokens priced by an engine step-cost profile, corrected per pod online.
    Ttft,
}

impl Strategy {
    /// Every strategy, in the order docs list them.
    pub const ALL: [Strategy; 12] = [
        Self::Random,
        Self::LeastRequest,
        Self::LeastKvCache,
        Self::PowerOfTwo,
        Self::SessionAffinity,
        Self::PrefixCache,
        Self::KvCost,
        Self::Throughput,
        Self::LeastLatency,
        Self::VtcBasic,
        Self::LoraAffinity,
        Self::Ttft,
    ];

    /// The header value and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::LeastRequest => "least-request",
            Self::LeastKvCache => "least-kv-cache",
            Self::PowerOfTwo => "power-of-two",
            Self::SessionAffinity => "session-affinity",
            Self::PrefixCache => "prefix-cache",
            Self::KvCost => "kv-cost",
            Self::Throughput => "throughput",
            Self::LeastLatency => "least-latency",
            Self::VtcBasic => "vtc-basic",
            Self::LoraAffinity => "lora-affinity",
            Self::Ttft => "ttft",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a `routing-strategy` value was refused (the gateway answers 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StrategyParseError {
    /// No such strategy.
    #[error("unknown routing strategy '{0}'")]
    Unknown(String),
    /// A weight that is not an integer in 0..=1000000.
    #[error("bad weight in '{0}': weights are integers from 0 to 1000000")]
    BadWeight(String),
    /// Empty value, or every weight zero.
    #[error("routing strategy '{0}' names no strategy with a positive weight")]
    Empty(String),
}

impl FromStr for Strategy {
    type Err = StrategyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s.trim())
            .ok_or_else(|| StrategyParseError::Unknown(s.trim().to_string()))
    }
}

/// A strategy or a weighted mix of them; zero weights are dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Weighted(pub Vec<(Strategy, u32)>);

impl FromStr for Weighted {
    type Err = StrategyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once(':') {
                Some((n, w)) => {
                    let w: u32 = w
                        .trim()
                        .parse()
                        .ok()
                        .filter(|w| *w <= 1_000_000)
                        .ok_or_else(|| StrategyParseError::BadWeight(part.to_string()))?;
                    (n, w)
                }
                None => (part, 1),
            };
            let strategy: Strategy = name.parse()?;
            if weight > 0 {
                parts.push((strategy, weight));
            }
        }
        if parts.is_empty() {
            return Err(StrategyParseError::Empty(s.to_string()));
        }
        Ok(Self(parts))
    }
}

impl fmt::Display for Weighted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [(s, 1)] => write!(f, "{s}"),
            parts => {
                let v: Vec<String> = parts.iter().map(|(s, w)| format!("{s}:{w}")).collect();
                f.write_str(&v.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_mixes() {
        let cases: [(&str, Result<Weighted, StrategyParseError>); 7] = [
            ("random", Ok(Weighted(vec![(Strategy::Random, 1)]))),
            (
                "prefix-cache:2, least-request:1",
                Ok(Weighted(vec![
                    (Strategy::PrefixCache, 2),
                    (Strategy::LeastRequest, 1),
                ])),
            ),
            (
                "least-kv-cache:0,random",
                Ok(Weighted(vec![(Strategy::Random, 1)])),
            ),
            (
                "least-busy",
                Err(StrategyParseError::Unknown("least-busy".into())),
            ),
            (
                "random:x",
                Err(StrategyParseError::BadWeight("random:x".into())),
            ),
            (
                "random:2000000",
                Err(StrategyParseError::BadWeight("random:2000000".into())),
            ),
            (
                "random:0",
                Err(StrategyParseError::Empty("random:0".into())),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Weighted>(), want, "{text}");
        }
        for s in Strategy::ALL {
            assert_eq!(s.as_str().parse::<Strategy>(), Ok(s));
        }
        let mix: Weighted = "prefix-cache:2,least-request"
            .parse()
            .unwrap_or(Weighted(vec![]));
        assert_eq!(mix.to_string(), "prefix-cache:2,least-request:1");
    }
}
