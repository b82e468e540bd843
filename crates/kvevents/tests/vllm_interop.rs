//! The Subscriber against vLLM's own publisher (`ZmqEventPublisher`: pyzmq over libzmq), when
//! vLLM's python is installed (`BRIX_VLLM_VENV`, default `.venv-vllm` at the repository root;
//! `scripts/vllm-cpu` installs it): live batches and vLLM's replay socket, decoded here.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use brix_kvevents::{Event, Subscriber, SubscriberConfig, Update};

const PUBLISHER: &str = r#"
import sys, time
from vllm.distributed.kv_events import (AllBlocksCleared, BlockRemoved, BlockStored,
                                        KVEventBatch, ZmqEventPublisher)
pub = ZmqEventPublisher(0, endpoint=f"tcp://*:{sys.argv[1]}",
                        replay_endpoint=f"tcp://*:{sys.argv[2]}", buffer_steps=100, topic="kv")
print("ready", flush=True)
i = 0
for _ in sys.stdin:  # one batch per line
    pub.publish(KVEventBatch(ts=time.time(), events=[
        BlockStored(block_hashes=[i, 2**64 - 1], parent_block_hash=None, token_ids=[1, 2],
                    block_size=1, lora_id=None, medium="GPU", lora_name=None),
        BlockRemoved(block_hashes=[i], medium="GPU"), AllBlocksCleared()]))
    i += 1
pub.shutdown()
"#;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = std::env::var_os("BRIX_VLLM_VENV").map_or(root.join(".venv-vllm"), PathBuf::from);
    let py = venv.join("bin/python");
    py.exists().then_some(py)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn the_subscriber_reads_vllms_own_publisher_and_replay_socket() {
    let Some(py) = python() else {
        eprintln!(
            "\n!!!!! vLLM's python not found (BRIX_VLLM_VENV / .venv-vllm): interop test SKIPPED !!!!!\n"
        );
        return;
    };
    let (port, replay) = (free_port(), free_port());
    let mut child = Command::new(py)
        .args(["-c", PUBLISHER, &port.to_string(), &replay.to_string()])
        .env("VLLM_TARGET_DEVICE", "cpu")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        panic!("no pipes")
    };
    let _guard = Kill(child);
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(120), ready).await;
    assert!(
        matches!(&line, Ok(Ok(Ok(l))) if l.trim() == "ready"),
        "vLLM's publisher did not start: {line:?}"
    );
    let mut cfg = SubscriberConfig::new(
        format!("tcp://127.0.0.1:{port}"),
        Some(format!("tcp://127.0.0.1:{replay}")),
    );
    cfg.topic = "kv".into();
    let mut sub = Subscriber::spawn(cfg);
    let mut got = Vec::new();
    for _ in 0..300 {
        if got.len() >= 5 {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
            Ok(Some(u)) => got.push(u),
            Ok(None) => panic!("subscriber ended"),
            Err(_) => writeln!(stdin, "publish").unwrap_or_else(|e| panic!("{e}")),
        }
    }
    assert!(got.len() >= 5, "{got:?}");
    // The first batches reach the subscriber by vLLM's replay socket, the rest live: all in
    // order from 0, every field as vLLM wrote it.
    for (i, u) in got.iter().enumerate() {
        let Update::Batch { seq, batch } = u else {
            panic!("{u:?}")
        };
        assert_eq!(*seq, i as u64);
        assert_eq!(batch.data_parallel_rank, Some(0));
        let [
            Event::BlockStored(s),
            Event::BlockRemoved(r),
            Event::AllBlocksCleared,
        ] = &batch.events[..]
        else {
            panic!("{batch:?}")
        };
        assert_eq!(s.block_hashes, vec![*seq, u64::MAX]);
        assert_eq!((s.token_ids.clone(), s.block_size), (vec![1, 2], 1));
        assert_eq!(
            (r.block_hashes.clone(), r.medium.as_deref()),
            (vec![*seq], Some("GPU"))
        );
    }
}
