//! `brix kubernetes ...` and `brix gateway --kubernetes`: the CRDs and RBAC rules the Helm
//! chart ships, the controller manager, and the gateway over the pods watch (feature
//! `kubernetes`).
//!
//! The API client comes from the in-cluster service account, else from `KUBECONFIG` (or
//! `~/.kube/config`), as kubectl finds it; with neither the command fails at once, saying so.

use std::net::SocketAddr;
use std::time::Duration;

use brix_gateway::GatewayConfig;
use brix_k8s::Scope;
use brix_k8s::lease::LeaseConfig;
use brix_k8s::manager::{self, ManagerConfig};
use clap::{Args, Subcommand, ValueEnum};
use tokio::net::TcpListener;

/// Flags of `brix kubernetes`.
#[derive(Debug, Args)]
pub(crate) struct KubernetesArgs {
    #[command(subcommand)]
    command: KubeCommand,
}

#[derive(Debug, Subcommand)]
enum KubeCommand {
    /// Print the CustomResourceDefinitions as YAML (the chart's `crds/`).
    Crds,
    /// Print the API verbs a component uses as JSON: {"<group>": {"<resource>": [verbs]}}.
    Rbac {
        /// Which component.
        #[arg(long)]
        component: Component,
    },
    /// Run the controller manager: PodAutoscaler, ModelAdapter, RayClusterFleet controllers.
    Controllers(ControllersArgs),
}

/// The deployable components.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Component {
    Controllers,
    Gateway,
}

/// Flags of `brix kubernetes controllers`.
#[derive(Debug, Args)]
struct ControllersArgs {
    /// Namespace to watch; every namespace when unset.
    #[arg(long)]
    namespace: Option<String>,
    /// `*` or a comma-separated list of podautoscaler, modeladapter, rayclusterfleet.
    #[arg(long, default_value = "*")]
    controllers: String,
    /// Run the controllers only while holding the Lease (for more than one replica).
    #[arg(long)]
    leader_elect: bool,
    /// The Lease's name.
    #[arg(long, default_value = "brix-controller-manager")]
    lease_name: String,
    /// The Lease's namespace; default: this pod's namespace (POD_NAMESPACE, else the service
    /// account's), else --namespace, else `default`.
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's identity in the Lease; default: POD_NAME, else HOSTNAME.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Where `/healthz` and `/readyz` listen.
    #[arg(long, default_value = "0.0.0.0:8081")]
    health_listen: SocketAddr,
}

/// The service account's namespace file inside a pod.
const SA_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Runs `brix kubernetes ...`.
pub(crate) fn run(args: KubernetesArgs) -> Result<(), String> {
    match args.command {
        KubeCommand::Crds => emit(&brix_k8s::crd::yaml()),
        KubeCommand::Rbac { component } => {
            let name = match component {
                Component::Controllers => "controllers",
                Component::Gateway => "gateway",
            };
            let rules = brix_k8s::rbac::component(name)
                .ok_or_else(|| format!("unknown component {name}"))?;
            let text = serde_json::to_string_pretty(&rules).map_err(|e| e.to_string())?;
            emit(&format!("{text}\n"))
        }
        KubeCommand::Controllers(args) => controllers(args),
    }
}

/// Writes `text` to stdout; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("writing: {e}")),
        _ => Ok(()),
    }
}

fn controllers(args: ControllersArgs) -> Result<(), String> {
    let controllers = manager::parse_controllers(&args.controllers).map_err(|e| e.to_string())?;
    let leader_election = if args.leader_elect {
        let identity = args
            .identity
            .or_else(|| std::env::var("HOSTNAME").ok())
            .filter(|i| !i.is_empty())
            .ok_or(
                "--leader-elect needs an identity: set POD_NAME (the chart does) or --identity",
            )?;
        let namespace = args
            .lease_namespace
            .or_else(|| {
                std::fs::read_to_string(SA_NAMESPACE)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
            })
            .or_else(|| args.namespace.clone())
            .unwrap_or_else(|| "default".into());
        Some(LeaseConfig::new(&args.lease_name, &namespace, &identity))
    } else {
        None
    };
    let cfg = ManagerConfig {
        scope: Scope {
            namespace: args.namespace,
        },
        controllers,
        leader_election,
        health_listen: Some(args.health_listen),
    };
    runtime()?.block_on(async move {
        let client = client().await?;
        manager::run(client, cfg).await.map_err(|e| e.to_string())
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))
}

/// The API client: in-cluster config, else the kubeconfig; a clear error with neither.
async fn client() -> Result<kube::Client, String> {
    kube::Client::try_default().await.map_err(|e| {
        format!(
            "no Kubernetes cluster to talk to: neither the in-cluster service account \
             (KUBERNETES_SERVICE_HOST) nor a kubeconfig (KUBECONFIG or ~/.kube/config) could be \
             loaded ({e})"
        )
    })
}

/// `brix gateway --kubernetes`: the gateway with its pods and adapters from the API server
/// (namespace `namespace`, or all), serving until Ctrl-C or SIGTERM, then draining.
pub(crate) fn gateway(cfg: GatewayConfig, namespace: Option<String>) -> Result<(), String> {
    runtime()?.block_on(async move {
        let client = client().await?;
        let scope = Scope { namespace };
        let addr = cfg.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("binding {addr}: {e}"))?;
        let server = cfg.server.clone();
        let discovery = brix_k8s::discovery::KubeDiscovery::start(client.clone(), &scope);
        let (routes, handle) = brix_gateway::app_with_handle(cfg, &discovery)
            .await
            .map_err(|e| e.to_string())?;
        discovery.watch_adapters(client, &scope, handle.clone());
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        println!("brix gateway listening on http://{local}");
        let grace = Duration::from_secs_f64(server.shutdown_grace_s);
        brix_net::serve_router(listener, routes, server, brix_net::shutdown_signal()).await;
        handle.settle_within(grace).await;
        Ok(())
    })
}
