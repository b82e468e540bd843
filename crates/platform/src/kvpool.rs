//! The fleet file's `kvcache:` line: a KV cache pool `brix up` starts beside the engines, and
//! how each engine is pointed at it (a `sim:` engine directly, an engine command through the
//! `{kv_pool}` placeholder).

use std::fmt;
use std::net::SocketAddr;

use brix_sim::Transport;
use brix_sim_http::KvPoolConfig;
use serde::Deserialize;

/// Where an engine command takes its `--kv-pool` flags (empty when the fleet has no pool).
pub const KV_POOL_PLACEHOLDER: &str = "{kv_pool}";

/// `kvcache: { capacity: 2GiB }`: one pool server in the `brix up` process.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KvCacheSpec {
    /// Memory the pool may hold (`2GiB`, `512MiB`, or bytes).
    pub capacity: ByteSize,
    /// Where the pool listens (default `127.0.0.1:0`: a free port, printed at start).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Eviction policy: `s3fifo` (default), `s3fifo:RATIO` or `lru`.
    #[serde(default)]
    pub policy: Option<String>,
    /// Largest value the pool accepts (default: the pool server's).
    #[serde(default)]
    pub max_value: Option<ByteSize>,
    /// How the simulated GPUs reach it, which prices their loads: `shm` (default: the pool
    /// runs on their host) or `tcp`.
    #[serde(default)]
    pub transport: Option<String>,
    /// Tokens per chunk (default 256; a multiple of the engines' block size).
    #[serde(default)]
    pub chunk_tokens: Option<u32>,
    /// Payload engines store per chunk (default: the model's real KV bytes of a chunk; a few
    /// KiB keep a laptop's pool small).
    #[serde(default)]
    pub value_bytes: Option<ByteSize>,
    /// A token the pool requires and the engines send (default: none; the pool is local).
    #[serde(default)]
    pub token: Option<String>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl KvCacheSpec {
    /// Checks what serde cannot; errors name the field under `kvcache`.
    pub fn check(&self) -> Result<(), brix_api::FieldError> {
        let fail =
            |f: &str, why: String| Err(brix_api::FieldError::new(format!("kvcache.{f}"), why));
        if self.capacity.0 == 0 {
            return fail("capacity", "must be positive".into());
        }
        if let Some(p) = &self.policy
            && let Err(e) = p.parse::<brix_kvcache::PolicyKind>()
        {
            return fail("policy", e.to_string());
        }
        if let Some(t) = &self.transport
            && let Err(e) = t.parse::<Transport>()
        {
            return fail("transport", e.to_string());
        }
        if self.chunk_tokens == Some(0) {
            return fail("chunk_tokens", "must be positive".into());
        }
        if self.value_bytes.is_some_and(|v| v.0 == 0) {
            return fail("value_bytes", "must be positive".into());
        }
        if let (Some(v), Some(m)) = (self.value_bytes, self.max_value)
            && v.0 > m.0
        {
            return fail("value_bytes", format!("{v} is above max_value {m}"));
        }
        Ok(())
    }

    /// What the engines get once the pool listens on `addr`.
    pub fn engine_config(&self, addr: SocketAddr) -> KvPoolConfig {
        let mut c = KvPoolConfig::new(vec![addr.to_string()]);
        c.transport = self
            .transport
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or(Transport::Shm);
        if let Some(n) = self.chunk_tokens {
            c.chunk_tokens = n;
        }
        c.value_bytes = self.value_bytes.map(|v| v.0);
        c.token = self.token.clone();
        c
    }
}

/// `brix sim` flags for `pool`, to replace [`KV_POOL_PLACEHOLDER`] in an engine command; the
/// token goes through the environment (`BRIX_KV_POOL_TOKEN`), never the command line.
pub fn kv_pool_flags(pool: &KvPoolConfig) -> String {
    let mut f = format!(
        "--kv-pool {} --kv-pool-transport {} --kv-pool-chunk-tokens {}",
        pool.servers.join(","),
        pool.transport.as_str(),
        pool.chunk_tokens
    );
    if let Some(g) = pool.bandwidth_gbps {
        f.push_str(&format!(" --kv-pool-gbps {g}"));
    }
    if let Some(v) = pool.value_bytes {
        f.push_str(&format!(" --kv-pool-value-bytes {v}"));
    }
    f
}

/// A byte count written as a number or with a binary/decimal unit (`64KiB`, `2GiB`, `1GB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{name}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("'{s}' is not a size (like 2GiB, 512MiB or 4096)"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "m" | "mb" => 1_000_000,
            "g" | "gb" => 1_000_000_000,
            "t" | "tb" => 1_000_000_000_000,
            "ki" | "kib" => 1 << 10,
            "mi" | "mib" => 1 << 20,
            "gi" | "gib" => 1 << 30,
            "ti" | "tib" => 1 << 40,
            u => return Err(format!("unknown size unit '{u}' in '{s}'")),
        };
        n.checked_mul(mult)
            .map(Self)
            .ok_or_else(|| format!("'{s}' is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Self(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_both_unit_systems() {
        for (s, want) in [
            ("4096", 4096),
            ("64KiB", 65_536),
            ("2GiB", 2 << 30),
            ("1GB", 1_000_000_000),
            ("512 MiB", 512 << 20),
        ] {
            assert_eq!(s.parse::<ByteSize>(), Ok(ByteSize(want)), "{s}");
        }
        for bad in ["", "GiB", "2 parsecs", "-1", "99999999999999TiB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
        assert_eq!(ByteSize(2 << 30).to_string(), "2GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }

    #[test]
    fn engines_get_the_pool_address_and_flags() {
        let spec: KvCacheSpec =
            serde_yaml_ng::from_str("{capacity: 1GiB, value_bytes: 4KiB}").expect("valid");
        assert!(spec.check().is_ok());
        let addr = SocketAddr::from(([127, 0, 0, 1], 7400));
        let c = spec.engine_config(addr);
        assert_eq!(c.servers, ["127.0.0.1:7400"]);
        assert_eq!((c.transport, c.value_bytes), (Transport::Shm, Some(4096)));
        assert_eq!(
            kv_pool_flags(&c),
            "--kv-pool 127.0.0.1:7400 --kv-pool-transport shm --kv-pool-chunk-tokens 256 --kv-pool-value-bytes 4096"
        );
        for (text, field) in [
            ("{capacity: 0}", "kvcache.capacity"),
            ("{capacity: 1GiB, policy: arc}", "kvcache.policy"),
            ("{capacity: 1GiB, transport: rdma}", "kvcache.transport"),
            ("{capacity: 1GiB, chunk_tokens: 0}", "kvcache.chunk_tokens"),
            (
                "{capacity: 1GiB, value_bytes: 2MiB, max_value: 1MiB}",
                "kvcache.value_bytes",
            ),
        ] {
            let spec: KvCacheSpec = serde_yaml_ng::from_str(text).expect("parses");
            let e = spec
                .check()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(field), "{text}: {e}");
        }
        assert!(serde_yaml_ng::from_str::<KvCacheSpec>("{capacity: 1GiB, size: 2}").is_err());
    }
}
