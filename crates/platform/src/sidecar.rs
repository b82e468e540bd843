//! The runtime sidecar beside a replica (`engine.{sim,command}.runtime`): `brix up` serves
//! `brix_runtime::serve` in its own process on a 127.0.0.1 port per replica, started with the
//! replica's first engine start and stopped with the replica. The platform binds the port and
//! owns the task; what runs on it is a [`RuntimeLauncher`] the caller supplies, so this crate
//! does not link the runtime.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use brix_api::RuntimeSpec;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A boxed future the launcher returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What one replica's runtime is started with.
pub struct RuntimeLaunch {
    /// The replica (`<model>-<n>`).
    pub replica: String,
    /// The engine it fronts, `http://127.0.0.1:PORT`.
    pub engine_url: String,
    /// The fleet file's `runtime:` block.
    pub spec: RuntimeSpec,
    /// Its downloads (`$BRIX_STATE_DIR/runtime/<replica>`), created before the launch.
    pub models_dir: PathBuf,
    /// Bound on 127.0.0.1.
    pub listener: TcpListener,
    /// Resolves when the replica stops.
    pub shutdown: BoxFuture<()>,
}

/// Serves one runtime until its shutdown resolves (`brix up`: `brix_runtime::serve`).
pub type RuntimeLauncher =
    Arc<dyn Fn(RuntimeLaunch) -> BoxFuture<std::io::Result<()>> + Send + Sync>;

/// The runtime settings of the local platform.
#[derive(Clone)]
pub struct RuntimeConfig {
    /// Starts one runtime.
    pub launch: RuntimeLauncher,
    /// Each replica's downloads go under `<dir>/<replica>`.
    pub dir: PathBuf,
}

impl std::fmt::Debug for RuntimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeConfig")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A running runtime: its port and how to stop it.
pub(crate) struct Sidecar {
    pub(crate) port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Sidecar {
    /// Binds `127.0.0.1:port` (0 picks one) and launches the runtime for `replica` in front of
    /// the engine on `engine_port`.
    pub(crate) async fn start(
        cfg: &RuntimeConfig,
        spec: &RuntimeSpec,
        replica: &str,
        port: u16,
        engine_port: u16,
    ) -> Result<Self, String> {
        let models_dir = cfg.dir.join(replica);
        std::fs::create_dir_all(&models_dir)
            .map_err(|e| format!("runtime: creating {}: {e}", models_dir.display()))?;
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .map_err(|e| format!("runtime: binding 127.0.0.1:{port}: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("runtime: {e}"))?
            .port();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = (cfg.launch)(RuntimeLaunch {
            replica: replica.to_string(),
            engine_url: format!("http://127.0.0.1:{engine_port}"),
            spec: spec.clone(),
            models_dir,
            listener,
            shutdown: Box::pin(async move {
                let _ = stopped.await;
            }),
        });
        let id = replica.to_string();
        let task = tokio::spawn(async move {
            if let Err(e) = serving.await {
                tracing::error!(replica = %id, error = %e, "runtime sidecar stopped");
            }
        });
        tracing::info!(replica = %replica, port, "runtime sidecar listening");
        Ok(Self {
            port,
            stop: Some(stop),
            task,
        })
    }

    /// Asks the runtime to stop and waits for it (at most `grace`, then it is aborted).
    pub(crate) async fn stop(mut self, grace: Duration) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let abort = self.task.abort_handle();
        if tokio::time::timeout(grace.max(Duration::from_secs(1)), &mut self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

impl Drop for Sidecar {
    /// A sidecar dropped without [`Sidecar::stop`] (its supervisor panicked) still frees its port.
    fn drop(&mut self) {
        self.task.abort();
    }
}
