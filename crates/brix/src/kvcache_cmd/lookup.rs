//! The lookup part of `brix kvcache bench`: how long an engine waits to learn how much of a long
//! prompt the pool holds. For each granularity (256-token chunks, 16-token blocks) it stores
//! every chunk of one prompt, then times hashing the prompt (`chunk_keys`) plus one
//! `EXISTS_PREFIX` round trip, over TCP loopback, over the Unix socket, and through a
//! `PoolClient` over two servers (one round trip per server, in parallel). Prints a markdown
//! table of p50/p99.

use std::hint::black_box;
use std::time::{Duration, Instant};

use brix_kvcache::blocking::{Client, ClientConfig};
use brix_kvcache::pool::{PoolClient, PoolConfig};
use brix_kvcache::server::{Server, ServerConfig};
use brix_kvcache::{BlockKey, Namespace, chunk_keys};

use super::KvcacheCmdError;

/// Granularities measured: LMCache's 256-token chunk and vLLM's 16-token block.
const GRANULES: [usize; 2] = [256, 16];

/// Prompt length, timed lookups per path, and the two servers' addresses.
pub(super) struct Lookup<'a> {
    pub(super) tokens: usize,
    pub(super) lookups: usize,
    pub(super) tcp: &'a str,
    pub(super) unix: &'a str,
}

fn quantiles(mut l: Vec<Duration>) -> (f64, f64) {
    l.sort();
    if l.is_empty() {
        return (0.0, 0.0);
    }
    let q = |p: f64| l[((l.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    (q(0.5), q(0.99))
}

/// Stores one small value under each key, on the server the pool's ring assigns (or `only`).
fn fill(keys: &[BlockKey], pool: &PoolClient, only: Option<&str>) -> std::io::Result<()> {
    let v = [1u8; 16];
    let cfg = ClientConfig::default();
    for addr in pool.members() {
        let mine: Vec<(BlockKey, &[u8])> = keys
            .iter()
            .filter(|k| only.is_some() || pool.server_for(**k) == Some(addr.as_str()))
            .map(|k| (*k, &v[..]))
            .collect();
        let target = only.unwrap_or(addr);
        let mut c = Client::connect(target, cfg.clone())?;
        for part in mine.chunks(4096) {
            if c.put_tcp(part)?.iter().any(|s| !s.is_ok()) {
                return Err(std::io::Error::other("a lookup key was refused"));
            }
        }
        if only.is_some() {
            break;
        }
    }
    Ok(())
}

pub(super) fn run(rt: &tokio::runtime::Runtime, l: &Lookup<'_>) -> Result<(), KvcacheCmdError> {
    // A second server, so the pool client spreads keys over two.
    let cfg = ServerConfig::new(
        "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
        256 << 20,
    );
    let second = rt.block_on(Server::bind(cfg))?;
    let second_addr = second.local_addr().to_string();
    let second = rt.block_on(async { second.spawn() });
    let result = measure(rt, l, &second_addr);
    rt.block_on(second.shutdown());
    result
}

fn measure(
    rt: &tokio::runtime::Runtime,
    l: &Lookup<'_>,
    second: &str,
) -> Result<(), KvcacheCmdError> {
    // A fixed pseudo-random prompt (xorshift), as token ids of a 128k-vocabulary model.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let prompt: Vec<u32> = (0..l.tokens)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 128_000) as u32
        })
        .collect();
    let root = Namespace {
        model: "brix-kvcache-bench",
        adapter: None,
        tenant: None,
    }
    .root();
    let cfg = ClientConfig {
        io_timeout: Duration::from_secs(60),
        ..ClientConfig::default()
    };
    let mut net = Client::connect(l.tcp, cfg.clone())?;
    let mut uds = Client::connect(l.unix, cfg)?;
    let pool_cfg = PoolConfig {
        timeout: Duration::from_secs(10),
        ..PoolConfig::default()
    };
    let pool = PoolClient::new(&[l.tcp.to_string(), second.to_string()], pool_cfg);
    println!(
        "\nLongest-prefix lookup of a {}-token prompt, all of it in the pool: hashing (`chunk_keys`) + one `EXISTS_PREFIX` round trip, {} lookups per path:\n",
        l.tokens, l.lookups
    );
    println!("| granularity | keys | path | p50 µs | p99 µs |");
    println!("|---|---|---|---|---|");
    for g in GRANULES {
        let keys = chunk_keys(root, &prompt, g);
        // The single-server paths read the first server; the pool reads both.
        fill(&keys, &pool, Some(l.tcp))?;
        fill(&keys, &pool, None)?;
        let mut hash = Vec::with_capacity(l.lookups);
        let mut lat: [Vec<Duration>; 3] = Default::default();
        for _ in 0..l.lookups {
            let t = Instant::now();
            black_box(chunk_keys(root, &prompt, g));
            hash.push(t.elapsed());
            for (path, v) in lat.iter_mut().enumerate() {
                let t = Instant::now();
                let k = chunk_keys(root, &prompt, g);
                let n = match path {
                    0 => net.longest_prefix(&k)?,
                    1 => uds.longest_prefix(&k)?,
                    _ => rt.block_on(pool.longest_prefix(&k)),
                };
                v.push(t.elapsed());
                if n != keys.len() {
                    return Err(std::io::Error::other(format!(
                        "lookup found {n} of {} stored keys",
                        keys.len()
                    ))
                    .into());
                }
            }
        }
        let [tcp, unix, two] = lat;
        for (name, v) in [
            ("hashing only", hash),
            ("hash + TCP loopback", tcp),
            ("hash + Unix socket", unix),
            ("hash + PoolClient, 2 servers (TCP)", two),
        ] {
            let (p50, p99) = quantiles(v);
            println!(
                "| {g} tokens | {} | {name} | {p50:.0} | {p99:.0} |",
                keys.len()
            );
        }
    }
    Ok(())
}
