//! `brix sim`: flags (vLLM's own names where vLLM has one) → [`SimConfig`] → serve.
//!
//! A vLLM flag left unset keeps [`EngineConfig::vllm_defaults`] for the chosen model and GPU,
//! so `brix sim` with no flags behaves like `vllm serve` with none.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use brix_api::ColdStart;
use brix_kvevents::KvEventsConfig;
use brix_sim::{
    Catalog, EngineConfig, EngineSettings, HashAlgo, OutputLen, ProfileError, Transport,
};
use brix_sim_http::{FaultConfig, KvPoolConfig, LoraModule, SimConfig, SimError};
use clap::{Args, Subcommand};

/// Flags of `brix sim`.
#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0 picks a free one; the listening line says which).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Name clients use as `model` (default: the profile's Hugging Face id).
    #[arg(long)]
    served_model_name: Option<String>,
    /// Model profile to simulate.
    #[arg(long, default_value = "llama-3-8b")]
    model_profile: String,
    /// GPU profile to simulate.
    #[arg(long, default_value = "A100-80GB")]
    gpu: String,
    /// Directory with extra `gpus/*.toml` and `models/*.toml` profiles.
    #[arg(long)]
    profiles_dir: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
    /// Adapters to load at start, as `name=path` (needs --enable-lora). A local path (starting
    /// with `/`, `.` or `~`) must be a PEFT adapter folder, whose rank and size are read; any
    /// other path stands for a hub adapter of --max-lora-rank.
    #[arg(long, num_args = 1..)]
    lora_modules: Vec<LoraModule>,
    /// Expose metrics vLLM hid in this version (e.g. `vllm:gpu_cache_usage_perc`).
    #[arg(long, value_name = "VERSION")]
    show_hidden_metrics_for_version: Option<String>,
    #[command(flatten)]
    faults: FaultArgs,
    /// A Hugging Face `tokenizer.json`, or a folder with one (and its `tokenizer_config.json`
    /// chat template), to count prompt tokens as the model imitated does (default: the
    /// built-in cl100k_base with a fixed chat template).
    #[arg(long, value_name = "PATH_OR_DIR")]
    tokenizer: Option<PathBuf>,
    /// Publish KV cache events as vLLM does: its JSON, e.g. `{"enable_kv_cache_events": true,
    /// "endpoint": "tcp://*:5557", "replay_endpoint": "tcp://*:5558", "topic": "kv"}`.
    #[arg(long, value_name = "JSON")]
    kv_events_config: Option<String>,
    #[command(flatten)]
    kv_pool: KvPoolArgs,
    #[command(subcommand)]
    action: Option<SimAction>,
}

/// What `brix sim` does besides serving.
#[derive(Debug, Subcommand)]
enum SimAction {
    /// The built-in tokenizer as a Hugging Face folder, for tools that count tokens themselves.
    #[command(subcommand)]
    Tokenizer(TokenizerAction),
}

/// `brix sim tokenizer ...`.
#[derive(Debug, Subcommand)]
enum TokenizerAction {
    /// Write tokenizer.json, tokenizer_config.json (with the chat template), config.json and
    /// special_tokens_map.json into DIR: `AutoTokenizer.from_pretrained(DIR)` then counts
    /// tokens exactly as `brix sim` does (without --tokenizer).
    Export {
        /// Folder to write (created if missing).
        dir: PathBuf,
    },
}

