//! A request's slot on a pod: its in-flight count and its booked work (prefill until the first
//! token, then decode), given back exactly once when the guard drops, however the request ends.

use std::sync::Arc;

use brix_router::Estimate;
use brix_router::fleet::Booking;

use super::PodState;

impl PodState {
    /// Takes an in-flight slot, released when the guard drops (also on cancellation).
    #[cfg(test)]
    pub fn acquire(self: &Arc<Self>) -> InFlight {
        self.acquire_for(None)
    }

    /// [`Self::acquire`] for a request naming `adapter`, counted per adapter too until the
    /// guard drops, however the request ends. Books no prefill.
    #[cfg(test)]
    pub fn acquire_for(self: &Arc<Self>, adapter: Option<&str>) -> InFlight {
        self.acquire_booked(adapter, &Estimate::default(), 0.0)
    }

    /// [`Self::acquire_for`], booking the estimate's uncached prefill on the pod until the
    /// first token ([`InFlight::first_token`]); `units` is the prompt's length in the prefix
    /// index's unit (the response's usage then teaches the units-per-token ratio).
    pub fn acquire_booked(
        self: &Arc<Self>,
        adapter: Option<&str>,
        e: &Estimate,
        units: f64,
    ) -> InFlight {
        let booking = {
            let mut core = self.core();
            core.begin_for(adapter);
            core.book(e.uncached_tokens, e.prompt_tokens, e.predicted_s)
        };
        InFlight {
            pod: self.clone(),
            adapter: adapter.map(str::to_string),
            booking,
            units,
        }
    }
}

/// An in-flight slot on a pod; dropping it gives the slot and its booked work back.
#[derive(Debug)]
pub struct InFlight {
    pod: Arc<PodState>,
    /// The adapter the request named, counted per adapter on the pod.
    adapter: Option<String>,
    /// The work booked on the pod for this request.
    booking: Booking,
    /// The prompt's length in the prefix index's unit (0: unknown).
    units: f64,
}

impl InFlight {
    /// The pod the slot is on.
    pub fn pod(&self) -> &Arc<PodState> {
        &self.pod
    }

    /// The first token (or byte of a plain answer) arrived `ttft_s` after the request
    /// started: its prefill leaves the pod's queue and it counts as decoding.
    pub fn first_token(&mut self, ttft_s: Option<f64>) {
        self.pod.core().first_token(&mut self.booking, ttft_s);
    }

    /// The engine counted `prompt_tokens` for this prompt (its usage).
    pub fn prompt_tokens(&self, prompt_tokens: u64) {
        self.pod
            .core()
            .prompt_size(self.units, prompt_tokens as f64);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut core = self.pod.core();
        core.release(&mut self.booking);
        core.end_for(self.adapter.as_deref());
    }
}
