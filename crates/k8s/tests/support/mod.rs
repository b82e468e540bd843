//! The mocked Kubernetes API every controller test runs against: a script of the exact calls
//! the code must make, in order, each with its reply. A call that is not the next one in the
//! script, or that the component's RBAC rules do not allow, is answered 500 and fails the test;
//! a scripted call never made fails it too ([`Scenario::done`]).
//!
//! ```ignore
//! let (client, api) = support::mock(brix_k8s::podautoscaler::RULES, vec![
//!     Call::get("/apis/apps/v1/namespaces/default/deployments/llama/scale").ok(json!({...})),
//!     Call::patch("/apis/apps/v1/namespaces/default/deployments/llama/scale")
//!         .expect_body(|b| eq(&b["spec"]["replicas"], &json!(3)))
//!         .ok(json!({...})),
//! ]);
//! reconcile(obj, ctx_with(client)).await?;
//! api.done().await;
//! ```
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brix_k8s::rbac::{Rule, allows};
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

type Check = Box<dyn Fn(&Value) -> Result<(), String> + Send>;
type RespBody = UnsyncBoxBody<Bytes, Infallible>;

/// What a scripted call answers.
enum Reply {
    Json(u16, Value),
    /// Watch events (one JSON object per line), then the stream stays open until the test ends.
    Events(Vec<Value>),
    /// Watch events, then the stream ends (the client re-watches).
    EventsThenClose(Vec<Value>),
}

/// One expected API call and its reply.
pub struct Call {
    method: Method,
    path: String,
    query: Vec<String>,
    check: Option<Check>,
    reply: Reply,
}

impl Call {
    /// A call with `method` on `path` (no query string; see [`Call::query`]).
    pub fn new(method: Method, path: &str) -> Self {
        Self {
            method,
            path: path.to_string(),
            query: Vec::new(),
            check: None,
            reply: Reply::Json(200, json!({})),
        }
    }
    pub fn get(path: &str) -> Self {
        Self::new(Method::GET, path)
    }
    pub fn post(path: &str) -> Self {
        Self::new(Method::POST, path)
    }
    pub fn put(path: &str) -> Self {
        Self::new(Method::PUT, path)
    }
    pub fn patch(path: &str) -> Self {
        Self::new(Method::PATCH, path)
    }
    pub fn delete(path: &str) -> Self {
        Self::new(Method::DELETE, path)
    }
    /// The request's query string must contain `part` (`labelSelector=...`, `watch=true`),
    /// compared after percent-decoding.
    pub fn query(mut self, part: &str) -> Self {
        self.query.push(part.to_string());
        self
    }
    /// Checks the request's JSON body; an `Err` fails the test with its text.
    pub fn expect_body(
        mut self,
        f: impl Fn(&Value) -> Result<(), String> + Send + 'static,
    ) -> Self {
        self.check = Some(Box::new(f));
        self
    }
    /// Answers 200 with `body`.
    pub fn ok(self, body: Value) -> Self {
        self.reply(200, body)
    }
    /// Answers `status` with `body`.
    pub fn reply(mut self, status: u16, body: Value) -> Self {
        self.reply = Reply::Json(status, body);
        self
    }
    /// Answers with a Kubernetes `Status` error (`reason`: `Conflict`, `NotFound`, ...).
    pub fn fail(self, status: u16, reason: &str, message: &str) -> Self {
        self.reply(status, status_body(status, reason, message))
    }
    /// Answers a watch with these events, keeping the stream open afterwards.
    pub fn events(mut self, events: Vec<Value>) -> Self {
        self.reply = Reply::Events(events);
        self
    }
    /// Answers a watch with these events, then closes the stream.
    pub fn events_then_close(mut self, events: Vec<Value>) -> Self {
        self.reply = Reply::EventsThenClose(events);
        self
    }
    fn describe(&self) -> String {
        let q = if self.query.is_empty() {
            String::new()
        } else {
            format!("?{}", self.query.join("&"))
        };
        format!("{} {}{}", self.method, self.path, q)
    }
}

/// A Kubernetes `Status` body for errors.
pub fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// A `List` body of `items` (`kind` is the list's kind, e.g. `PodList`).
pub fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})
}

/// Compares JSON for [`Call::expect_body`]: `Err` with both values when they differ.
pub fn eq(got: &Value, want: &Value) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("got {got}, want {want}"))
    }
}

struct State {
    script: VecDeque<Call>,
    errors: Vec<String>,
    seen: Vec<String>,
}

/// The running mock; [`Scenario::done`] checks the script was followed.
pub struct Scenario {
    state: Arc<Mutex<State>>,
    progressed: Arc<Notify>,
    _keep: mpsc::Sender<()>,
}

/// A client whose every request goes to the script, checked against `rules`.
pub fn mock(rules: &'static [Rule], script: Vec<Call>) -> (kube::Client, Scenario) {
    mock_rules(rules.to_vec(), script)
}

