//! The capacity profiles Brix ships: Llama-3-8B (`llama-3-8b`) on L4, A10, L40S, A100-80GB
//! and H100, measured in virtual time (`brix optimize profile --method sim`, default grid and
//! SLO) so `brix optimize plan` and `brix up` plan without a profiling run. Files under
//! `crates/optimizer/profiles/<model>/<gpu>.json`; docs/optimizer.md says how they were made.

use crate::profile::Profile;

/// (model profile, GPU type, AIBrix profile JSON) of every built-in profile.
const BUILTIN: &[(&str, &str, &str)] = &[
    (
        "llama-3-8b",
        "L4",
        include_str!("../profiles/llama-3-8b/L4.json"),
    ),
    (
        "llama-3-8b",
        "A10",
        include_str!("../profiles/llama-3-8b/A10.json"),
    ),
    (
        "llama-3-8b",
        "L40S",
        include_str!("../profiles/llama-3-8b/L40S.json"),
    ),
    (
        "llama-3-8b",
        "A100-80GB",
        include_str!("../profiles/llama-3-8b/A100-80GB.json"),
    ),
    (
        "llama-3-8b",
        "H100",
        include_str!("../profiles/llama-3-8b/H100.json"),
    ),
];

/// The built-in profile of `model` (a `brix sim` model profile name) on `gpu` (GPU names
/// compare case-insensitively, as `brix sim --gpu` does), if Brix ships one.
pub fn builtin_profile(model: &str, gpu: &str) -> Option<Profile> {
    BUILTIN
        .iter()
        .find(|(m, g, _)| *m == model && g.eq_ignore_ascii_case(gpu))
        .and_then(|(_, _, json)| serde_json::from_str(json).ok())
}

/// The (model, GPU) pairs with a built-in profile, for error messages and listings.
pub fn builtin_profiles() -> impl Iterator<Item = (&'static str, &'static str)> {
    BUILTIN.iter().map(|(m, g, _)| (*m, *g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::{Cell, Grid};
    use crate::profile::Slo;

    #[test]
    fn every_builtin_loads_on_the_default_grid_and_slo() {
        for (m, g) in builtin_profiles() {
            let p = builtin_profile(m, g).unwrap_or_else(|| panic!("{m}/{g} does not parse"));
            assert!(p.validate().is_ok(), "{m}/{g}: {:?}", p.validate());
            assert_eq!(p.grid(), Grid::default(), "{m}/{g}");
            assert_eq!(p.slos, Some(Slo::default()), "{m}/{g}");
            assert_eq!(p.gpu, g);
            assert_eq!(p.model.as_deref(), Some(m));
            assert_eq!(p.method.as_deref(), Some("sim"));
            assert!(
                p.tputs.iter().flatten().any(|r| *r > 0.0),
                "{m}/{g}: all zero"
            );
        }
        assert!(builtin_profile("llama-3-8b", "h100").is_some());
        assert!(builtin_profile("llama-3-8b", "TPU").is_none());
        assert!(builtin_profile("no-such-model", "H100").is_none());
    }

    #[test]
    fn capacity_falls_with_longer_requests_and_rises_with_the_gpu() {
        let p = |g| builtin_profile("llama-3-8b", g).unwrap_or_else(|| panic!("{g}"));
        let (l4, h100) = (p("L4"), p("H100"));
        let g = Grid::default();
        let short = g.cell(128, 64);
        let (long_in, long_out) = (g.cell(4096, 64), g.cell(128, 1024));
        for prof in [&l4, &h100] {
            assert!(
                prof.capacity(short) > prof.capacity(long_in),
                "{}",
                prof.gpu
            );
            assert!(
                prof.capacity(short) > prof.capacity(long_out),
                "{}",
                prof.gpu
            );
        }
        // The H100 carries at least as much as the L4 in nearly every bucket.
        let cells = (0..g.len()).map(|i| g.cell_at(i));
        let worse = cells
            .filter(|c: &Cell| h100.capacity(*c) < l4.capacity(*c))
            .count();
        assert!(worse <= 5, "H100 below L4 in {worse} buckets");
        // Per dollar, no one type is cheapest in every bucket (at the catalog's prices the H100
        // wins most; docs/optimizer.md has the map).
        let all: Vec<Profile> = builtin_profiles().map(|(_, g)| p(g)).collect();
        let winners: std::collections::BTreeSet<&str> = (0..g.len())
            .map(|i| {
                let c = g.cell_at(i);
                let best = all
                    .iter()
                    .max_by(|a, b| (a.capacity(c) / a.cost).total_cmp(&(b.capacity(c) / b.cost)));
                best.map_or("", |b| b.gpu.as_str())
            })
            .collect();
        assert!(winners.len() >= 2, "{winners:?}");
    }
}
