//! The engine driver: one task owns the [`Engine`] and runs it in real time.
//!
//! Virtual `now` is seconds since the server started. While the engine has work the driver
//! calls [`Engine::step`], sleeps until the step's end, and only then hands out the step's
//! tokens and finished requests. Commands that arrive meanwhile (new requests, aborts, adapter
//! changes) are buffered and applied after the step, between iterations, as vLLM's engine core
//! does; a request keeps the arrival time it was sent with, so queueing shows in its TTFT.
//! Snapshots are read-only and answered at once. All timing goes through tokio's clock, so the
//! driver runs unchanged under paused time.
//!
//! Back-to-back steps are chained in virtual time (the next starts where the last ended) so
//! the timer's millisecond granularity does not stretch every step; the driver only re-reads
//! the clock when it fell behind by more than [`SLACK`] or went idle.
//!
//! Under failure: a handler that goes away drops its [`Generation`], whose guard sends an abort
//! (freeing the request's KV blocks); if the driver itself stops, every handle call returns
//! [`DriverError::Gone`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use brix_kvevents::{KvEventsConfig, Publisher};
use brix_sim::{
    AddError, Engine, EngineSnapshot, EngineStats, FinishReason, Finished, LoraError, LoraWeights,
    NewRequest, RequestId, StepOutput,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Duration, Instant};

use crate::kv_events;
use crate::metrics::Metrics;

/// How far real time may run past the last step's end before the next step starts from the
/// real clock instead: two timer ticks.
const SLACK: f64 = 0.002;

/// Maps virtual engine time (seconds since start) to tokio instants and back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock whose zero is now.
    pub(crate) fn start() -> Self {
        Self {
            start: Instant::now(),
        }
    }
    /// Seconds since start.
    pub(crate) fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
    /// The instant `t` seconds after start (start itself for a bad `t`).
    pub(crate) fn instant(&self, t: f64) -> Instant {
        self.start + Duration::try_from_secs_f64(t).unwrap_or(Duration::ZERO)
    }
}

/// What a generation's receiver sees, in order: tokens, then one `Done`.
#[derive(Debug)]
pub(crate) enum Event {
    /// One generated token id.
    Token(u32),
    /// The request ended; `last` is the token of the final step (None when aborted).
    Done {
        last: Option<u32>,
        finished: Finished,
    },
}

/// Why a driver call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DriverError {
    /// The engine refused the request.
    #[error(transparent)]
    Rejected(#[from] AddError),
    /// The driver task has stopped.
    #[error("the engine driver has stopped")]
    Gone,
}

/// Engine gauges plus the adapter list, read between steps.
#[derive(Clone, Debug)]
pub(crate) struct DriverSnapshot {
    pub(crate) engine: EngineSnapshot,
    /// (name, path) of loaded adapters.
    pub(crate) loras: Vec<(String, String)>,
}

type Reply<T> = oneshot::Sender<T>;

enum Command {
    Add {
        req: NewRequest,
        arrival: f64,
        events: mpsc::UnboundedSender<Event>,
        reply: Reply<Result<(), AddError>>,
    },
    Abort(RequestId),
    /// The front end ended the request (a stop string): it finishes as `stop`.
    Finish(RequestId),
    LoadLora {
        name: String,
        path: String,
        weights: LoraWeights,
        inplace: bool,
        reply: Reply<Result<(), LoraError>>,
    },
    UnloadLora {
        name: String,
        reply: Reply<Result<(), LoraError>>,
    },
    Snapshot(Reply<DriverSnapshot>),
    /// The KV events publisher is up: publish each step's events through it from now on.
    KvPublisher(Publisher),
    /// vLLM's `reset_prefix_cache`: true when done, false while requests hold blocks.
    ResetPrefixCache(Reply<bool>),
}

/// The handlers' side of the driver: cheap to clone, one per server.
#[derive(Clone, Debug)]
pub(crate) struct EngineHandle {
    tx: mpsc::UnboundedSender<Command>,
    clock: Clock,
    next_id: Arc<AtomicU64>,
}

