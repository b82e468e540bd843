//! How long an answer is when nothing forces its length: a seeded draw per request.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// Distribution of natural output lengths (tokens until the simulated EOS).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OutputLen {
    /// Always `n` tokens.
    Fixed(u32),
    /// Uniform on `lo..=hi`.
    Uniform {
        /// Shortest answer.
        lo: u32,
        /// Longest answer.
        hi: u32,
    },
    /// Exponential with the given mean (memoryless EOS: a constant stop chance per token).
    Exponential {
        /// Mean length.
        mean: f64,
    },
    /// Log-normal with the given median and shape; heavy-tailed like chat traces.
    LogNormal {
        /// Median length.
        median: f64,
        /// Standard deviation of ln(length).
        sigma: f64,
    },
}

impl Default for OutputLen {
    /// A chat-like default: median 200 tokens, long tail (ShareGPT-shaped).
    fn default() -> Self {
        Self::LogNormal {
            median: 200.0,
            sigma: 0.8,
        }
    }
}

impl OutputLen {
    /// One draw, at least 1 token.
    pub fn sample(&self, rng: &mut impl Rng) -> u32 {
        let x = match *self {
            Self::Fixed(n) => f64::from(n),
            Self::Uniform { lo, hi } => f64::from(rng.random_range(lo..=hi.max(lo))),
            Self::Exponential { mean } => -mean * (1.0 - rng.random::<f64>()).ln(),
            Self::LogNormal { median, sigma } => {
                // Box-Muller: one standard normal from two uniforms.
                let u1 = 1.0 - rng.random::<f64>();
                let u2 = rng.random::<f64>();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                median * (sigma * z).exp()
            }
        };
        x.round().clamp(1.0, f64::from(u32::MAX)) as u32
    }
}

/// Why an `--output-len` spec was rejected.
#[derive(Debug, thiserror::Error)]
#[error(
    "bad output length '{0}': expected fixed:N, uniform:LO:HI, exp:MEAN or lognormal:MEDIAN:SIGMA with positive numbers"
)]
pub struct OutputLenParseError(String);

impl FromStr for OutputLen {
    type Err = OutputLenParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || OutputLenParseError(s.to_string());
        let parts: Vec<&str> = s.split(':').collect();
        let num = |i: usize| -> Result<f64, OutputLenParseError> {
            let v: f64 = parts.get(i).ok_or_else(bad)?.parse().map_err(|_| bad())?;
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(bad())
            }
        };
        let int = |i: usize| -> Result<u32, OutputLenParseError> {
            parts
                .get(i)
                .ok_or_else(bad)?
                .parse::<u32>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(bad)
        };
        let parsed = match (parts[0], parts.len()) {
            ("fixed", 2) => Self::Fixed(int(1)?),
            ("uniform", 3) => {
                let (lo, hi) = (int(1)?, int(2)?);
                if lo > hi {
                    return Err(bad());
                }
                Self::Uniform { lo, hi }
            }
            ("exp", 2) => Self::Exponential { mean: num(1)? },
            ("lognormal", 3) => Self::LogNormal {
                median: num(1)?,
                sigma: num(2)?,
            },
            _ => return Err(bad()),
        };
        Ok(parsed)
    }
}

impl fmt::Display for OutputLen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(n) => write!(f, "fixed:{n}"),
            Self::Uniform { lo, hi } => write!(f, "uniform:{lo}:{hi}"),
            Self::Exponential { mean } => write!(f, "exp:{mean}"),
            Self::LogNormal { median, sigma } => write!(f, "lognormal:{median}:{sigma}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn parse_round_trips_and_rejects_garbage() {
        for s in ["fixed:7", "uniform:1:9", "exp:128", "lognormal:200:0.8"] {
            let parsed: OutputLen = s.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(parsed.to_string(), s);
        }
        for s in [
            "",
            "fixed",
            "fixed:0",
            "uniform:9:1",
            "exp:-1",
            "lognormal:1",
            "poisson:3",
            "exp:NaN",
        ] {
            assert!(s.parse::<OutputLen>().is_err(), "{s} should be rejected");
        }
    }

    #[test]
    fn draws_are_seeded_and_have_the_asked_centre() {
        let d = OutputLen::Exponential { mean: 100.0 };
        let draw = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..4000).map(|_| d.sample(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        let v = draw(2);
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        assert!((90.0..110.0).contains(&mean), "mean {mean}");
        let mut ln = OutputLen::default();
        let mut rng = SmallRng::seed_from_u64(3);
        let mut xs: Vec<u32> = (0..4001).map(|_| ln.sample(&mut rng)).collect();
        xs.sort_unstable();
        assert!((180..220).contains(&xs[2000]), "median {}", xs[2000]);
        ln = OutputLen::Fixed(5);
        assert_eq!(ln.sample(&mut rng), 5);
    }
}