/// vLLM's engine arguments; unset ones keep vLLM's defaults.
#[derive(Debug, Args)]
struct EngineArgs {
    /// Most requests in one batch.
    #[arg(long)]
    max_num_seqs: Option<u32>,
    /// Token budget per engine step.
    #[arg(long)]
    max_num_batched_tokens: Option<u32>,
    /// Tokens per KV block.
    #[arg(long)]
    block_size: Option<u32>,
    /// Fraction of GPU memory the engine may use.
    #[arg(long)]
    gpu_memory_utilization: Option<f64>,
    /// Longest prompt plus output.
    #[arg(long)]
    max_model_len: Option<u32>,
    /// Accept LoRA adapters (and serve the runtime load/unload routes).
    #[arg(long)]
    enable_lora: bool,
    /// Distinct adapters in one batch.
    #[arg(long)]
    max_loras: Option<u32>,
    /// Largest adapter rank.
    #[arg(long)]
    max_lora_rank: Option<u32>,
    /// Adapters kept in host memory (default: --max-loras).
    #[arg(long)]
    max_cpu_loras: Option<u32>,
    /// Turn automatic prefix caching on (the default).
    #[arg(long, overrides_with = "no_enable_prefix_caching")]
    enable_prefix_caching: bool,
    /// Turn automatic prefix caching off.
    #[arg(long, overrides_with = "enable_prefix_caching")]
    no_enable_prefix_caching: bool,
    /// Use exactly this many KV blocks instead of deriving them from memory.
    #[arg(long)]
    num_gpu_blocks_override: Option<u32>,
    /// Seed for every random draw (output lengths, injected faults).
    #[arg(long)]
    seed: Option<u64>,
    /// Natural answer lengths: fixed:N, uniform:LO:HI, exp:MEAN or lognormal:MEDIAN:SIGMA.
    #[arg(long)]
    output_len: Option<OutputLen>,
    /// Block hash algorithm: sha256_cbor and xxhash_cbor are vLLM's, bit for bit; sha256 and
    /// xxhash (pickle-based in vLLM) use the simulator's own hash.
    #[arg(long, value_parser = ["sha256", "sha256_cbor", "xxhash", "xxhash_cbor"])]
    prefix_caching_hash_algo: Option<String>,
    /// Seed of the first block's parent hash, read from the environment as vLLM reads it.
    #[arg(long, env = "PYTHONHASHSEED", hide = true)]
    python_hash_seed: Option<String>,
}

/// A KV cache pool below the prefix cache (`brix kvcache serve`); see docs/sim.md.
#[derive(Debug, Args)]
struct KvPoolArgs {
    /// Pool servers (`host:port`, comma-separated: several form one pool). Prefixes found
    /// there are loaded instead of recomputed when that is quicker; computed chunks are
    /// written through.
    #[arg(long, value_name = "ADDR[,ADDR...]", value_delimiter = ',')]
    kv_pool: Vec<String>,
    /// Tokens per pool chunk (a multiple of --block-size).
    #[arg(long, value_name = "N", default_value_t = brix_sim::TierConfig::DEFAULT_CHUNK_TOKENS)]
    kv_pool_chunk_tokens: u32,
    /// How the simulated GPU reaches the pool, which sets load bandwidth and latency: `shm`
    /// (same host, the GPU's PCIe link) or `tcp` (another host, a 100 GbE NIC).
    #[arg(long, value_name = "shm|tcp", default_value = "tcp")]
    kv_pool_transport: Transport,
    /// Load bandwidth into the replica in GB/s, overriding the transport's.
    #[arg(long, value_name = "GBPS")]
    kv_pool_gbps: Option<f64>,
    /// The pool's auth token.
    #[arg(long, env = "BRIX_KV_POOL_TOKEN", hide_env_values = true)]
    kv_pool_token: Option<String>,
    /// Payload bytes stored per chunk (default: the model's real KV bytes of a chunk, 32 MiB
    /// for Llama-3-8B at 256 tokens; a few KiB keep a laptop pool small).
    #[arg(long, value_name = "BYTES")]
    kv_pool_value_bytes: Option<u64>,
}

impl KvPoolArgs {
    fn config(self) -> Option<KvPoolConfig> {
        if self.kv_pool.is_empty() {
            return None;
        }
        Some(KvPoolConfig {
            chunk_tokens: self.kv_pool_chunk_tokens,
            transport: self.kv_pool_transport,
            bandwidth_gbps: self.kv_pool_gbps,
            token: self.kv_pool_token,
            value_bytes: self.kv_pool_value_bytes,
            ..KvPoolConfig::new(self.kv_pool)
        })
    }
}

