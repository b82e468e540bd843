//! The pods a ModelAdapter may go on: the label selector sent to the API server, readiness
//! (Ready for a while, not terminating, an IP), the engine's and the sidecar's addresses, and
//! the LoRA capacity from the engine's command line.

use brix_api::{MODEL_NAME_LABEL, ModelAdapter};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Label naming the engine's port on a pod (AIBrix's).
pub const PORT_LABEL: &str = "model.aibrix.ai/port";
/// The engine port when the pod has no [`PORT_LABEL`].
pub const DEFAULT_PORT: u16 = 8000;
/// Container name of AIBrix's runtime sidecar; loads go through it when a pod has one.
pub const SIDECAR_CONTAINER: &str = "aibrix-runtime";
/// The sidecar's port when its container declares none.
pub const SIDECAR_PORT: u16 = 8080;

/// One selected pod as the controller sees it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PodInfo {
    pub name: String,
    /// `status.podIP`, once it has one.
    pub ip: Option<String>,
    /// The engine's port ([`PORT_LABEL`], else [`DEFAULT_PORT`]).
    pub port: u16,
    /// `ip:port` of the engine; `None` before the pod has an IP.
    pub engine: Option<String>,
    /// `ip:port` of the runtime sidecar, when the pod has one.
    pub sidecar: Option<String>,
    /// Ready long enough, not terminating, with an IP: adapters may go here.
    pub candidate: bool,
    /// Resident adapters the engine keeps (`--max-cpu-loras`, at least `--max-loras`).
    pub max_loras: u32,
    pub max_cpu_loras: u32,
}

/// The `labelSelector` query for the adapter's pods: its `podSelector`, else the base
/// model's pods (`model.aibrix.ai/name=<baseModel>`).
pub(crate) fn selector(doc: &ModelAdapter) -> Result<String, String> {
    if let Some(sel) = &doc.spec.pod_selector {
        let s = sel.to_query();
        if !s.is_empty() {
            return Ok(s);
        }
    }
    match doc.target_model() {
        Some(base) => Ok(format!("{MODEL_NAME_LABEL}={base}")),
        None => Err(format!(
            "set spec.podSelector or spec.baseModel (pods labelled {MODEL_NAME_LABEL})"
        )),
    }
}

impl PodInfo {
    /// Reads a listed pod; `None` for one without a name.
    pub(crate) fn from_pod(pod: &Pod, now: Timestamp, ready_for: SignedDuration) -> Option<Self> {
        let name = pod.metadata.name.clone()?;
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty());
        let port = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(PORT_LABEL))
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or(DEFAULT_PORT);
        let containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.as_slice())
            .unwrap_or_default();
        let sidecar = containers
            .iter()
            .find(|c| c.name == SIDECAR_CONTAINER)
            .map(|c| {
                c.ports
                    .as_ref()
                    .and_then(|p| p.first())
                    .and_then(|p| u16::try_from(p.container_port).ok())
                    .unwrap_or(SIDECAR_PORT)
            });
        let command: Vec<&str> = containers
            .iter()
            .filter(|c| c.name != SIDECAR_CONTAINER)
            .flat_map(|c| c.command.iter().flatten().chain(c.args.iter().flatten()))
            .map(String::as_str)
            .collect();
        let (max_loras, max_cpu_loras, _) =
            brix_platform::adapters::command_lora_limits(&command.join(" "));
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let candidate = ip.is_some() && !terminating && ready_long_enough(pod, now, ready_for);
        let host = |ip: &str, port: u16| {
            if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            }
        };
        Some(Self {
            engine: ip.as_deref().map(|ip| host(ip, port)),
            sidecar: ip.as_deref().zip(sidecar).map(|(ip, p)| host(ip, p)),
            name,
            ip,
            port,
            candidate,
            max_loras,
            max_cpu_loras,
        })
    }
}

/// Whether the pod's Ready condition is True and has been for `ready_for` (a pod without a
/// transition time is taken as ready since long).
fn ready_long_enough(pod: &Pod, now: Timestamp, ready_for: SignedDuration) -> bool {
    let Some(ready) = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
    else {
        return false;
    };
    ready.status == "True"
        && ready
            .last_transition_time
            .as_ref()
            .is_none_or(|t| now.duration_since(t.0) >= ready_for)
}

#[cfg(test)]
mod tests {
    use super::*;
    use brix_api::LabelSelector;
    use serde_json::json;

    #[test]
    fn selectors_use_the_api_servers_syntax() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"model.aibrix.ai/name": "llama"},
            "matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["a", "b"]},
                {"key": "gpu", "operator": "Exists"},
                {"key": "old", "operator": "DoesNotExist"}]
        }))
        .expect("selector");
        assert_eq!(
            sel.to_query(),
            "model.aibrix.ai/name=llama,zone in (a,b),gpu,!old"
        );
    }

    #[test]
    fn a_pod_is_a_candidate_once_ready_long_enough() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "labels": {"model.aibrix.ai/port": "9000"}},
            "spec": {"containers": [
                {"name": "vllm", "args": ["--max-loras", "2", "--max-cpu-loras=4"]},
                {"name": "aibrix-runtime", "ports": [{"containerPort": 8081}]}]},
            "status": {"podIP": "10.0.0.5", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }))
        .expect("pod");
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let five = SignedDuration::from_secs(5);
        let early = PodInfo::from_pod(&pod, t0 + SignedDuration::from_secs(4), five).expect("pod");
        assert!(!early.candidate);
        let p = PodInfo::from_pod(&pod, t0 + five, five).expect("pod");
        assert!(p.candidate);
        assert_eq!(p.engine.as_deref(), Some("10.0.0.5:9000"));
        assert_eq!(p.sidecar.as_deref(), Some("10.0.0.5:8081"));
        assert_eq!((p.max_loras, p.max_cpu_loras), (2, 4));
    }
}