impl EngineHandle {
    /// Starts the driver task for `engine` on the current runtime.
    pub(crate) fn spawn(engine: Engine, metrics: Arc<Metrics>, clock: Clock) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = Driver {
            last_stats: engine.stats().clone(),
            engine,
            rx,
            metrics,
            clock,
            subscribers: HashMap::new(),
            engine_time: 0.0,
            kv_publisher: None,
        };
        tokio::spawn(driver.run());
        Self {
            tx,
            clock,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Opens the KV events sockets of `cfg` in the background; once they are up, every step
    /// with KV events publishes one batch (a failure to open them is logged).
    pub(crate) fn start_kv_publisher(&self, cfg: KvEventsConfig) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            match Publisher::start(&cfg).await {
                Ok(p) => {
                    tracing::info!(
                        endpoint = p.endpoint(),
                        replay = p.replay_endpoint().unwrap_or("none"),
                        "publishing KV events"
                    );
                    let _ = tx.send(Command::KvPublisher(p));
                }
                Err(e) => tracing::error!("--kv-events-config: {e}"),
            }
        });
    }

    /// Whether the driver task still runs.
    pub(crate) fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Queues a request (its `id` is assigned here) and returns its token stream.
    pub(crate) async fn submit(&self, mut req: NewRequest) -> Result<Generation, DriverError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        req.id = id;
        let (events, rx) = mpsc::unbounded_channel();
        let (reply, answer) = oneshot::channel();
        // Armed before sending: if this future is dropped while the engine is mid-step, the
        // abort is queued right behind the add and the request never runs unobserved.
        let guard = AbortGuard {
            id,
            tx: self.tx.clone(),
            armed: true,
        };
        let arrival = self.clock.now();
        self.send(Command::Add {
            req,
            arrival,
            events,
            reply,
        })?;
        answer.await.map_err(|_| DriverError::Gone)??;
        Ok(Generation { rx, guard })
    }

    /// Registers (or with `inplace` reloads) an adapter (applied between steps).
    pub(crate) async fn load_lora(
        &self,
        name: String,
        path: String,
        weights: LoraWeights,
        inplace: bool,
    ) -> Result<Result<(), LoraError>, DriverError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::LoadLora {
            name,
            path,
            weights,
            inplace,
            reply,
        })?;
        answer.await.map_err(|_| DriverError::Gone)
    }

    /// Removes an adapter (applied between steps).
    pub(crate) async fn unload_lora(
        &self,
        name: String,
    ) -> Result<Result<(), LoraError>, DriverError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::UnloadLora { name, reply })?;
        answer.await.map_err(|_| DriverError::Gone)
    }

    /// Forgets every cached block (`AllBlocksCleared` goes out with the next step's events,
    /// as vLLM publishes it); false while requests hold blocks, as vLLM refuses.
    pub(crate) async fn reset_prefix_cache(&self) -> Result<bool, DriverError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::ResetPrefixCache(reply))?;
        answer.await.map_err(|_| DriverError::Gone)
    }

    /// Gauges and adapters now.
    pub(crate) async fn snapshot(&self) -> Result<DriverSnapshot, DriverError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Snapshot(reply))?;
        answer.await.map_err(|_| DriverError::Gone)
    }

    fn send(&self, cmd: Command) -> Result<(), DriverError> {
        self.tx.send(cmd).map_err(|_| DriverError::Gone)
    }
}

/// Sends an abort for its request when dropped while armed.
#[derive(Debug)]
struct AbortGuard {
    id: RequestId,
    tx: mpsc::UnboundedSender<Command>,
    armed: bool,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if self.armed {
            // A closed channel means the driver is gone and the request with it.
            let _ = self.tx.send(Command::Abort(self.id));
        }
    }
}

/// One admitted request's output; dropping it before `Done` aborts the request.
#[derive(Debug)]
pub(crate) struct Generation {
    rx: mpsc::UnboundedReceiver<Event>,
    guard: AbortGuard,
}

impl Generation {
    /// The engine request's id (unique in this server run).
    pub(crate) fn id(&self) -> RequestId {
        self.guard.id
    }

    /// The next event; None only if the driver stopped mid-request.
    pub(crate) async fn recv(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Ends the request as finished by the front end (a stop string matched): the engine
    /// books it as `stop`, not as an abort.
    pub(crate) fn finish(&mut self) {
        if self.guard.armed {
            self.guard.armed = false;
            let _ = self.guard.tx.send(Command::Finish(self.guard.id));
        }
    }

    /// Polls for the next event, disarming the abort once the request is done.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let ev = std::task::ready!(self.rx.poll_recv(cx));
        if matches!(ev, Some(Event::Done { .. })) {
            self.guard.armed = false;
        }
        Poll::Ready(ev)
    }
}

struct Driver {
    engine: Engine,
    rx: mpsc::UnboundedReceiver<Command>,
    metrics: Arc<Metrics>,
    clock: Clock,
    subscribers: HashMap<RequestId, mpsc::UnboundedSender<Event>>,
    last_stats: EngineStats,
    /// When the last step ended, in virtual seconds.
    engine_time: f64,
    /// Where each step's KV events go (None: off, or the sockets are not up yet).
    kv_publisher: Option<Publisher>,
}

impl Driver {
    async fn run(mut self) {
        let mut pending = Vec::new();
        loop {
            while let Ok(cmd) = self.rx.try_recv() {
                pending.push(cmd);
            }
            let start = self.next_start();
            for cmd in std::mem::take(&mut pending) {
                self.apply(cmd, start);
            }
            if !self.engine.has_work() {
                match self.rx.recv().await {
                    Some(cmd) => pending.push(cmd),
                    None => return,
                }
                continue;
            }
            let Some(out) = self.engine.step(start) else {
                continue;
            };
            self.engine_time = out.end;
            let open = self
                .wait_until(self.clock.instant(out.end), &mut pending)
                .await;
            self.deliver(out);
            self.publish_kv_events();
            if !open {
                return;
            }
        }
    }