/// Injected failures, for resilience tests of what sits in front.
#[derive(Debug, Args)]
struct FaultArgs {
    /// Fraction of generation requests answered 500.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Fraction of generation requests that never answer.
    #[arg(long, default_value_t = 0.0)]
    hang_rate: f64,
    /// Drop the connection after this many tokens of every generation.
    #[arg(long, value_name = "N")]
    die_mid_stream_after: Option<u32>,
    /// Seconds after start during which /health and requests answer 503 (overrides the
    /// cold-start model).
    #[arg(long, value_name = "SECS")]
    startup_delay: Option<f64>,
    /// Model a cold start: unready for the model's weights (params × dtype bytes per GPU) over
    /// `--load-gbps`, plus `--engine-init-s` (docs/sim.md, "Cold start").
    #[arg(long)]
    cold_start: bool,
    /// Weights-load throughput of the cold-start model, GB/s (default: what brix-loader
    /// measured).
    #[arg(long, value_name = "GBPS", requires = "cold_start")]
    load_gbps: Option<f64>,
    /// Seconds of engine initialisation besides weights in the cold-start model.
    #[arg(long, value_name = "SECS", requires = "cold_start")]
    engine_init_s: Option<f64>,
}

/// Why `brix sim` did not serve.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SimCliError {
    /// A profile could not be loaded or found.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// `--kv-events-config` is not vLLM's JSON.
    #[error("{0}")]
    KvEvents(String),
    /// `--startup-delay` is negative or not a number.
    #[error("--startup-delay must be a non-negative number of seconds, got {0}")]
    StartupDelay(f64),
    /// `--load-gbps` or `--engine-init-s` is out of range or not a number.
    #[error("--load-gbps must be positive and --engine-init-s a non-negative number of seconds")]
    ColdStart,
    /// The server refused its configuration or stopped.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// The async runtime could not start.
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
}

impl EngineArgs {
    /// vLLM's defaults for this model and GPU, overridden by the flags given.
    fn apply(&self, e: EngineConfig) -> EngineConfig {
        let algo = self
            .prefix_caching_hash_algo
            .as_deref()
            .and_then(HashAlgo::from_vllm);
        EngineSettings {
            max_num_seqs: self.max_num_seqs,
            max_num_batched_tokens: self.max_num_batched_tokens,
            block_size: self.block_size,
            gpu_memory_utilization: self.gpu_memory_utilization,
            max_model_len: self.max_model_len,
            // The two flags override each other, so at most one is set: the last given.
            enable_prefix_caching: (self.enable_prefix_caching || self.no_enable_prefix_caching)
                .then_some(self.enable_prefix_caching),
            enable_lora: self.enable_lora,
            max_loras: self.max_loras,
            max_lora_rank: self.max_lora_rank,
            max_cpu_loras: self.max_cpu_loras,
            num_gpu_blocks_override: self.num_gpu_blocks_override,
            seed: self.seed,
            output_len: self.output_len,
            prefix_caching_hash_algo: algo,
            // The seed only matters to vLLM's reproducible (cbor) hashes.
            hash_seed: self
                .python_hash_seed
                .clone()
                .filter(|_| algo.is_some_and(|a| a != HashAlgo::Builtin)),
            ..EngineSettings::default()
        }
        .apply(e)
    }
}

