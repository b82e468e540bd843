//! The target's pods and the metric readings: pods listed by the scale's `status.selector`,
//! the ready ones scraped through `brix-platform`'s reader (the same code `brix up` uses:
//! 2 s timeouts, 4 MiB bodies, AIBrix's metric aliases). A failed read is missing data, and
//! its reason is kept for the `ScalingActive` condition.

use std::net::IpAddr;

use brix_autoscaler::{Autoscaler, Reading};
use brix_platform::autoscale::source::{Feed, HttpClient};
use k8s_openapi::api::core::v1::Pod;

/// Pod label naming the port of a pod's `/metrics` when the source gives none.
pub const METRIC_PORT_LABEL: &str = "model.aibrix.ai/metric-port";
/// The pod label with the engine's serving port (gateway discovery's), where vLLM also serves
/// `/metrics`.
pub const PORT_LABEL: &str = "model.aibrix.ai/port";
/// Port of a pod's `/metrics` when neither the source nor a label gives one (vLLM's).
pub const DEFAULT_METRIC_PORT: u16 = 8000;

/// Whether `pod` takes traffic: `Ready=True`, an IP, not being deleted.
pub(super) fn is_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    pod.metadata.deletion_timestamp.is_none()
        && status
            .and_then(|s| s.pod_ip.as_deref())
            .is_some_and(|ip| !ip.is_empty())
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `host:port` of a ready pod's metrics: its IP, on the `model.aibrix.ai/metric-port` label,
/// else the `model.aibrix.ai/port` label, else 8000 (a source's own `port` replaces it when
/// read).
pub(super) fn address(pod: &Pod) -> Option<String> {
    let ip: IpAddr = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
    let labels = pod.metadata.labels.as_ref();
    let label = |key: &str| {
        labels
            .and_then(|l| l.get(key))
            .and_then(|p| p.trim().parse::<u16>().ok())
            .filter(|p| *p > 0)
    };
    let port = label(METRIC_PORT_LABEL)
        .or_else(|| label(PORT_LABEL))
        .unwrap_or(DEFAULT_METRIC_PORT);
    Some(match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    })
}

/// Reads every source once at `now` into `scaler`; returns why reads failed, one line per
/// source that failed (empty when all were read).
pub(super) async fn read(
    scaler: &mut Autoscaler,
    feeds: &[Feed],
    http: &HttpClient,
    ready: &[String],
    now: f64,
) -> Vec<String> {
    let mut failures = Vec::new();
    let metrics: Vec<String> = scaler
        .policy()
        .sources
        .iter()
        .map(|s| s.metric.clone())
        .collect();
    for (i, feed) in feeds.iter().enumerate() {
        let metric = metrics.get(i).map_or("?", String::as_str);
        match feed.read(http, ready).await {
            None => {
                if matches!(feed, Feed::Pods { .. }) {
                    failures.push(format!("{metric}: no ready pod to scrape"));
                }
            }
            Some(reading) => {
                match &reading {
                    Reading::Failed(why) => failures.push(format!("{metric}: {why}")),
                    Reading::Pods(values) => {
                        let missing = values.iter().filter(|v| v.is_none()).count();
                        if missing > 0 {
                            failures.push(format!(
                                "{metric}: {missing} of {} ready pods gave no value",
                                values.len()
                            ));
                        }
                    }
                    Reading::Total(_) => {}
                }
                scaler.observe(i, reading, now);
            }
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ip: &str, labels: &[(&str, &str)], ready: &str) -> Pod {
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v)))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": labels},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": ready}]}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn addresses_follow_the_labels_and_bracket_ipv6() {
        let both = pod(
            "10.0.0.7",
            &[(METRIC_PORT_LABEL, "9100"), (PORT_LABEL, "8080")],
            "True",
        );
        assert_eq!(address(&both).as_deref(), Some("10.0.0.7:9100"));
        let serving = pod("10.0.0.7", &[(PORT_LABEL, "8080")], "True");
        assert_eq!(address(&serving).as_deref(), Some("10.0.0.7:8080"));
        let bad = pod("fd00::1", &[(METRIC_PORT_LABEL, "http")], "True");
        assert_eq!(address(&bad).as_deref(), Some("[fd00::1]:8000"));
        assert_eq!(address(&pod("not-an-ip", &[], "True")), None);
    }

    #[test]
    fn only_ready_pods_with_an_ip_count() {
        assert!(is_ready(&pod("10.0.0.7", &[], "True")));
        assert!(!is_ready(&pod("10.0.0.7", &[], "False")));
        assert!(!is_ready(&pod("", &[], "True")));
    }
}