    /// One batch with the step's KV events, as vLLM's scheduler publishes after each step.
    fn publish_kv_events(&mut self) {
        let events = self.engine.take_kv_events();
        if events.is_empty() {
            return;
        }
        if let Some(p) = &self.kv_publisher
            && !p.publish(kv_events::batch(events))
        {
            tracing::warn!(dropped = p.dropped(), "KV events queue full: batch dropped");
        }
    }

    /// Where the next step starts: right after the last one unless real time ran further.
    fn next_start(&self) -> f64 {
        let now = self.clock.now();
        if now - self.engine_time <= SLACK {
            self.engine_time
        } else {
            now
        }
    }

    /// Sleeps until `deadline`, buffering commands; false when every handle is gone.
    async fn wait_until(&mut self, deadline: Instant, pending: &mut Vec<Command>) -> bool {
        let sleep = tokio::time::sleep_until(deadline);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return true,
                cmd = self.rx.recv() => match cmd {
                    Some(Command::Snapshot(reply)) => {
                        let _ = reply.send(self.snapshot());
                    }
                    Some(cmd) => pending.push(cmd),
                    None => return false,
                },
            }
        }
    }

    /// Applies one command before the step starting at `start` (arrivals cannot be later).
    fn apply(&mut self, cmd: Command, start: f64) {
        match cmd {
            Command::Add {
                req,
                arrival,
                events,
                reply,
            } => {
                let id = req.id;
                let result = self.engine.add_request(req, arrival.min(start));
                if result.is_ok() {
                    self.subscribers.insert(id, events);
                }
                // If the handler is gone its guard's abort is already queued behind this.
                let _ = reply.send(result);
            }
            Command::Abort(id) => self.abort(id, start),
            Command::Finish(id) => self.finish(id, start),
            Command::LoadLora {
                name,
                path,
                weights,
                inplace,
                reply,
            } => {
                let _ = reply.send(self.engine.load_lora_with(&name, &path, weights, inplace));
            }
            Command::UnloadLora { name, reply } => {
                let _ = reply.send(self.engine.unload_lora(&name));
            }
            Command::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Command::KvPublisher(p) => self.kv_publisher = Some(p),
            Command::ResetPrefixCache(reply) => {
                let _ = reply.send(self.engine.reset_prefix_cache());
            }
        }
    }

    /// A client that left: the request is dropped and, as in vLLM, not booked as finished.
    fn abort(&mut self, id: RequestId, now: f64) {
        if let Some(finished) = self.engine.abort(id, now) {
            self.notify_done(id, None, finished);
        }
    }

    /// A request the front end ended (stop string): booked as finished with `stop`.
    fn finish(&mut self, id: RequestId, now: f64) {
        if let Some(mut finished) = self.engine.abort(id, now) {
            finished.reason = FinishReason::Stop;
            self.metrics.record_finished(&finished);
            self.subscribers.remove(&id);
        }
    }

    fn snapshot(&self) -> DriverSnapshot {
        DriverSnapshot {
            engine: self.engine.snapshot(),
            loras: self.engine.loras(),
        }
    }

    /// Books the step in the metrics and hands each request its token or its end.
    fn deliver(&mut self, out: StepOutput) {
        let stats = self.engine.stats().clone();
        let mut finished: HashMap<RequestId, Finished> =
            out.finished.iter().map(|f| (f.id, f.clone())).collect();
        // Prompt tokens are booked when a request's first token appears, split by source.
        let (mut cached, mut external) = (0u64, 0u64);
        for t in out.tokens.iter().filter(|t| t.first) {
            let split = match finished.get(&t.id) {
                Some(f) => Some((f.cached_tokens, f.external_tokens)),
                None => self.engine.prompt_sources_of(t.id),
            };
            let (c, e) = split.unwrap_or((0, 0));
            cached += u64::from(c);
            external += u64::from(e);
        }
        self.metrics
            .record_step(&out, &self.last_stats, &stats, (cached, external));
        self.last_stats = stats;
        for t in &out.tokens {
            match finished.remove(&t.id) {
                Some(f) => {
                    self.metrics.record_finished(&f);
                    self.notify_done(t.id, Some(t.token), f);
                }
                None => self.notify(t.id, Event::Token(t.token)),
            }
        }
        // The engine emits a token in every finishing step; this covers any that did not.
        for (id, f) in finished {
            self.metrics.record_finished(&f);
            self.notify_done(id, None, f);
        }
    }

    fn notify(&self, id: RequestId, ev: Event) {
        if let Some(tx) = self.subscribers.get(&id) {
            // A closed receiver means the client left; its guard's abort is on the way.
            let _ = tx.send(ev);
        }
    }

    fn notify_done(&mut self, id: RequestId, last: Option<u32>, finished: Finished) {
        if let Some(tx) = self.subscribers.remove(&id) {
            let _ = tx.send(Event::Done { last, finished });
        }
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
