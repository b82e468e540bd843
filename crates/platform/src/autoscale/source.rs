//! Reading a PodAutoscaler's metric sources over HTTP: `pod` sources from every ready
//! replica's `/metrics`, `external` sources from an endpoint that answers either Prometheus
//! text or the Prometheus HTTP API's JSON (`/api/v1/query?query=...`), so both AIBrix's GPU
//! optimizer and a real Prometheus server work. `external` sources without an endpoint are the
//! gateway's own counts: the policy computes them from the load it is fed, nothing is read.
//!
//! Guardrails: every request has a 2 s timeout and a 4 MiB body limit; a failed scrape or an
//! absent metric is a missing value (`None` for that pod, [`Reading::Failed`] for an external
//! source, with the reason), never zero; a query that matches no series is a failure too, so
//! a broken query cannot scale a model to zero.

use std::sync::LazyLock;
use std::time::Duration;

use brix_api::{MetricSource, MetricSourceType, ProtocolType};
use brix_autoscaler::{Reading, metric_aliases};
use brix_metrics::Rules;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Longest wait for one scrape or query.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest body read from a metrics endpoint.
const MAX_BODY: usize = 4 << 20;

/// The HTTP client the scrapes share (`brix up`'s driver and the Kubernetes controller).
pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// A scrape client: no Nagle delay, connects bounded by [`SCRAPE_TIMEOUT`].
pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(SCRAPE_TIMEOUT));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Where one source's readings come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Feed {
    /// Each ready replica's `/metrics` (or `path`), on `port` if given.
    Pods {
        /// Names to look the metric up by.
        names: Vec<String>,
        /// Path on the replica.
        path: String,
        /// Port instead of the serving port.
        port: Option<u16>,
    },
    /// One URL answering Prometheus text or the Prometheus HTTP API.
    External {
        /// Names to look the metric up by (text answers).
        names: Vec<String>,
        /// The URL.
        url: String,
        /// Whether the answer is the HTTP API's JSON.
        api: bool,
    },
    /// The gateway's counts: the policy computes them from the load it is fed.
    Gateway,
}

impl Feed {
    /// The feed `source` describes; `Err` names the field a local fleet cannot serve.
    pub fn of(source: &MetricSource, at: &str) -> Result<Self, String> {
        let names = metric_names(&source.target_metric);
        let path = match source.path.as_deref() {
            None | Some("") => "/metrics".to_string(),
            Some(p) if p.starts_with('/') => p.to_string(),
            Some(p) => format!("/{p}"),
        };
        if source.protocol_type == Some(ProtocolType::Https) {
            return Err(format!(
                "{at}.protocolType: https is not available to brix up's scraper (no TLS in this build); use http"
            ));
        }
        match source.source_type() {
            MetricSourceType::Pod => {
                let port = match source.port.as_deref() {
                    None | Some("") => None,
                    Some(p) => Some(
                        p.trim()
                            .parse::<u16>()
                            .map_err(|_| format!("{at}.port: '{p}' is not a port number"))?,
                    ),
                };
                Ok(Self::Pods { names, path, port })
            }
            MetricSourceType::External | MetricSourceType::Domain => match &source.endpoint {
                None => Ok(Self::Gateway),
                Some(endpoint) => Ok(Self::External {
                    names,
                    api: path.starts_with("/api/v1/query"),
                    url: format!("http://{endpoint}{path}"),
                }),
            },
            other => Err(format!(
                "{at}.metricSourceType: {} is not available outside Kubernetes",
                format!("{other:?}").to_lowercase()
            )),
        }
    }

    /// One reading now: `None` for the gateway's counts (nothing to read), or for a pod
    /// source when no replica is ready (no pod, no sample). `ready` are the ready replicas'
    /// `host:port` (the source's `port`, if set, replaces theirs).
    pub async fn read(&self, client: &HttpClient, ready: &[String]) -> Option<Reading> {
        match self {
            Self::Gateway => None,
            Self::Pods { names, path, port } => {
                if ready.is_empty() {
                    return None;
                }
                let scrapes = ready.iter().map(|address| {
                    let address = match port {
                        Some(p) => with_port(address, *p),
                        None => address.clone(),
                    };
                    let url = format!("http://{address}{path}");
                    async move {
                        let body = get(client, &url).await.ok()?;
                        text_value(&String::from_utf8_lossy(&body), names)
                    }
                });
                Some(Reading::Pods(join_all(scrapes).await))
            }
            Self::External { names, url, api } => Some(match get(client, url).await {
                Err(why) => Reading::Failed(format!("{url}: {why}")),
                Ok(body) if *api => match api_value(&body) {
                    Ok(v) => Reading::Total(v),
                    Err(why) => Reading::Failed(format!("{url}: {why}")),
                },
                Ok(body) => match text_value(&String::from_utf8_lossy(&body), names) {
                    Some(v) => Reading::Total(v),
                    None => Reading::Failed(format!("{url}: no sample of {}", names[0])),
                },
            }),
        }
    }
}

