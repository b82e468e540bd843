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
/// Port of a pod's `/metrics` when neither the source nor the label gives one (vLLM's).
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

/// `host:port` of a ready pod's metrics: its IP, on the `model.aibrix.ai/metric-port` label
/// or 8000 (a source's own `port` replaces it when read).
pub(super) fn address(pod: &Pod) -> Option<String> {
    let ip: IpAddr = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
    let port = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(METRIC_PORT_LABEL))
        .and_then(|p| p.trim().parse::<u16>().ok())
        .filter(|p| *p > 0)
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
