//! One replica's supervisor: starts its engine, gates traffic on `/health`, restarts it with
//! back-off when it exits, drains it on removal, and is itself restarted if it ever panics.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brix_api::EngineSpec;
use tokio::sync::watch;

use crate::local::{
    BACKOFF_MAX, BACKOFF_MIN, CRASH_LOOP, CRASH_WINDOW, Inner, STABLE_RUN, Slot, UNREADY_AFTER,
};
use crate::platform::ReplicaState;
use crate::runner::Runner;

/// How one run of an engine ended.
enum Ended {
    Exited(String),
    Stopped,
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
    loop {
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
                let ended = run(&inner, &slot, &mut runner, &mut stop, ready_timeout).await;
                if matches!(ended, Ended::Stopped) {
                    drain(&inner, &slot).await;
                }
                runner.stop(grace).await;
                ended
            }
            Err(why) => Ended::Exited(format!("could not start: {why}")),
        };
        let why = match ended {
            Ended::Stopped => break,
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
    // Gone: out of the table and the registry.
    remove(&inner, &slot);
}

/// Runs one start of the engine until it exits or the replica is stopped, moving it in and
/// out of rotation on `/health`.
async fn run(
    inner: &Arc<Inner>,
    slot: &Slot,
    runner: &mut Runner,
    stop: &mut watch::Receiver<bool>,
    ready_timeout: Duration,
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

/// Takes the replica out of rotation and waits for the gateway's requests to it to finish.
async fn drain(inner: &Arc<Inner>, slot: &Slot) {
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
    let deadline = Instant::now() + inner.cfg.drain_timeout;
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
