//! One replica's supervisor: starts its engine, gates traffic on `/health`, restarts it with
//! back-off when it exits, drains it on removal, and is itself restarted if it ever panics.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brix_api::EngineSpec;
use tokio::sync::watch;

use crate::gate::Verdicts;
use crate::local::{
    BACKOFF_MAX, BACKOFF_MIN, CRASH_LOOP, CRASH_WINDOW, Inner, STABLE_RUN, Slot, UNREADY_AFTER,
};
use crate::platform::ReplicaState;
use crate::runner::Runner;
use crate::sidecar::Sidecar;

/// Longest wait for a runtime sidecar to stop.
const SIDECAR_GRACE: Duration = Duration::from_secs(5);

/// How one run of an engine ended.
enum Ended {
    Exited(String),
    Stopped,
    /// Its GPUs failed a periodic diagnosis (the reason).
    GpuFailed(String),
}

/// Aborts a task when dropped (the platform's task set was dropped or aborted).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the replica's supervisor, and if it ever panics (a bug), reports the replica as
/// restarting, out of rotation, and starts a new supervisor after the back-off: a replica is
/// never left looking ready with nobody looking after it.
pub(crate) async fn keep_supervised(inner: Arc<Inner>, slot: Arc<Slot>, engine: EngineSpec) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let task = tokio::spawn(supervise(inner.clone(), slot.clone(), engine.clone()));
        let _guard = AbortOnDrop(task.abort_handle());
        let Err(e) = task.await else { return };
        if !e.is_panic() {
            return;
        }
        let why = format!("the replica's supervisor panicked: {e}");
        tracing::error!(replica = %slot.id, error = %e, "replica supervisor panicked; restarting it");
        {
            let mut s = slot.status();
            s.restarts += 1;
            s.last_exit = Some(why);
            s.pid = None;
        }
        inner.set_state(&slot, ReplicaState::Restarting);
        let mut stop = slot.stop.subscribe();
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => {
                // Removed meanwhile: finish what the supervisor would have.
                remove(&inner, &slot);
                return;
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Takes a stopped replica out of the table and the registry, and converges its model.
fn remove(inner: &Arc<Inner>, slot: &Slot) {
    let model = slot.model.clone();
    if let Some(rt) = inner.models().get_mut(&model) {
        rt.slots.remove(&slot.index);
    }
    inner.publish(&model);
    inner.converge(&model);
    tracing::info!(replica = %slot.id, "replica stopped");
}

/// Owns one replica for its whole life: start, gate on health, restart on exit, drain on stop.
async fn supervise(inner: Arc<Inner>, slot: Arc<Slot>, engine: EngineSpec) {
    let mut stop = slot.stop.subscribe();
    let mut backoff = BACKOFF_MIN;
    let mut crashes: VecDeque<Instant> = VecDeque::new();
    let (ready_timeout, grace) = match &engine {
        EngineSpec::Command(c) => (
            Duration::from_secs(c.ready_timeout_s),
            Duration::from_secs(c.stop_grace_s),
        ),
        EngineSpec::Sim(_) => (Duration::from_secs(30), Duration::ZERO),
    };
    let log = inner.log_path(&slot);
    let gate = inner.gate.clone().filter(|g| g.gates(&slot.model));
    let mut verdicts = gate.as_ref().map(|g| g.subscribe());
    let mut sidecar: Option<Sidecar> = None;
    loop {
        if let (Some(gate), Some(rx)) = (&gate, verdicts.as_mut())
            && !gpus_pass(&inner, &slot, gate, rx, &mut stop).await
        {
            break;
        }
        inner.set_state(&slot, ReplicaState::Starting);
        let (port, kv) = {
            let s = slot.status();
            let kv = inner.cfg.kv_events.contains(&slot.model);
            (s.port, kv.then(|| s.kv_ports.unwrap_or((0, 0))))
        };
        let started = Instant::now();
        let ended = match Runner::start(
            &slot.served,
            &engine,
            port,
            kv,
            inner.cfg.kv_pool.as_ref(),
            &log,
        )
        .await
        {
            Ok((mut runner, port, kv)) => {
                {
                    let mut s = slot.status();
                    s.port = port;
                    s.kv_ports = kv;
                    s.pid = runner.pid();
                }
                let beside = match (sidecar.is_some(), engine.runtime()) {
                    (false, Some(spec)) => match start_sidecar(&inner, &slot, spec, port).await {
                        Ok(s) => {
                            slot.status().runtime_port = Some(s.port);
                            sidecar = Some(s);
                            Ok(())
                        }
                        Err(why) => Err(why),
                    },
                    _ => Ok(()),
                };
                let ended = match beside {
                    Ok(()) => {
                        run(
                            &inner,
                            &slot,
                            &mut runner,
                            &mut stop,
                            ready_timeout,
                            &mut verdicts,
                        )
                        .await
                    }
                    Err(why) => Ended::Exited(format!("could not start: {why}")),
                };
                match &ended {
                    Ended::Stopped => drain(&inner, &slot, inner.cfg.drain_timeout).await,
                    Ended::GpuFailed(why) => {
                        tracing::warn!(replica = %slot.id, reason = %why, "GPU diagnostics failed; draining and stopping the replica");
                        slot.status().reason = Some(why.clone());
                        // In-flight requests get the engine's stop grace.
                        drain(&inner, &slot, grace).await;
                    }
                    Ended::Exited(_) => {}
                }
                runner.stop(grace).await;
                ended
            }
            Err(why) => Ended::Exited(format!("could not start: {why}")),
        };
        let why = match ended {
            Ended::Stopped => break,
            Ended::GpuFailed(why) => {
                {
                    let mut s = slot.status();
                    s.pid = None;
                    s.last_exit = Some(format!("stopped: {why}"));
                }
                // Back to the gate, which holds it until its GPUs pass again.
                continue;
            }
            Ended::Exited(why) => why,
        };
        // A crash: out of rotation, then back after the back-off.
        if started.elapsed() >= STABLE_RUN {
            backoff = BACKOFF_MIN;
        }
        let now = Instant::now();
        crashes.push_back(now);
        while crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW)
        {
            crashes.pop_front();
        }
        let looping = crashes.len() >= CRASH_LOOP;
        {
            let mut s = slot.status();
            s.restarts += 1;
            s.failed_at_start |= !s.ever_ready && s.restarts == 1;
            s.last_exit = Some(why.clone());
            s.pid = None;
        }
        if looping {
            tracing::error!(replica = %slot.id, crashes = crashes.len(), window_s = CRASH_WINDOW.as_secs(), last_exit = %why, "replica is in a crash loop");
        } else {
            tracing::warn!(replica = %slot.id, backoff_s = backoff.as_secs(), last_exit = %why, "replica exited; restarting");
        }
        inner.set_state(
            &slot,
            if looping {
                ReplicaState::CrashLoop
            } else {
                ReplicaState::Restarting
            },
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    if let Some(s) = sidecar {
        s.stop(SIDECAR_GRACE).await;
    }
    // Gone: out of the table and the registry.
    remove(&inner, &slot);
}

/// Starts the replica's runtime sidecar in front of its engine on `engine_port`.
async fn start_sidecar(
    inner: &Inner,
    slot: &Slot,
    spec: &brix_api::RuntimeSpec,
    engine_port: u16,
) -> Result<Sidecar, String> {
    let Some(cfg) = &inner.cfg.runtime else {
        return Err("runtime: this platform was started without runtime support".into());
    };
    let port = match slot.status().runtime_port {
        Some(p) => p,
        None => spec.port_for(slot.index).map_err(|e| e.to_string())?,
    };
    Sidecar::start(cfg, spec, &slot.id, port, engine_port).await
}

/// Holds the replica while its GPUs fail diagnostics (a fresh check first): state `failed`
/// with the reason, no crash counted, started again once a check passes. False when the
/// replica is stopped meanwhile.
async fn gpus_pass(
    inner: &Arc<Inner>,
    slot: &Slot,
    gate: &crate::gate::Gate,
    rx: &mut watch::Receiver<Verdicts>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    gate.check_since(Instant::now()).await;
    loop {
        let why = rx.borrow_and_update().blocked.get(&slot.model).cloned();
        let Some(why) = why else {
            slot.status().reason = None;
            return true;
        };
        {
            let mut s = slot.status();
            s.reason = Some(why);
            s.pid = None;
        }
        inner.set_state(slot, ReplicaState::Failed);
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return false },
            _ = stop.wait_for(|s| *s) => return false,
        }
    }
}

