//! Where pods come from, behind one narrow trait: a watch channel of the current targets.
//!
//! Two sources today: the AIBrix standalone endpoints file (polled for changes; a broken edit
//! keeps the last good set and logs why) and an in-process [`Registry`] that the local
//! platform fills. Kubernetes pod discovery (label `model.aibrix.ai/name`) plugs in as one more
//! implementation; routing never sees which source it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::sync::watch;

/// One engine endpoint serving one model.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    /// Pod name (the `target-pod` response header).
    pub name: String,
    /// `host:port` to proxy to (the `target-pod-ip` response header).
    pub address: String,
    /// Where the engine publishes its KV events, when it was told to (`brix up` allocates
    /// the ports); None: the model's `kv_events` ports on the pod's host, if configured.
    pub kv_events: Option<KvEndpoints>,
    /// `host:port` whose `/metrics` the probe scrapes instead of `address`'s: a runtime
    /// sidecar beside the engine re-exporting its metrics under the standard names (`brix up`
    /// sets it for replicas with `runtime:`); None: the engine's own `/metrics`.
    pub metrics: Option<String>,
}

/// An engine's KV-event sockets (vLLM's `--kv-events-config` `endpoint` and
/// `replay_endpoint`, as a subscriber connects to them).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvEndpoints {
    /// The PUB socket, `tcp://host:port`.
    pub events: String,
    /// The replay ROUTER socket, `tcp://host:port`; None when the engine keeps no replay buffer.
    #[serde(default)]
    pub replay: Option<String>,
}

/// Model name → the endpoints serving it.
pub type Targets = BTreeMap<String, Vec<Target>>;

/// A source of pods: the latest set, and a way to hear about changes.
pub trait Discovery: Send + Sync + 'static {
    /// A receiver whose value is the current targets; it changes whenever the source does.
    fn watch(&self) -> watch::Receiver<Arc<Targets>>;
}

/// Targets set by code in the same process (the local platform, tests).
#[derive(Debug)]
pub struct Registry {
    tx: watch::Sender<Arc<Targets>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self {
            tx: watch::Sender::new(Arc::default()),
        }
    }

    /// Replaces the endpoints of `model`. An empty list keeps the model known with no pod
    /// (requests get 503, not 400), as while all its replicas restart.
    pub fn set(&self, model: &str, targets: Vec<Target>) {
        self.tx.send_modify(|all| {
            let mut next = (**all).clone();
            next.insert(model.to_string(), targets);
            *all = Arc::new(next);
        });
    }

    /// Forgets `model` altogether (requests for it get 400 `model_not_found`).
    pub fn remove(&self, model: &str) {
        self.tx.send_if_modified(|all| {
            if !all.contains_key(model) {
                return false;
            }
            let mut next = (**all).clone();
            next.remove(model);
            *all = Arc::new(next);
            true
        });
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Discovery for Registry {
    fn watch(&self) -> watch::Receiver<Arc<Targets>> {
        self.tx.subscribe()
    }
}

/// Why an endpoints file was refused.
#[derive(Debug, thiserror::Error)]
pub enum EndpointsError {
    /// Unreadable.
    #[error("reading {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not the AIBrix standalone format.
    #[error("parsing {path}: {source}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: serde_yaml_ng::Error,
    },
    /// Parsed, but inconsistent.
    #[error("{path}: {why}")]
    Invalid {
        /// Which file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointsFile {
    models: Vec<ModelEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    name: String,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "AIBrix's field; the engine kind is read from the pod"
    )]
    engine: Option<String>,
    #[serde(default)]
    endpoints: Vec<EndpointEntry>,
}

/// `"host:port"`, or `{name, address}` to give the pod a name of its own (and, Brix's own
/// additions, `kv_events: {events, replay}` where its engine publishes KV events, `metrics:
/// host:port` where its metrics are scraped, e.g. a runtime sidecar).
#[derive(Deserialize)]
#[serde(untagged)]
enum EndpointEntry {
    Address(String),
    Named {
        name: String,
        address: String,
        #[serde(default)]
        kv_events: Option<KvEndpoints>,
        #[serde(default)]
        metrics: Option<String>,
    },
}

/// Parses an endpoints file's text.
pub fn parse_endpoints(path: &Path, text: &str) -> Result<Targets, EndpointsError> {
    let file: EndpointsFile =
        serde_yaml_ng::from_str(text).map_err(|source| EndpointsError::Parse {
            path: path.into(),
            source,
        })?;
    let invalid = |why: String| EndpointsError::Invalid {
        path: path.into(),
        why,
    };
    let mut out = Targets::new();
    for m in file.models {
        if m.name.trim().is_empty() {
            return Err(invalid("a model has an empty name".into()));
        }
        let mut targets = Vec::with_capacity(m.endpoints.len());
        for e in m.endpoints {
            let (name, address, kv_events, metrics) = match e {
                EndpointEntry::Address(a) => (a.replace([':', '.'], "-"), a, None, None),
                EndpointEntry::Named {
                    name,
                    address,
                    kv_events,
                    metrics,
                } => (name, address, kv_events, metrics),
            };
            for a in std::iter::once(&address).chain(metrics.as_ref()) {
                let port_ok = a
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !port_ok {
                    return Err(invalid(format!(
                        "model '{}': endpoint '{a}' is not host:port",
                        m.name
                    )));
                }
            }
            targets.push(Target {
                name,
                address,
                kv_events,
                metrics,
            });
        }
        targets.sort();
        targets.dedup();
        if out.insert(m.name.clone(), targets).is_some() {
            return Err(invalid(format!("model '{}' is listed twice", m.name)));
        }
    }
    Ok(out)
}

