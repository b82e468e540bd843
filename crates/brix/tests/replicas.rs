//! Three `brix gateway` processes in front of the same four `brix sim` pods, sharing their
//! view through a private `redis-server`, route as one gateway: requests spread round-robin
//! over the replicas land on the pods as a lone gateway's do, and a prompt repeated through
//! different replicas stays on one pod and hits its prefix cache as often. With Redis gone,
//! each replica still routes on its own view.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests: a failed unwrap is a failed test"
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use brix_testkit::redis::RedisServer;
use brix_testkit::{Exposition, eventually, eventually_some};
use serde_json::json;

const BRIX: &str = env!("CARGO_BIN_EXE_brix");
const MODEL: &str = "m";
const WAIT: Duration = Duration::from_secs(30);

/// A child process killed on drop, so a failing test leaves nothing behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `brix ARGS` and returns it with the URL of its `... listening on http://ADDR` line.
fn start(args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(BRIX)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("brix {args:?} exited before listening"))
            .unwrap();
        if let Some((_, url)) = line.split_once("listening on ") {
            break url.trim().to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (proc, url)
}

struct Fleet {
    _sims: Vec<Proc>,
    /// Pod name (as the endpoints file lists it: its address) per sim URL.
    sims: Vec<String>,
    endpoints: std::path::PathBuf,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fleet(n: usize) -> Fleet {
    let mut procs = Vec::new();
    let mut sims = Vec::new();
    for _ in 0..n {
        let (p, url) = start(&[
            "sim",
            "--port",
            "0",
            "--served-model-name",
            MODEL,
            "--gpu",
            "H200",
            "--num-gpu-blocks-override",
            "2048",
            "--max-model-len",
            "8192",
        ]);
        procs.push(p);
        sims.push(url);
    }
    let dir = std::env::temp_dir().join(format!("brix-replicas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let addrs: Vec<String> = sims
        .iter()
        .map(|u| format!("\"{}\"", u.trim_start_matches("http://")))
        .collect();
    let endpoints = dir.join("endpoints.yaml");
    std::fs::write(
        &endpoints,
        format!(
            "models:\n  - name: {MODEL}\n    endpoints: [{}]\n",
            addrs.join(", ")
        ),
    )
    .unwrap();
    Fleet {
        _sims: procs,
        sims,
        endpoints,
        _dir: TempDir(dir),
    }
}

/// A gateway over the fleet; `redis` shares its view with the other replicas. Each has its
/// own routing seed, as replicas break ties differently.
fn gateway(f: &Fleet, id: &str, seed: u64, redis: Option<&str>) -> (Proc, String) {
    let endpoints = f.endpoints.display().to_string();
    let seed = seed.to_string();
    let mut args = vec![
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--endpoints",
        &endpoints,
        "--routing-strategy",
        "least-request",
        "--scrape-interval-ms",
        "100",
        "--gateway-id",
        id,
        "--seed",
        &seed,
    ];
    if let Some(url) = redis {
        args.extend(["--sync-redis", url]);
    }
    start(&args)
}

async fn metrics(client: &reqwest::Client, url: &str) -> Exposition {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    Exposition::parse(&text)
}

fn sum(e: &Exposition, name: &str) -> f64 {
    e.find(name, &[]).map(|s| s.value).sum()
}

/// Sends a long streaming request through `gw` and returns the pod it went to with the open
/// response (dropping it cancels the request).
async fn hold(client: &reqwest::Client, gw: &str, tag: usize) -> (String, reqwest::Response) {
    let r = client
        .post(format!("{gw}/v1/completions"))
        .json(&json!({
            "model": MODEL,
            "prompt": format!("request {tag}"),
            "max_tokens": 6000,
            "ignore_eos": true,
            "stream": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pod = r.headers()["target-pod"].to_str().unwrap().to_string();
    (pod, r)
}

/// Sends `prompt` through `gw` with `prefix-cache` and waits for the answer; returns the pod.
async fn ask(client: &reqwest::Client, gw: &str, prompt: &str) -> String {
    let r = client
        .post(format!("{gw}/v1/completions"))
        .header("routing-strategy", "prefix-cache")
        .json(&json!({"model": MODEL, "prompt": prompt, "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pod = r.headers()["target-pod"].to_str().unwrap().to_string();
    r.text().await.unwrap();
    pod
}

/// Prefix-cache hit tokens over all pods.
async fn hits(client: &reqwest::Client, f: &Fleet) -> f64 {
    let mut total = 0.0;
    for s in &f.sims {
        total += sum(&metrics(client, s).await, "vllm:prefix_cache_hits_total");
    }
    total
}

/// Waits until no request is in flight on any pod, as every gateway counts (its own and its
/// peers').
async fn drained(client: &reqwest::Client, gws: &[String]) {
    for g in gws {
        eventually("in-flight back to zero", WAIT, || async {
            let m = metrics(client, g).await;
            sum(&m, "brix_gateway_in_flight_requests") == 0.0
                && sum(&m, "brix_gateway_sync_peer_in_flight_requests") == 0.0
        })
        .await;
    }
}

/// Holds `n` long requests sent one after another, the i-th through `gws[i % len]`; before
/// each, every gateway's view has all the earlier ones (its own plus its peers'), so the
/// spread is what one gateway seeing everything would do. Returns requests per pod.
async fn spread(
    client: &reqwest::Client,
    gws: &[String],
    n: usize,
    synced: bool,
) -> BTreeMap<String, usize> {
    let mut held = Vec::new();
    let mut per_pod = BTreeMap::new();
    for i in 0..n {
        let (pod, r) = hold(client, &gws[i % gws.len()], i).await;
        *per_pod.entry(pod).or_insert(0) += 1;
        held.push(r);
        if synced {
            for g in gws {
                eventually("every replica sees every request", WAIT, || async {
                    let m = metrics(client, g).await;
                    let own = sum(&m, "brix_gateway_in_flight_requests");
                    let peers = sum(&m, "brix_gateway_sync_peer_in_flight_requests");
                    own + peers == (i + 1) as f64
                })
                .await;
            }
        }
    }
    drop(held);
    per_pod
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_spread_and_hit_the_cache_as_one_gateway() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let f = fleet(4);
    let client = reqwest::Client::new();
    let (_solo, solo) = gateway(&f, "solo", 0, None);
    let replicas: Vec<(Proc, String)> = ["g1", "g2", "g3"]
        .iter()
        .zip(1..)
        .map(|(id, seed)| gateway(&f, id, seed, Some(&url)))
        .collect();
    let gws: Vec<String> = replicas.iter().map(|(_, u)| u.clone()).collect();
    for g in &gws {
        eventually("each replica hears its two peers", WAIT, || async {
            let m = metrics(&client, g).await;
            m.value("brix_gateway_sync_up", &[]) == Some(1.0)
                && m.value("brix_gateway_sync_peers", &[]) == Some(2.0)
        })
        .await;
    }
    for g in gws.iter().chain([&solo]) {
        eventually("all four pods in rotation", WAIT, || async {
            sum(&metrics(&client, g).await, "brix_gateway_pod_healthy") == 4.0
        })
        .await;
    }

    // Spread: one gateway, then three replicas round-robin.
    let one = spread(&client, std::slice::from_ref(&solo), 8, false).await;
    drained(&client, std::slice::from_ref(&solo)).await;
    let three = spread(&client, &gws, 8, true).await;
    drained(&client, &gws).await;
    let shape = |m: &BTreeMap<String, usize>| {
        let mut v: Vec<usize> = m.values().copied().collect();
        v.sort_unstable();
        v
    };
    assert_eq!(shape(&one), vec![2, 2, 2, 2], "one gateway: {one:?}");
    assert_eq!(shape(&three), shape(&one), "three replicas: {three:?}");

    // Prefix: the same long prompt three times, through one gateway, then through each
    // replica in turn (the next one asked once it heard the booking).
    let prompt = |tag: &str| {
        format!(
            "{tag} {}",
            "a shared system prompt, long enough. ".repeat(60)
        )
    };
    let before = hits(&client, &f).await;
    let p = prompt("run 1111");
    let mut pods = Vec::new();
    for _ in 0..3 {
        pods.push(ask(&client, &solo, &p).await);
    }
    let solo_hits = hits(&client, &f).await - before;
    assert!(solo_hits > 0.0, "the engines' cache was hit");
    assert!(pods.iter().all(|x| *x == pods[0]), "{pods:?}");

    let before = hits(&client, &f).await;
    let mut heard_before = Vec::new();
    for g in &gws {
        let m = metrics(&client, g).await;
        heard_before.push(
            m.value("brix_gateway_sync_peer_booked_total", &[])
                .unwrap_or(0.0),
        );
    }
    let p = prompt("run 2222");
    let mut pods = Vec::new();
    for (i, g) in gws.iter().enumerate() {
        pods.push(ask(&client, g, &p).await);
        for (j, other) in gws.iter().enumerate().filter(|(j, _)| *j != i) {
            eventually("the booking reaches every other replica", WAIT, || async {
                let m = metrics(&client, other).await;
                let heard = m.value("brix_gateway_sync_peer_booked_total", &[]);
                // Replica j has heard one booking from each earlier replica but itself.
                let want = (0..=i).filter(|k| *k != j).count() as f64;
                heard.is_some_and(|h| h - heard_before[j] >= want)
            })
            .await;
        }
    }
    let replica_hits = hits(&client, &f).await - before;
    assert!(pods.iter().all(|x| *x == pods[0]), "one pod: {pods:?}");
    assert_eq!(
        replica_hits, solo_hits,
        "the same cache hits as one gateway"
    );

    // Redis gone: each replica says so, peers' loads expire, and it still routes.
    redis.kill();
    for g in &gws {
        eventually("the replica notices Redis is gone", WAIT, || async {
            metrics(&client, g).await.value("brix_gateway_sync_up", &[]) == Some(0.0)
        })
        .await;
    }
    for (i, g) in gws.iter().enumerate() {
        let (_, r) = hold(&client, g, 100 + i).await;
        drop(r);
        let pod = ask(&client, g, "after redis").await;
        assert!(!pod.is_empty());
        let m = metrics(&client, g).await;
        assert!(
            sum(&m, "brix_gateway_sync_errors_total") >= 1.0,
            "the loss is counted"
        );
    }
    drained(&client, &gws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_whose_redis_never_answers_route_on_their_own_view() {
    // A port nothing listens on: every connection attempt is refused.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("redis://{}/0", l.local_addr().unwrap())
    };
    let f = fleet(2);
    let client = reqwest::Client::new();
    let replicas: Vec<(Proc, String)> = ["g1", "g2", "g3"]
        .iter()
        .zip(1..)
        .map(|(id, seed)| gateway(&f, id, seed, Some(&dead)))
        .collect();
    for (_, g) in &replicas {
        eventually(
            "both pods in rotation, sync down and counted",
            WAIT,
            || async {
                let m = metrics(&client, g).await;
                sum(&m, "brix_gateway_pod_healthy") == 2.0
                    && m.value("brix_gateway_sync_up", &[]) == Some(0.0)
                    && m.value("brix_gateway_sync_errors_total", &[("kind", "connect")])
                        .is_some_and(|n| n >= 1.0)
            },
        )
        .await;
        // Each replica spreads its own load: two held requests land on the two pods.
        let (a, ra) = hold(&client, g, 1).await;
        let (b, rb) = hold(&client, g, 2).await;
        assert_ne!(a, b, "least-request on the replica's own view");
        drop((ra, rb));
        let pod = eventually_some("a prefix-cache answer", WAIT, || async {
            Some(ask(&client, g, "no redis").await)
        })
        .await;
        assert!(!pod.is_empty());
    }
    let gws: Vec<String> = replicas.iter().map(|(_, u)| u.clone()).collect();
    drained(&client, &gws).await;
}
