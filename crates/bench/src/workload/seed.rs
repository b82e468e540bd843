//! Seeded randomness for the generators: every draw comes from a stream named by
//! (seed, purpose, index), so one request's words do not depend on how many came before it,
//! and `requests=400` is the first 400 requests of `requests=800`.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::vocab::VOCAB_LEN;

/// What a random stream is for; each purpose draws from its own streams.
#[derive(Clone, Copy, Debug)]
pub(super) enum Stream {
    /// A shared-prefix group's prefix words.
    GroupPrefix = 1,
    /// The group a shared-prefix request picks.
    GroupPick,
    /// A shared-prefix request's unique suffix.
    Suffix,
    /// A multi-turn system prompt.
    System,
    /// A multi-turn user message.
    User,
    /// A multi-turn synthetic assistant reply.
    Reply,
    /// A session turn's think time.
    Think,
    /// A Mooncake hash id's 512-token block.
    Block,
    /// An Azure trace row's prompt.
    AzurePrompt,
    /// Open-loop arrival gaps.
    Arrival,
    /// ShareGPT word hashing.
    Word,
    /// A synthetic request's prompt words.
    SyntheticPrompt,
    /// A synthetic request's lengths.
    SyntheticLen,
    /// A multi-turn session's own context after the system prompt.
    Context,
}

/// SplitMix64's finaliser: a cheap, well-mixed bijection on u64.
pub(super) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator for one (seed, purpose, index path) stream.
pub(super) fn rng(seed: u64, stream: Stream, index: &[u64]) -> SmallRng {
    let mut state = mix(seed ^ mix(stream as u64));
    for &i in index {
        state = mix(state ^ i);
    }
    SmallRng::seed_from_u64(state)
}

/// Appends `n` uniformly drawn word ids; the first `k` of them are the same for any `n ≥ k`.
pub(super) fn push_words(rng: &mut SmallRng, n: usize, out: &mut Vec<u32>) {
    out.reserve(n);
    for _ in 0..n {
        out.push(rng.random_range(0..VOCAB_LEN));
    }
}

/// An exponential draw with this mean (0 when the mean is 0), for think times and gaps.
pub(super) fn exponential(rng: &mut SmallRng, mean: f64) -> f64 {
    if mean <= 0.0 {
        return 0.0;
    }
    let u: f64 = rng.random();
    -(1.0 - u).ln() * mean
}

/// A normal draw (Box-Muller) with this mean and standard deviation.
pub(super) fn normal(rng: &mut SmallRng, mean: f64, std: f64) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    mean + std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
