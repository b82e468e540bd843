//! Streaming on a kept-alive connection (issue 9, section 1): every SDK and benchmark tool
//! reuses its connection, and without TCP_NODELAY on both hops the first token of a stream
//! waits for the peer's delayed ACK and then arrives together with the second. The client here
//! reuses one connection for many streams through the gateway (served by
//! [`brix_gateway::run`], the engine by `brix sim`'s own listener) and compares token gaps,
//! not wall-clock thresholds.
//!
//! Measure (numbers in docs/gateway.md):
//! `cargo test -p brix-gateway --test gateway keepalive -- --nocapture`

use std::sync::Arc;
use std::time::{Duration, Instant};

use brix_gateway::{Registry, Target};
use brix_sim::OutputLen;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{MODEL, gateway_config};

const TOKENS: u32 = 8;
const WARMUP: usize = 5;
const STREAMS: usize = 30;

/// Arrival times of one stream's token events, from the moment the request was written.
struct Stream {
    /// Seconds to each `data:` event carrying a token (not `[DONE]`).
    tokens: Vec<f64>,
}

impl Stream {
    fn ttft(&self) -> f64 {
        self.tokens[0]
    }
    fn gap(&self, i: usize) -> f64 {
        self.tokens[i + 1] - self.tokens[i]
    }
}

/// Writes one streaming completion request on `conn` and reads its response to the end,
/// timestamping each read that brings token events (events read together share a time).
async fn stream(conn: &mut TcpStream, host: &str) -> Stream {
    let body = format!(
        r#"{{"model":"{MODEL}","prompt":"tell me a story about a kept-alive connection","max_tokens":{TOKENS},"stream":true}}"#
    );
    let req = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let start = Instant::now();
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut seen = String::new();
    let mut tokens = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    // The chunked body ends with a zero-length chunk after `[DONE]`.
    while !(seen.contains("[DONE]") && seen.ends_with("0\r\n\r\n")) {
        let n = tokio::time::timeout(Duration::from_secs(20), conn.read(&mut buf))
            .await
            .expect("stream stalled")
            .unwrap();
        assert!(n > 0, "connection closed mid-stream: {seen}");
        let at = start.elapsed().as_secs_f64();
        let before = seen.matches("data: {").count();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        for _ in before..seen.matches("data: {").count() {
            tokens.push(at);
        }
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(tokens.len() >= 3, "too few token events: {seen}");
    Stream { tokens }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_streams_have_no_first_token_burst_through_the_gateway() {
    let mut sim = brix_testkit::sim_config(MODEL);
    sim.engine.output_len = OutputLen::Fixed(TOKENS);
    let engine = brix_testkit::start_sim(&sim).await;
    let registry = Arc::new(Registry::new());
    registry.set(
        MODEL,
        vec![Target {
            name: "pod-0".into(),
            address: engine.addr.to_string(),
            kv_events: None,
            metrics: None,
        }],
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = listener.local_addr().unwrap().to_string();
    let cfg = gateway_config();
    let reg = registry.clone();
    tokio::spawn(async move { brix_gateway::run(cfg, reg.as_ref(), listener).await });
    crate::support::eventually("the gateway serves", || async {
        reqwest::get(format!("http://{gateway}/ready"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    // Direct to the engine, a fresh connection per stream: the reference TTFT.
    let mut direct = Vec::new();
    for _ in 0..STREAMS {
        let mut c = TcpStream::connect(engine.addr).await.unwrap();
        c.set_nodelay(true).unwrap();
        direct.push(stream(&mut c, &engine.addr.to_string()).await);
    }
    // Through the gateway, one kept-alive connection for every stream (after a warm-up, so
    // the kernel's quick-ACK start of a connection is over, as for any long-lived client).
    let mut c = TcpStream::connect(&gateway).await.unwrap();
    c.set_nodelay(true).unwrap();
    for _ in 0..WARMUP {
        stream(&mut c, &gateway).await;
    }
    let mut kept = Vec::new();
    for _ in 0..STREAMS {
        kept.push(stream(&mut c, &gateway).await);
    }

    let ms = |v: f64| v * 1e3;
    // The engine's decode step, as a fresh connection (quick ACKs, no hold-back) sees it.
    let step = median(
        direct
            .iter()
            .flat_map(|s| (0..s.tokens.len() - 1).map(|i| s.gap(i)))
            .collect(),
    );
    let ttft_direct = median(direct.iter().map(Stream::ttft).collect());
    let ttft_kept = median(kept.iter().map(Stream::ttft).collect());
    let gap1 = median(kept.iter().map(|s| s.gap(0)).collect());
    let bursts = kept.iter().filter(|s| s.gap(0) < 0.25 * step).count();
    eprintln!(
        "TTFT p50: direct fresh connection {:.2} ms, through the gateway kept alive {:.2} ms; \
         decode step p50 {:.2} ms; kept-alive 1st->2nd token gap p50 {:.2} ms; \
         first-token bursts {bursts}/{STREAMS}",
        ms(ttft_direct),
        ms(ttft_kept),
        ms(step),
        ms(gap1),
    );
    // No first-token burst: the 2nd token follows the 1st by a decode step; a held-back
    // 1st token arrives together with the 2nd (gap ~0).
    assert!(step > 0.0, "the engine streamed without decode steps");
    assert!(
        bursts <= STREAMS / 5 && gap1 >= 0.5 * step,
        "first tokens arrive in bursts: {bursts}/{STREAMS}, gap 1->2 p50 {gap1:.4} s, step {step:.4} s"
    );
    // Through-gateway TTFT on a kept-alive connection stays that of a fresh connection to
    // the engine, within one decode step (a delayed ACK costs several).
    assert!(
        ttft_kept <= ttft_direct + step,
        "TTFT through the gateway {ttft_kept:.4} s vs direct {ttft_direct:.4} s (step {step:.4} s)"
    );
}