impl SimArgs {
    fn config(self) -> Result<(SimConfig, SocketAddr), SimCliError> {
        let mut catalog = Catalog::builtin();
        if let Some(dir) = &self.profiles_dir {
            catalog.load_dir(dir)?;
        }
        let model = catalog.model(&self.model_profile)?.clone();
        let gpu = catalog.gpu(&self.gpu)?.clone();
        let delay = match (self.faults.startup_delay, self.faults.cold_start) {
            (Some(d), _) => d,
            (None, true) => {
                let cold = ColdStart {
                    load_gbps: self.faults.load_gbps,
                    engine_init_s: self.faults.engine_init_s,
                };
                if cold.load_gbps.is_some_and(|g| !(g.is_finite() && g > 0.0))
                    || cold
                        .engine_init_s
                        .is_some_and(|s| !(s.is_finite() && s >= 0.0))
                {
                    return Err(SimCliError::ColdStart);
                }
                cold.seconds(&model)
            }
            (None, false) => 0.0,
        };
        let startup_delay =
            Duration::try_from_secs_f64(delay).map_err(|_| SimCliError::StartupDelay(delay))?;
        let mut cfg = SimConfig::new(model, gpu);
        cfg.engine = self.engine.apply(cfg.engine);
        if let Some(name) = self.served_model_name {
            cfg.served_model_name = name;
        }
        cfg.lora_modules = self.lora_modules;
        cfg.tokenizer = self.tokenizer;
        if let Some(json) = &self.kv_events_config {
            cfg.kv_events = Some(
                KvEventsConfig::from_json(json)
                    .map_err(|e| SimCliError::KvEvents(e.to_string()))?,
            );
        }
        cfg.kv_pool = self.kv_pool.config();
        cfg.show_hidden_metrics_for_version = self.show_hidden_metrics_for_version;
        cfg.faults = FaultConfig {
            fail_rate: self.faults.fail_rate,
            hang_rate: self.faults.hang_rate,
            die_mid_stream_after: self.faults.die_mid_stream_after,
            startup_delay,
        };
        Ok((cfg, SocketAddr::new(self.host, self.port)))
    }
}

