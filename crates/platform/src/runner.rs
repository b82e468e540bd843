//! One start of a replica's engine: a simulated engine served in process, or an engine command
//! as a child process. A runner ends when its engine exits (a crash) or when it is stopped.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use brix_api::{CommandEngine, EngineSpec, SimEngine};
use brix_sim::{Catalog, EngineSettings, OutputLen};
use brix_sim_http::{KvPoolConfig, SimConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::kvpool::{KV_POOL_PLACEHOLDER, kv_pool_flags};
use crate::process::{Process, ProcessSpec};

/// A running engine.
pub(crate) enum Runner {
    /// `brix sim` in this process; its task owns every connection. `None` once the task has
    /// ended and been reaped (a finished `JoinHandle` must not be polled again).
    Sim(Option<JoinHandle<()>>),
    /// An engine command in its own process group.
    Command(Box<Process>),
}

impl Runner {
    /// Starts the model's engine on `port` (0 picks one), publishing KV events on `kv`'s
    /// ports (events, replay; 0 picks them) when given; returns the runner and its ports.
    pub(crate) async fn start(
        model: &str,
        engine: &EngineSpec,
        port: u16,
        kv: Option<(u16, u16)>,
        pool: Option<&KvPoolConfig>,
        log: &Path,
    ) -> Result<(Self, u16, Option<(u16, u16)>), String> {
        let kv = match kv {
            None => None,
            Some((events, replay)) => Some((
                if events == 0 {
                    free_port().await?
                } else {
                    events
                },
                if replay == 0 {
                    free_port().await?
                } else {
                    replay
                },
            )),
        };
        let (runner, port) = Self::start_on(model, engine, port, kv, pool, log).await?;
        Ok((runner, port, kv))
    }

    async fn start_on(
        model: &str,
        engine: &EngineSpec,
        port: u16,
        kv: Option<(u16, u16)>,
        pool: Option<&KvPoolConfig>,
        log: &Path,
    ) -> Result<(Self, u16), String> {
        match engine {
            EngineSpec::Sim(sim) => {
                let mut cfg = sim_config(model, sim)?;
                cfg.kv_pool = pool.cloned();
                if let Some((events, replay)) = kv {
                    let json = kv_events_config(events, replay);
                    cfg.kv_events = Some(
                        brix_kvevents::KvEventsConfig::from_json(&json)
                            .map_err(|e| format!("kv events config: {e}"))?,
                    );
                }
                let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
                    .await
                    .map_err(|e| format!("binding 127.0.0.1:{port}: {e}"))?;
                let port = listener.local_addr().map_err(|e| e.to_string())?.port();
                let task = brix_sim_http::spawn_owned(&cfg, listener).map_err(|e| e.to_string())?;
                Ok((Self::Sim(Some(task)), port))
            }
            EngineSpec::Command(cmd) => {
                let port = match port {
                    0 => free_port().await?,
                    p => p,
                };
                let process = Process::spawn(&process_spec(cmd, model, port, kv, pool, log))
                    .map_err(|e| e.to_string())?;
                Ok((Self::Command(Box::new(process)), port))
            }
        }
    }

    /// The child's pid, for command replicas.
    pub(crate) fn pid(&self) -> Option<u32> {
        match self {
            Self::Sim(_) => None,
            Self::Command(p) => Some(p.pid()),
        }
    }

    /// Resolves when the engine exits on its own, saying how (cancel-safe).
    pub(crate) async fn exited(&mut self) -> String {
        match self {
            Self::Sim(slot) => {
                let Some(task) = slot.as_mut() else {
                    return std::future::pending().await;
                };
                let ended = task.await;
                *slot = None;
                match ended {
                    Ok(()) => "the simulated engine stopped serving".into(),
                    Err(e) => format!("the simulated engine failed: {e}"),
                }
            }
            Self::Command(p) => {
                let status = match p.exited().await {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                };
                let tail = p.log_tail(2000);
                format!("engine command {status}; log tail:\n{}", tail.trim_end())
            }
        }
    }

    /// Stops the engine: aborts a simulated one, SIGTERM then SIGKILL for a command. Safe
    /// after [`Runner::exited`] returned.
    pub(crate) async fn stop(mut self, grace: Duration) {
        match &mut self {
            Self::Sim(slot) => {
                if let Some(task) = slot.take() {
                    task.abort();
                    let _ = task.await;
                }
            }
            Self::Command(p) => {
                if let Err(e) = p.stop(grace).await {
                    tracing::warn!(pid = p.pid(), error = %e, "stopping an engine command");
                }
            }
        }
    }
}

impl Drop for Runner {
    /// A runner dropped without [`Runner::stop`] (its supervisor panicked) still takes its
    /// simulated engine down, so the port is free for the restart. Commands kill their own
    /// process group on drop.
    fn drop(&mut self) {
        if let Self::Sim(Some(task)) = self {
            task.abort();
        }
    }
}

fn process_spec(
    cmd: &CommandEngine,
    model: &str,
    port: u16,
    kv: Option<(u16, u16)>,
    pool: Option<&KvPoolConfig>,
    log: &Path,
) -> ProcessSpec {
    let flag = kv.map_or_else(String::new, |(events, replay)| {
        format!("--kv-events-config '{}'", kv_events_config(events, replay))
    });
    let mut env = cmd.env.clone();
    if let Some(token) = pool.and_then(|p| p.token.clone()) {
        env.insert("BRIX_KV_POOL_TOKEN".into(), token);
    }
    ProcessSpec {
        command: cmd
            .render(port, model)
            .replace(KV_EVENTS_PLACEHOLDER, &flag)
            .replace(
                KV_POOL_PLACEHOLDER,
                &pool.map(kv_pool_flags).unwrap_or_default(),
            ),
        env,
        log_path: log.to_path_buf(),
    }
}

/// Where a `command:` engine's line takes its `--kv-events-config` flag (empty when the model
/// publishes no KV events).
pub const KV_EVENTS_PLACEHOLDER: &str = "{kv_events_config}";

/// vLLM's `--kv-events-config` JSON (its `KVEventsConfig` keys) for a ZMQ publisher on
/// `events` with its replay socket on `replay`, all interfaces, every topic.
pub fn kv_events_config(events: u16, replay: u16) -> String {
    serde_json::json!({
        "enable_kv_cache_events": true,
        "publisher": "zmq",
        "endpoint": format!("tcp://*:{events}"),
        "replay_endpoint": format!("tcp://*:{replay}"),
        "topic": "",
    })
    .to_string()
}

/// A port free now on 127.0.0.1 (the command binds it itself, a moment later).
async fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("finding a free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// The `brix sim` configuration a `sim:` engine block describes.
pub fn sim_config(model: &str, sim: &SimEngine) -> Result<SimConfig, String> {
    let catalog = Catalog::builtin();
    let profile = catalog
        .model(&sim.model_profile)
        .map_err(|e| e.to_string())?;
    let gpu = catalog.gpu(&sim.gpu).map_err(|e| e.to_string())?;
    let mut cfg = SimConfig::new(profile.clone(), gpu.clone());
    cfg.served_model_name = model.to_string();
    let output_len = match &sim.output_len {
        Some(s) => Some(s.parse::<OutputLen>().map_err(|e| e.to_string())?),
        None => None,
    };
    cfg.engine = EngineSettings {
        max_num_seqs: sim.max_num_seqs,
        max_model_len: sim.max_model_len,
        max_loras: sim.max_loras,
        max_cpu_loras: sim.max_cpu_loras,
        max_lora_rank: sim.max_lora_rank,
        enable_lora: sim.enable_lora,
        num_gpu_blocks_override: sim.num_gpu_blocks_override,
        seed: sim.seed,
        output_len,
        ..EngineSettings::default()
    }
    .apply(cfg.engine);
    // `startup_delay_s`, else the cold-start model (weights / load throughput + init), else 0.
    cfg.faults.startup_delay =
        std::time::Duration::try_from_secs_f64(sim.startup_s(&cfg.model)).unwrap_or_default();
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The supervisor's sequence after a simulated engine ends on its own: `exited`, then
    /// `stop`. Awaiting the finished task twice panicked and killed the supervisor.
    #[tokio::test]
    async fn a_finished_sim_task_is_reaped_once() {
        let mut runner = Runner::Sim(Some(tokio::spawn(async {})));
        let why = runner.exited().await;
        assert!(why.contains("stopped serving"), "{why}");
        // A second wait does not resolve (nothing left to end) and does not panic.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), runner.exited())
                .await
                .is_err()
        );
        runner.stop(Duration::ZERO).await;
    }
}