/// The endpoints file, re-read whenever its modification time or size changes.
#[derive(Debug)]
pub struct StaticFile {
    rx: watch::Receiver<Arc<Targets>>,
}

impl StaticFile {
    /// Reads `path` now (an error here stops start-up) and polls it every `every` on the
    /// current tokio runtime; a later broken edit keeps the last good targets.
    pub fn watch_file(path: PathBuf, every: Duration) -> Result<Self, EndpointsError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| EndpointsError::Read {
                path: path.into(),
                source,
            })
        };
        let first = parse_endpoints(&path, &read(&path)?)?;
        let (tx, rx) = watch::channel(Arc::new(first));
        let stamp = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        };
        let mut last = stamp(&path);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if tx.is_closed() {
                    return;
                }
                let now = stamp(&path);
                if now == last {
                    continue;
                }
                last = now;
                match read(&path).and_then(|t| parse_endpoints(&path, &t)) {
                    Ok(targets) => {
                        tracing::info!(path = %path.display(), models = targets.len(), "endpoints file reloaded");
                        tx.send_if_modified(|cur| {
                            let changed = **cur != targets;
                            *cur = Arc::new(targets);
                            changed
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "endpoints file change ignored"),
                }
            }
        });
        Ok(Self { rx })
    }
}

impl Discovery for StaticFile {
    fn watch(&self) -> watch::Receiver<Arc<Targets>> {
        self.rx.clone()
    }
}

/// Test targets: each model's pods by address, named by their address, without KV events.
#[cfg(test)]
pub(crate) fn targets(spec: &[(&str, &[&str])]) -> Targets {
    spec.iter()
        .map(|(m, addrs)| {
            let ts = addrs
                .iter()
                .map(|a| Target {
                    name: a.to_string(),
                    address: a.to_string(),
                    kv_events: None,
                    metrics: None,
                })
                .collect();
            (m.to_string(), ts)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_file_table() {
        let p = Path::new("e.yaml");
        let ok = parse_endpoints(
            p,
            "models:\n  - name: llama\n    endpoints: [\"127.0.0.1:8001\", {name: b, address: \"h:9\", \
             kv_events: {events: \"tcp://h:5557\"}, metrics: \"h:8080\"}]\n",
        )
        .expect("valid");
        assert_eq!(
            ok["llama"],
            vec![
                Target {
                    name: "127-0-0-1-8001".into(),
                    address: "127.0.0.1:8001".into(),
                    kv_events: None,
                    metrics: None,
                },
                Target {
                    name: "b".into(),
                    address: "h:9".into(),
                    kv_events: Some(KvEndpoints {
                        events: "tcp://h:5557".into(),
                        replay: None,
                    }),
                    metrics: Some("h:8080".into()),
                },
            ]
        );
        for bad in [
            "models:\n  - name: a\n    endpoints: [\"nohost\"]\n",
            "models:\n  - name: a\n    endpoints: [{name: b, address: \"h:1\", metrics: \"h\"}]\n",
            "models:\n  - name: a\n  - name: a\n",
            "models:\n  - name: ''\n",
            "modls: []\n",
        ] {
            assert!(parse_endpoints(p, bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_endpoints_file_is_watched_and_a_broken_edit_keeps_the_last_good_set() {
        let path = std::env::temp_dir().join(format!("brix-endpoints-{}.yaml", std::process::id()));
        let write = |text: &str| std::fs::write(&path, text).expect("temp file");
        write("models:\n  - name: a\n    endpoints: [\"h:1\"]\n");
        let file = StaticFile::watch_file(path.clone(), Duration::from_millis(10)).expect("valid");
        let mut rx = file.watch();
        assert_eq!(rx.borrow_and_update()["a"].len(), 1);
        // A different size, so the change shows even where mtime is coarse.
        write("models:\n  - name: a\n    endpoints: [\"h:1\", \"h:2\"]\n  - name: b\n");
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("reloaded in time")
            .expect("watcher alive");
        assert_eq!(rx.borrow_and_update()["a"].len(), 2);
        write("models: [oops");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !rx.has_changed().expect("watcher alive"),
            "a broken edit is ignored"
        );
        assert_eq!(rx.borrow()["a"].len(), 2);
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn registry_publishes_changes() {
        let r = Registry::new();
        let mut rx = r.watch();
        r.set(
            "m",
            vec![Target {
                name: "a".into(),
                address: "x:1".into(),
                kv_events: None,
                metrics: None,
            }],
        );
        rx.changed().await.expect("sender alive");
        assert_eq!(rx.borrow()["m"].len(), 1);
        r.set("m", vec![]);
        assert!(rx.borrow_and_update()["m"].is_empty());
        r.remove("m");
        assert!(rx.borrow_and_update().is_empty());
    }
}
