//! `brix kvcache`: `serve` runs a KV cache pool server; `bench` measures put/get over shared
//! memory and TCP loopback against memcpy in the same run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use brix_kvcache::PolicyKind;
use brix_kvcache::server::{Server, ServerConfig, ServerError};
use clap::{Args, Subcommand};

#[path = "kvcache_cmd/bench.rs"]
mod bench;
#[path = "kvcache_cmd/lookup.rs"]
mod lookup;

/// Flags of `brix kvcache`.
#[derive(Debug, Args)]
pub(crate) struct KvcacheArgs {
    #[command(subcommand)]
    command: KvcacheCommand,
}

#[derive(Debug, Subcommand)]
enum KvcacheCommand {
    /// Serve a pool server (binary protocol and RESP on one port, shared memory on a Unix socket).
    Serve(ServeArgs),
    /// Measure put/get throughput and latency over shared memory and TCP against memcpy.
    Bench(bench::BenchArgs),
}

/// Flags of `brix kvcache serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TCP address (port 0 picks one; the listening line says which). Beyond loopback a token
    /// is required.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Unix socket for same-host clients; they get the arena by shared memory (mode 0600).
    #[arg(long)]
    unix: Option<PathBuf>,
    /// Arena size (bytes, or with KiB/MiB/GiB): the memory bound of the stored values.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    capacity: u64,
    /// Largest value.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    max_value: u64,
    /// Eviction policy: `s3fifo`, `s3fifo:<small ratio>` or `lru`.
    #[arg(long, default_value = "s3fifo")]
    policy: PolicyKind,
    /// Token clients must present.
    #[arg(long, env = "BRIX_KVCACHE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Seconds a shared-memory lease lasts without release or commit.
    #[arg(long, default_value_t = 30)]
    lease_s: u64,
    /// Seconds an idle connection is kept.
    #[arg(long, default_value_t = 300)]
    idle_timeout_s: u64,
}

/// What can stop `brix kvcache`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KvcacheCmdError {
    /// The server did not start.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The runtime or a benchmark step failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs `brix kvcache …`.
pub(crate) fn run(args: KvcacheArgs) -> Result<(), KvcacheCmdError> {
    match args.command {
        KvcacheCommand::Serve(a) => serve(a),
        KvcacheCommand::Bench(a) => bench::run(a),
    }
}

impl ServeArgs {
    fn config(&self) -> ServerConfig {
        let mut cfg = ServerConfig::new(self.listen, self.capacity);
        cfg.unix = self.unix.clone();
        cfg.store.max_value = self.max_value;
        cfg.store.policy = self.policy;
        cfg.store.lease = Duration::from_secs(self.lease_s);
        cfg.token = self.token.clone().filter(|t| !t.is_empty());
        cfg.idle_timeout = Duration::from_secs(self.idle_timeout_s);
        cfg.max_inflight_bytes = cfg.max_inflight_bytes.max(2 * cfg.max_frame());
        cfg
    }
}

fn serve(args: ServeArgs) -> Result<(), KvcacheCmdError> {
    let cfg = args.config();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = Server::bind(cfg).await?;
        match server.unix_path() {
            Some(p) => println!(
                "kvcache listening on {} and unix:{}",
                server.local_addr(),
                p.display()
            ),
            None => println!("kvcache listening on {}", server.local_addr()),
        }
        server.run(brix_net::shutdown_signal()).await;
        Ok(())
    })
}

/// Parses `1GiB`, `64MiB`, `512KiB`, `4096` (also `GB`/`MB`/`KB` as powers of 1000).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "tib" | "t" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(format!("unknown size unit in {s:?} (use B, KiB, MiB, GiB)")),
    };
    let n: f64 = num.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("size out of range: {s:?}"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1.5 KiB"), Ok(1536));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }
}