/// [`mock`] with rules joined from several modules.
pub fn mock_rules(rules: Vec<Rule>, script: Vec<Call>) -> (kube::Client, Scenario) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<RespBody>>();
    let state = Arc::new(Mutex::new(State {
        script: script.into(),
        errors: Vec::new(),
        seen: Vec::new(),
    }));
    let progressed = Arc::new(Notify::new());
    // Open watch streams end when the scenario is dropped.
    let (keep, mut closed) = mpsc::channel::<()>(1);
    let (st, notify) = (state.clone(), progressed.clone());
    let mut holders: Vec<mpsc::Sender<Result<Frame<Bytes>, Infallible>>> = Vec::new();
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                r = handle.next_request() => r,
                _ = closed.recv() => None,
            };
            let Some((req, send)) = next else { break };
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let path = parts.uri.path().to_string();
            let query = decode(parts.uri.query().unwrap_or(""));
            let seen = format!(
                "{} {}{}",
                parts.method,
                path,
                if query.is_empty() {
                    String::new()
                } else {
                    format!("?{query}")
                }
            );
            let mut s = st.lock().unwrap();
            s.seen.push(seen.clone());
            if let Some((group, resource, verb)) = rbac_of(&parts.method, &path, &query)
                && !allows(&rules, &group, &resource, &verb)
            {
                s.errors.push(format!(
                    "{seen}: RBAC rules do not allow {verb} on {group}/{resource}"
                ));
            }
            let matches = s.script.front().is_some_and(|c| {
                c.method == parts.method
                    && c.path == path
                    && c.query.iter().all(|q| query.split('&').any(|p| p == q))
            });
            if !matches {
                let want = s
                    .script
                    .front()
                    .map(Call::describe)
                    .unwrap_or_else(|| "no more calls".into());
                s.errors
                    .push(format!("unexpected call {seen}; the script wanted {want}"));
                drop(s);
                send.send_response(json_response(
                    500,
                    &status_body(500, "InternalError", "unexpected call in the mock"),
                ));
                notify.notify_waiters();
                continue;
            }
            let call = s.script.pop_front().unwrap();
            if let Some(check) = &call.check {
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if let Err(why) = check(&body) {
                    s.errors.push(format!("{seen}: body check failed: {why}"));
                }
            }
            drop(s);
            match call.reply {
                Reply::Json(code, v) => send.send_response(json_response(code, &v)),
                Reply::Events(evs) => {
                    let (tx, rx) = mpsc::channel(evs.len() + 1);
                    for e in evs {
                        let _ = tx.try_send(Ok(Frame::data(Bytes::from(format!("{e}\n")))));
                    }
                    holders.push(tx);
                    send.send_response(stream_response(rx));
                }
                Reply::EventsThenClose(evs) => {
                    let (tx, rx) = mpsc::channel(evs.len() + 1);
                    for e in evs {
                        let _ = tx.try_send(Ok(Frame::data(Bytes::from(format!("{e}\n")))));
                    }
                    send.send_response(stream_response(rx));
                }
            }
            notify.notify_waiters();
        }
        drop(holders);
    });
    let client = kube::Client::new(svc, "default");
    (
        client,
        Scenario {
            state,
            progressed,
            _keep: keep,
        },
    )
}

impl Scenario {
    /// Waits (at most 10 s, a hang guard) until every scripted call was made, then fails the
    /// test on any missing, unexpected or refused call.
    pub async fn done(self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.progressed.notified();
            {
                let s = self.state.lock().unwrap();
                if s.script.is_empty() || !s.errors.is_empty() {
                    break;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        // Let a call that is already on its way arrive, so an extra call is caught.
        tokio::task::yield_now().await;
        let s = self.state.lock().unwrap();
        let mut problems = s.errors.clone();
        problems.extend(
            s.script
                .iter()
                .map(|c| format!("missing call {}", c.describe())),
        );
        assert!(
            problems.is_empty(),
            "the mocked API saw problems:\n  {}\ncalls made:\n  {}",
            problems.join("\n  "),
            s.seen.join("\n  ")
        );
    }

    /// The calls made so far, as `METHOD path?query`.
    pub fn seen(&self) -> Vec<String> {
        self.state.lock().unwrap().seen.clone()
    }
}

fn json_response(code: u16, v: &Value) -> Response<RespBody> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed_unsync())
        .unwrap()
}

fn stream_response(rx: mpsc::Receiver<Result<Frame<Bytes>, Infallible>>) -> Response<RespBody> {
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(StreamBody::new(stream).boxed_unsync())
        .unwrap()
}

fn decode(q: &str) -> String {
    percent_encoding::percent_decode_str(q)
        .decode_utf8_lossy()
        .replace('+', " ")
}

/// (group, resource[/subresource], verb) of a request path, as RBAC sees it.
pub fn rbac_of(method: &Method, path: &str, query: &str) -> Option<(String, String, String)> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _v, rest @ ..] => (String::new(), rest),
        ["apis", g, _v, rest @ ..] => (g.to_string(), rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        r => r,
    };
    let (resource, named) = match rest {
        [res] => (res.to_string(), false),
        [res, _name] => (res.to_string(), true),
        [res, _name, sub] => (format!("{res}/{sub}"), true),
        _ => return None,
    };
    let watch = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match *method {
        Method::GET if watch => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => return None,
    };
    Some((group, resource, verb.to_string()))
}
