//! `brix kvcache bench`: an in-process pool server on loopback and a Unix socket, a blocking
//! client on another thread, and for each value size the throughput of put and get over shared
//! memory and over TCP next to memcpy of the same sizes in the same run; then p50/p99 latency of
//! one-block gets, one at a time and pipelined; then the longest-prefix lookup of a long prompt
//! (`lookup.rs`). Prints a markdown report.

use std::hint::black_box;
use std::time::{Duration, Instant};

use brix_kvcache::BlockKey;
use brix_kvcache::blocking::{Client, ClientConfig};
use brix_kvcache::server::{Server, ServerConfig};
use clap::Args;

use super::{KvcacheCmdError, parse_size};

/// Flags of `brix kvcache bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Value sizes to measure, comma separated.
    #[arg(long, default_value = "64KiB,256KiB,1MiB,4MiB,16MiB,64MiB", value_delimiter = ',', value_parser = parse_size)]
    sizes: Vec<u64>,
    /// Bytes moved per measurement and size (at least 8 values).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    bytes: u64,
    /// Repetitions of each measurement; medians are reported.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Arena of the benchmark server.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    capacity: u64,
    /// Value size of the latency test (a 16-token block of an 8B model is 2 MiB).
    #[arg(long, default_value = "64KiB", value_parser = parse_size)]
    block: u64,
    /// Gets in the latency test.
    #[arg(long, default_value_t = 2000)]
    gets: usize,
    /// Requests in flight in the pipelined latency test.
    #[arg(long, default_value_t = 16)]
    depth: usize,
    /// Prompt length of the longest-prefix lookup test (0 skips it).
    #[arg(long, default_value_t = 131_072)]
    lookup_tokens: usize,
    /// Timed lookups per path in the lookup test.
    #[arg(long, default_value_t = 200)]
    lookups: usize,
    /// Values per put call in the throughput table, at most 64 MiB a call (an engine offloads a
    /// request's chunks in one call; 1 measures a round trip per value).
    #[arg(long, default_value_t = 1)]
    put_batch: usize,
    /// Skip the throughput and get-latency tables (run only the lookup test).
    #[arg(long)]
    lookup_only: bool,
}

/// The median (upper one for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Bytes per second of `f` over `bytes`.
fn rate(bytes: u64, f: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<f64> {
    let t = Instant::now();
    f()?;
    Ok(bytes as f64 / t.elapsed().as_secs_f64())
}

fn gbs(r: f64) -> String {
    format!("{:.2}", r / 1e9)
}

fn key(run: u64, i: u64) -> BlockKey {
    BlockKey(u128::from(run) << 64 | u128::from(i))
}

pub(super) fn run(args: BenchArgs) -> Result<(), KvcacheCmdError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let sock = std::env::temp_dir().join(format!("brix-kvcache-bench-{}.sock", std::process::id()));
    let mut cfg = ServerConfig::new(
        "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
        args.capacity,
    );
    cfg.unix = Some(sock.clone());
    // LRU, so the values of a cell are all still there when the cell reads them back (S3-FIFO
    // would rightly evict a one-pass scan from its small queue first).
    cfg.store.policy = brix_kvcache::PolicyKind::Lru;
    cfg.store.max_value = args
        .sizes
        .iter()
        .copied()
        .max()
        .unwrap_or(1 << 20)
        .max(args.block);
    cfg.max_inflight_bytes = cfg.max_inflight_bytes.max(4 * cfg.max_frame());
    let server = rt.block_on(Server::bind(cfg))?;
    let tcp_addr = server.local_addr().to_string();
    let handle = rt.block_on(async { server.spawn() });
    let unix = format!("unix:{}", sock.display());
    let mut result = if args.lookup_only {
        Ok(())
    } else {
        measure(&args, &tcp_addr, &unix)
    };
    if result.is_ok() && args.lookup_tokens > 0 {
        let l = super::lookup::Lookup {
            tokens: args.lookup_tokens,
            lookups: args.lookups,
            tcp: &tcp_addr,
            unix: &unix,
        };
        result = super::lookup::run(&rt, &l);
    }
    rt.block_on(handle.shutdown());
    result
}