/// Builds the configuration, then serves it until the process is stopped.
pub(crate) fn run(mut args: SimArgs) -> Result<(), SimCliError> {
    let action = args.action.take();
    let (config, addr) = args.config()?;
    if let Some(SimAction::Tokenizer(TokenizerAction::Export { dir })) = action {
        brix_sim_http::export_tokenizer(&dir, config.engine.max_model_len)?;
        println!("wrote the brix sim tokenizer to {}", dir.display());
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(SimCliError::Runtime)?;
    runtime.block_on(brix_sim_http::serve(config, addr))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        args: SimArgs,
    }

    fn parse(flags: &[&str]) -> Result<SimConfig, String> {
        let argv = std::iter::once("brix-sim").chain(flags.iter().copied());
        let w = Wrap::try_parse_from(argv).map_err(|e| e.to_string())?;
        w.args.config().map(|(c, _)| c).map_err(|e| e.to_string())
    }

    #[test]
    fn cold_start_is_weights_over_throughput_plus_init_and_startup_delay_overrides() {
        let c = parse(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.faults.startup_delay, Duration::ZERO);
        let c = parse(&["--cold-start", "--load-gbps", "2", "--engine-init-s", "3"])
            .unwrap_or_else(|e| panic!("{e}"));
        let want = c.model.weight_bytes_per_gpu() / 2e9 + 3.0;
        assert!((c.faults.startup_delay.as_secs_f64() - want).abs() < 1e-6);
        let c = parse(&["--cold-start"]).unwrap_or_else(|e| panic!("{e}"));
        let want = c
            .model
            .cold_start_s(brix_sim::DEFAULT_LOAD_GBPS, brix_sim::DEFAULT_ENGINE_INIT_S);
        assert!((c.faults.startup_delay.as_secs_f64() - want).abs() < 1e-6);
        let c = parse(&["--cold-start", "--startup-delay", "2"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.faults.startup_delay, Duration::from_secs(2));
        assert!(parse(&["--cold-start", "--load-gbps", "0"]).is_err());
        assert!(parse(&["--load-gbps", "2"]).is_err(), "needs --cold-start");
    }

    #[test]
    fn unset_flags_keep_vllm_defaults() {
        let c = parse(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.served_model_name, c.model.hf_id);
        assert_eq!(c.engine, EngineConfig::vllm_defaults(&c.model, &c.gpu));
    }

    #[test]
    fn flags_override_and_follow_vllm_rules() {
        let c = parse(&[
            "--gpu",
            "H200",
            "--max-loras",
            "4",
            "--enable-lora",
            "--no-enable-prefix-caching",
            "--output-len",
            "fixed:7",
            "--lora-modules",
            "a=/p/a",
            "b=/p/b",
            "--seed",
            "3",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.engine.max_loras, c.engine.max_cpu_loras), (4, 4));
        assert!(c.engine.enable_lora && !c.engine.enable_prefix_caching);
        assert_eq!(c.engine.output_len, OutputLen::Fixed(7));
        assert_eq!(c.lora_modules.len(), 2);
        assert_eq!(c.engine.seed, 3);
    }

    #[test]
    fn kv_events_flags_parse_as_vllm_takes_them() {
        let json = r#"{"enable_kv_cache_events": true, "endpoint": "tcp://*:5557", "topic": "kv"}"#;
        let c = parse(&[
            "--kv-events-config",
            json,
            "--prefix-caching-hash-algo",
            "sha256_cbor",
            "--python-hash-seed",
            "0",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let k = c.kv_events.unwrap_or_else(|| panic!("no kv events config"));
        assert!(k.publishes() && k.topic == "kv");
        assert_eq!(c.engine.prefix_caching_hash_algo, HashAlgo::Sha256Cbor);
        assert_eq!(c.engine.hash_seed.as_deref(), Some("0"));
        let c = parse(&["--prefix-caching-hash-algo", "sha256"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.engine.prefix_caching_hash_algo, HashAlgo::Builtin);
        assert!(parse(&["--kv-events-config", "{\"endpont\": 1}"]).is_err());
        assert!(parse(&["--prefix-caching-hash-algo", "md5"]).is_err());
    }

    #[test]
    fn tokenizer_flag_and_export_subcommand_parse() {
        let c = parse(&["--tokenizer", "/models/llama"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.tokenizer, Some(PathBuf::from("/models/llama")));
        assert_eq!(parse(&[]).map(|c| c.tokenizer), Ok(None));
        let argv = [
            "brix-sim",
            "--max-model-len",
            "4096",
            "tokenizer",
            "export",
            "/tmp/t",
        ];
        let w = Wrap::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            w.args.action,
            Some(SimAction::Tokenizer(TokenizerAction::Export { ref dir })) if dir.as_os_str() == "/tmp/t"
        ));
        assert!(Wrap::try_parse_from(["brix-sim", "tokenizer", "export"]).is_err());
    }

    #[test]
    fn kv_pool_flags_build_the_pool_settings() {
        assert_eq!(parse(&[]).map(|c| c.kv_pool), Ok(None));
        let c = parse(&[
            "--kv-pool",
            "10.0.0.1:7400,10.0.0.2:7400",
            "--kv-pool-transport",
            "shm",
            "--kv-pool-chunk-tokens",
            "512",
            "--kv-pool-value-bytes",
            "4096",
            "--kv-pool-token",
            "s3cret",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let p = c.kv_pool.unwrap_or_else(|| panic!("no pool"));
        assert_eq!(p.servers, ["10.0.0.1:7400", "10.0.0.2:7400"]);
        assert_eq!(
            (p.transport, p.chunk_tokens, p.value_bytes),
            (Transport::Shm, 512, Some(4096))
        );
        assert!(
            !format!("{p:?}").contains("s3cret"),
            "the token is never printed"
        );
        assert!(parse(&["--kv-pool", "a:1", "--kv-pool-transport", "rdma"]).is_err());
    }

    #[test]
    fn bad_flags_are_errors_not_panics() {
        for flags in [
            &["--gpu", "B9000"][..],
            &["--output-len", "poisson:3"],
            &["--lora-modules", "nopath"],
            &["--startup-delay", "-1"],
        ] {
            assert!(parse(flags).is_err(), "{flags:?}");
        }
    }
}