/// Resolves with the reason when a diagnosis blocks `model` (never without a gate).
async fn gpu_turns_bad(rx: &mut Option<watch::Receiver<Verdicts>>, model: &str) -> String {
    let Some(rx) = rx else {
        return std::future::pending().await;
    };
    let why = match rx.wait_for(|v| v.blocked.contains_key(model)).await {
        Ok(v) => Some(v.blocked.get(model).cloned().unwrap_or_default()),
        Err(_) => None,
    };
    match why {
        Some(why) => why,
        None => std::future::pending().await,
    }
}

/// Runs one start of the engine until it exits or the replica is stopped, moving it in and
/// out of rotation on `/health`.
async fn run(
    inner: &Arc<Inner>,
    slot: &Slot,
    runner: &mut Runner,
    stop: &mut watch::Receiver<bool>,
    ready_timeout: Duration,
    verdicts: &mut Option<watch::Receiver<Verdicts>>,
) -> Ended {
    let address = slot.address();
    let started = Instant::now();
    let mut failures = 0u32;
    loop {
        let state = slot.status().state;
        let period = if state == ReplicaState::Starting {
            inner.cfg.startup_poll
        } else {
            inner.cfg.health_interval
        };
        tokio::select! {
            why = runner.exited() => return Ended::Exited(why),
            _ = stop.wait_for(|s| *s) => return Ended::Stopped,
            why = gpu_turns_bad(verdicts, &slot.model) => return Ended::GpuFailed(why),
            _ = tokio::time::sleep(period) => {}
        }
        let ok = inner.healthy(&address).await;
        match (state, ok) {
            (ReplicaState::Ready, true) => failures = 0,
            (_, true) => {
                failures = 0;
                inner.set_state(slot, ReplicaState::Ready);
            }
            (ReplicaState::Ready, false) => {
                failures += 1;
                if failures >= UNREADY_AFTER {
                    inner.set_state(slot, ReplicaState::Unready);
                }
            }
            (ReplicaState::Starting, false) if started.elapsed() > ready_timeout => {
                return Ended::Exited(format!(
                    "/health did not answer within {} s",
                    ready_timeout.as_secs()
                ));
            }
            _ => {}
        }
    }
}

/// Takes the replica out of rotation and waits (at most `within`) for the gateway's requests
/// to it to finish.
async fn drain(inner: &Arc<Inner>, slot: &Slot, within: Duration) {
    inner.set_state(slot, ReplicaState::Draining);
    if inner
        .shutting_down
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return;
    }
    inner.publish(&slot.model);
    let address = slot.address();
    // Let the gateway apply the registry change before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let deadline = Instant::now() + within;
    loop {
        let n = (inner.in_flight)(&address);
        if n == 0 {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(replica = %slot.id, in_flight = n, "drain timed out; stopping anyway");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