fn measure(args: &BenchArgs, tcp: &str, unix: &str) -> Result<(), KvcacheCmdError> {
    let cfg = ClientConfig {
        io_timeout: Duration::from_secs(60),
        ..ClientConfig::default()
    };
    let mut shm = Client::connect(unix, cfg.clone())?;
    if !shm.has_shm() {
        return Err(std::io::Error::other("the Unix client did not get the arena").into());
    }
    let mut net = Client::connect(tcp, cfg)?;
    println!("# brix kvcache bench\n");
    println!(
        "{} CPUs; arena {} MiB; {} MiB moved per measurement; median of {} repetitions; {} value(s) per put call; GB/s = 1e9 bytes/s; % = median ratio to a memcpy pass of the same bytes run just before each measurement.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.capacity >> 20,
        args.bytes >> 20,
        args.reps,
        args.put_batch.max(1)
    );
    println!("| value | memcpy GB/s | shm put GB/s | shm get GB/s | TCP put GB/s | TCP get GB/s |");
    println!("|---|---|---|---|---|---|");
    let mut run = 0u64;
    for &size in &args.sizes {
        let n = (args.bytes / size).max(8);
        // Values live in one source pool larger than the caches, like the arena does.
        let pool_vals = ((256u64 << 20) / size).clamp(2, n) as usize;
        let src: Vec<Vec<u8>> = (0..pool_vals)
            .map(|i| vec![i as u8 ^ 0x5a; size as usize])
            .collect();
        let mut dst = vec![1u8; size as usize];
        let total = n * size;
        let memcpy = |dst: &mut [u8]| {
            rate(total, || {
                for i in 0..n as usize {
                    dst.copy_from_slice(&src[i % pool_vals]);
                    black_box(&dst);
                }
                Ok(())
            })
        };
        // Puts use fresh keys (a present key is not rewritten); gets read back the values of
        // the last put (LRU keeps them), round robin.
        let put = |c: &mut Client, tcp: bool, run: u64| {
            rate(total, || {
                // At most 64 MiB per call: reservations stay pinned until their commit.
                let batch = (args.put_batch as u64).min((64 << 20) / size).max(1);
                let mut i = 0;
                while i < n {
                    let items: Vec<(BlockKey, &[u8])> = (i..(i + batch).min(n))
                        .map(|j| (key(run, j), &src[j as usize % pool_vals][..]))
                        .collect();
                    i += items.len() as u64;
                    let st = if tcp {
                        c.put_tcp(&items)?
                    } else {
                        c.put(&items)?
                    };
                    if let Some(bad) = st.iter().find(|s| !s.is_ok()) {
                        return Err(std::io::Error::other(format!("put refused: {bad:?}")));
                    }
                }
                Ok(())
            })
        };
        let live = ((args.capacity / 4) / size).clamp(1, n);
        let first = n - live;
        // Each path is measured right after a memcpy pass of the same bytes, and its ratio is
        // taken against that pass: the machine's load drifts less within a pair than a row.
        let mut cells: [Vec<(f64, f64)>; 4] = Default::default();
        let mut copies = Vec::new();
        for _ in 0..args.reps.max(1) {
            for (path, cell) in cells.iter_mut().enumerate() {
                let m = memcpy(&mut dst)?;
                copies.push(m);
                if path % 2 == 0 {
                    run += 1;
                }
                let r = match path {
                    0 => put(&mut shm, false, run)?,
                    2 => put(&mut net, true, run)?,
                    _ => rate(total, || {
                        for i in 0..n {
                            let k = key(run, first + i % live);
                            let len = if path == 1 {
                                shm.get_into(k, &mut dst)?
                            } else {
                                net.get_tcp(&[k])?.pop().flatten().map(|v| v.len())
                            };
                            if len != Some(size as usize) {
                                return Err(std::io::Error::other("a get missed a value just put"));
                            }
                        }
                        Ok(())
                    })?,
                };
                cell.push((r, r / m));
            }
        }
        let pct = |c: &mut Vec<(f64, f64)>| {
            let rates = median(c.iter().map(|x| x.0).collect());
            let ratio = median(c.iter().map(|x| x.1).collect());
            format!("{} ({:.0} %)", gbs(rates), 100.0 * ratio)
        };
        let [shm_put, shm_get, tcp_put, tcp_get] = &mut cells;
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            human(size),
            gbs(median(copies)),
            pct(shm_put),
            pct(shm_get),
            pct(tcp_put),
            pct(tcp_get)
        );
    }
    latency(args, &mut shm, &mut net, run + 1)
}

fn latency(
    args: &BenchArgs,
    shm: &mut Client,
    net: &mut Client,
    run: u64,
) -> Result<(), KvcacheCmdError> {
    let v = vec![7u8; args.block as usize];
    let keys: Vec<BlockKey> = (0..64).map(|i| key(run, i)).collect();
    let items: Vec<(BlockKey, &[u8])> = keys.iter().map(|k| (*k, &v[..])).collect();
    net.put_tcp(&items)?;
    let mut dst = vec![0u8; args.block as usize];
    let mut shm_lat = Vec::with_capacity(args.gets);
    let mut tcp_lat = Vec::with_capacity(args.gets);
    for i in 0..args.gets {
        let k = keys[i % keys.len()];
        let t = Instant::now();
        shm.get_into(k, &mut dst)?;
        shm_lat.push(t.elapsed());
        let t = Instant::now();
        black_box(net.get_tcp(&[k])?);
        tcp_lat.push(t.elapsed());
    }
    let depth = args.depth.max(1);
    let mut piped = Vec::with_capacity(args.gets / depth + 1);
    for i in 0..(args.gets / depth).max(1) {
        let batch: Vec<BlockKey> = (0..depth)
            .map(|j| keys[(i * depth + j) % keys.len()])
            .collect();
        let t = Instant::now();
        black_box(net.get_pipelined(&batch)?);
        piped.push(t.elapsed() / depth as u32);
    }
    println!(
        "\nOne-block get latency, value {} ({} gets):\n",
        human(args.block),
        args.gets
    );
    println!("| path | p50 µs | p99 µs |");
    println!("|---|---|---|");
    for (name, l) in [
        ("shm (GET_SHM + copy + RELEASE)", &mut shm_lat),
        ("TCP, one at a time", &mut tcp_lat),
        (
            &*format!("TCP, pipelined ×{depth} (batch time / {depth})"),
            &mut piped,
        ),
    ] {
        l.sort();
        let q = |p: f64| l[((l.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
        println!("| {name} | {:.1} | {:.1} |", q(0.5), q(0.99));
    }
    Ok(())
}

fn human(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{} MiB", b >> 20)
    } else {
        format!("{} KiB", b >> 10)
    }
}