/// Every engine's metric rules: a scrape does not know which engine a replica runs.
static RULES: LazyLock<Rules> = LazyLock::new(Rules::all_builtin);

/// The names a `targetMetric` is looked up by, first match wins (one source per reading): the
/// name as written, its standard name (`num_requests_running` -> `aibrix:num_requests_running`,
/// what a `brix runtime` sidecar exports), every engine's name for that quantity (vLLM,
/// SGLang, TRT-LLM), then the older vLLM aliases.
pub(crate) fn metric_names(target: &str) -> Vec<String> {
    let aliases = metric_aliases(target);
    let bare = target.rsplit_once(':').map_or(target, |(_, b)| b);
    let standard = aliases
        .iter()
        .find_map(|n| RULES.canonical(n))
        .or_else(|| RULES.canonical(&format!("aibrix:{bare}")));
    let mut out = vec![target.to_string()];
    let mut push = |s: &str| {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    };
    if let Some(standard) = standard {
        push(standard);
        RULES.sources_of(standard).for_each(&mut push);
    }
    aliases.iter().for_each(|a| push(a));
    out
}

/// Runs the futures concurrently, results in order.
async fn join_all<F: std::future::Future<Output = Option<f64>>>(
    futures: impl Iterator<Item = F>,
) -> Vec<Option<f64>> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out = vec![None; set.len()];
    let mut pending: Vec<(usize, _)> = set.into_iter().enumerate().collect();
    // Poll all of them together; each is bounded by SCRAPE_TIMEOUT.
    std::future::poll_fn(|cx| {
        pending.retain_mut(|(i, f)| match f.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => {
                out[*i] = v;
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out
}

/// `host:port` with the port replaced.
fn with_port(address: &str, port: u16) -> String {
    match address.rsplit_once(':') {
        Some((host, _)) => format!("{host}:{port}"),
        None => format!("{address}:{port}"),
    }
}

/// GETs `url` within [`SCRAPE_TIMEOUT`], reading at most [`MAX_BODY`].
async fn get(client: &HttpClient, url: &str) -> Result<Bytes, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("bad url: {e}"))?;
    let fetch = async {
        let resp = client.get(uri).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        // The HTTP API answers errors with 4xx/5xx and a JSON body worth reading.
        if !status.is_success() && !body.starts_with(b"{") {
            return Err(format!("status {status}"));
        }
        Ok(body)
    };
    tokio::time::timeout(SCRAPE_TIMEOUT, fetch)
        .await
        .map_err(|_| format!("no answer within {} s", SCRAPE_TIMEOUT.as_secs()))?
}

/// The metric's value in a Prometheus text exposition: the sum over its series of the first
/// of `names` that has any finite sample; `None` when none has.
pub(crate) fn text_value(text: &str, names: &[String]) -> Option<f64> {
    names.iter().find_map(|name| {
        let mut sum = None;
        for s in text.lines().filter_map(brix_router::prom::sample) {
            if s.name == name && s.value.is_finite() {
                sum = Some(sum.unwrap_or(0.0) + s.value);
            }
        }
        sum
    })
}

/// The value of a Prometheus HTTP API answer: a scalar, or the sum of an instant vector's
/// values. An error answer, an empty vector or a value that is not a finite number is an
/// error that says so.
pub(crate) fn api_value(body: &[u8]) -> Result<f64, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not a Prometheus API answer: {e}"))?;
    if v["status"] != "success" {
        let kind = v["errorType"].as_str().unwrap_or("error");
        let why = v["error"].as_str().unwrap_or("no error text");
        return Err(format!("query failed ({kind}): {why}"));
    }
    let number = |pair: &serde_json::Value| -> Result<f64, String> {
        let x = pair[1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or_else(|| format!("value {pair} is not [time, \"number\"]"))?;
        if x.is_finite() {
            Ok(x)
        } else {
            Err(format!("value {x} is not finite"))
        }
    };
    let data = &v["data"];
    match data["resultType"].as_str() {
        Some("scalar") => number(&data["result"]),
        Some("vector") => {
            let series = data["result"]
                .as_array()
                .ok_or("vector result is not a list")?;
            if series.is_empty() {
                return Err("the query matched no series".into());
            }
            series.iter().map(|s| number(&s["value"])).sum()
        }
        other => Err(format!(
            "result type {} is not a scalar or an instant vector",
            other.unwrap_or("(none)")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_follow_the_aliases_and_sum_series() {
        let text = "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"a\"} 2\nvllm:num_requests_running{model_name=\"b\"} 3\nvllm:kv_cache_usage_perc 0.25\nbad line\n";
        assert_eq!(
            text_value(text, &metric_aliases("num_requests_running")),
            Some(5.0)
        );
        assert_eq!(
            text_value(text, &metric_aliases("gpu_cache_usage_perc")),
            Some(0.25)
        );
        assert_eq!(text_value(text, &metric_aliases("absent")), None);
    }

    #[test]
    fn targets_read_standard_and_every_engine_name() {
        use brix_metrics::{Mode, standardise};
        let sglang = include_str!("../../../metrics/tests/data/sglang.prom");
        let vllm = "vllm:num_requests_running{engine=\"0\"} 3\nvllm:num_requests_waiting 1\nvllm:kv_cache_usage_perc 0.5\n";
        let cases = [
            ("num_requests_running", 162.0, 3.0),
            ("vllm:num_requests_running", 162.0, 3.0),
            ("aibrix:num_requests_running", 162.0, 3.0),
            ("num_requests_waiting", 2826.0, 1.0),
            ("queue_size", 2826.0, 1.0),
            ("kv_cache_usage_perc", 0.28, 0.5),
            ("gpu_cache_usage_perc", 0.28, 0.5),
            ("sglang:token_usage", 0.28, 0.5),
        ];
        for (engine, text) in [("sglang", sglang), ("vllm", vllm)] {
            let rules = Rules::builtin(engine).expect("builtin");
            let sidecar =
                |keep_original| standardise(&rules, text, Mode::Transform { keep_original });
            for (target, want_sglang, want_vllm) in cases {
                let want = if engine == "sglang" {
                    want_sglang
                } else {
                    want_vllm
                };
                let names = metric_names(target);
                for (how, t) in [
                    ("direct", text.to_string()),
                    ("sidecar", sidecar(false)),
                    ("sidecar+orig", sidecar(true)),
                ] {
                    assert_eq!(
                        text_value(&t, &names),
                        Some(want),
                        "{engine} {how} {target}"
                    );
                }
            }
        }
        assert_eq!(
            metric_names("num_requests_running")[1],
            "aibrix:num_requests_running"
        );
        assert_eq!(text_value(sglang, &metric_names("absent")), None);
    }

    #[test]
    fn api_answers_vectors_scalars_and_errors() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"a"},"value":[1700000000.1,"1.5"]},{"metric":{"pod":"b"},"value":[1700000000.1,"2"]}]}}"#;
        assert_eq!(api_value(vector), Ok(3.5));
        let scalar =
            br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"7"]}}"#;
        assert_eq!(api_value(scalar), Ok(7.0));
        let cases: [(&[u8], &str); 5] = [
            (
                br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#,
                "bad_data",
            ),
            (
                br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
                "no series",
            ),
            (
                br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
                "matrix",
            ),
            (
                br#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#,
                "finite",
            ),
            (b"<html>", "not a Prometheus API answer"),
        ];
        for (body, needle) in cases {
            let e = api_value(body).expect_err("refused");
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        }
    }

    #[test]
    fn feeds_from_documents() {
        let src = |yaml: &str| -> MetricSource { serde_yaml_ng::from_str(yaml).expect("valid") };
        let pod = src(
            "metricSourceType: pod\npath: metrics\nport: '9000'\ntargetMetric: num_requests_running\ntargetValue: '4'\n",
        );
        match Feed::of(&pod, "s").expect("ok") {
            Feed::Pods { path, port, names } => {
                assert_eq!((path.as_str(), port), ("/metrics", Some(9000)));
                assert!(names.contains(&"vllm:num_requests_running".to_string()));
            }
            other => panic!("{other:?}"),
        }
        let prom = src(
            "metricSourceType: external\nendpoint: 127.0.0.1:9090\npath: /api/v1/query?query=sum(x)\ntargetMetric: x\ntargetValue: '2'\n",
        );
        assert!(matches!(
            Feed::of(&prom, "s"),
            Ok(Feed::External { api: true, .. })
        ));
        let gw =
            src("metricSourceType: external\ntargetMetric: gateway_in_flight\ntargetValue: '2'\n");
        assert_eq!(Feed::of(&gw, "s"), Ok(Feed::Gateway));
        let tls = src(
            "metricSourceType: external\nprotocolType: https\nendpoint: h:1\ntargetMetric: x\ntargetValue: '2'\n",
        );
        let e = Feed::of(&tls, "spec.metricsSources[0]").expect_err("refused");
        assert!(e.starts_with("spec.metricsSources[0].protocolType"), "{e}");
        assert_eq!(with_port("127.0.0.1:8000", 9), "127.0.0.1:9");
    }
}
