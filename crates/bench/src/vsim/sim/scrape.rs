//! The gateway's scrape of an engine's gauges, in virtual time.

use brix_router::fleet::Scrape;
use rand::Rng;

use super::Sim;
use super::slot::{Event, Life};

impl Sim<'_> {
    /// Feeds the engine's gauges to the routing core; schedules the next scrape.
    pub(super) fn scrape(&mut self, e: usize, now: f64) {
        if self.slots[e].life == Life::Stopped {
            return;
        }
        let s = self.slots[e].engine.snapshot();
        self.slots[e].gauges = Some((s.num_waiting as f64, s.kv_usage));
        let metrics = brix_router::EngineMetrics {
            running: Some(s.num_running as f64),
            waiting: Some(s.num_waiting as f64),
            kv_usage: Some(s.kv_usage),
        };
        // vLLM's `lora_requests_info`, for `lora-affinity`, from an engine with LoRA on.
        let lora = self.lora.is_some().then_some(brix_router::LoraState {
            max_lora: self.cfg.engine.max_loras,
            running: s.running_loras,
            waiting: s.waiting_loras,
        });
        let scrape = Scrape {
            metrics,
            lora,
            ..Scrape::default()
        };
        self.scraped_by_all(e, now, &scrape);
        self.fleet.scraped(e, now, scrape);
        if self.alive() {
            let next = now + self.cfg.scrape_interval_s * self.jitter.random_range(0.9..1.1);
            self.push(next, Event::Scrape(e));
        }
    }
}
