//! Why a request went where it did: the `ttft` estimate of every candidate, for the
//! `x-brix-route-estimate` response header (asked with `x-brix-explain: 1`) and a debug log line.

use std::fmt::Write;
use std::sync::Arc;

use brix_router::{Borrowed, PromptKeys, RouteRequest, estimate_among};

use crate::Gateway;
use crate::pool::PodState;

/// Most candidates one explanation lists (the rest are counted), so the header stays bounded.
pub(crate) const MAX_EXPLAINED: usize = 16;

/// Whether the client asked for the explanation header.
pub(crate) fn asked(headers: &http::HeaderMap) -> bool {
    headers
        .get("x-brix-explain")
        .is_some_and(|v| matches!(v.as_bytes(), b"1" | b"true" | b"yes"))
}

/// Every candidate's estimate, as `name=ttft_ms(uncached u queued q decoding d xc)` joined
/// by `, `, cheapest first: what the `ttft` cost model sees now. The same borrowing of
/// unmeasured pods as the strategy ([`Borrowed`]).
pub(crate) fn estimates(
    gw: &Gateway,
    model: &str,
    req: &RouteRequest<'_>,
    candidates: &[Arc<PodState>],
) -> String {
    let now = gw.now();
    let mut views: Vec<_> = candidates
        .iter()
        .map(|p| {
            let mut keys = req.tokens.map(|t| PromptKeys::new(t, req.adapter));
            p.snapshot_for(now, keys.as_mut())
        })
        .collect();
    let borrowed = Borrowed::of(&views);
    let index = gw.pool.index(model);
    let index = crate::pool::lock(&index);
    let matched = index.matched(req.blocks, &views, now);
    let mut rows: Vec<_> = views
        .drain(..)
        .zip(matched)
        .map(|(v, m)| {
            let e = estimate_among(req, &v, m, index.config(), borrowed);
            (v.name, v.decoding, e)
        })
        .collect();
    drop(index);
    rows.sort_by(|a, b| a.2.ttft_s.total_cmp(&b.2.ttft_s));
    let mut out = String::new();
    for (name, decoding, e) in rows.iter().take(MAX_EXPLAINED) {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let _ = write!(
            out,
            "{name}={:.1}ms(uncached {:.0} queued {:.0} decoding {decoding} x{:.2})",
            e.ttft_s * 1e3,
            e.uncached_tokens,
            e.queued_tokens,
            e.correction
        );
    }
    if rows.len() > MAX_EXPLAINED {
        let _ = write!(out, ", +{} more", rows.len() - MAX_EXPLAINED);
    }
    out
}
