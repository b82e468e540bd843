//! Writes the optimizer's built-in capacity profiles: llama-3-8b on L4, A10, L40S, A100-80GB
//! and H100 (default grid and SLO), measured in virtual time (`<out>/sim/<gpu>.json`) and
//! derived from the roofline (`<out>/analytic/<gpu>.json`), and the analytic/sim comparison
//! (`<out>/compare.json`). The committed profiles under `crates/optimizer/profiles/` are the
//! `sim` ones. Run: `cargo run --release -p brix-bench --example optimizer_profiles -- OUT`.

use std::path::PathBuf;
use std::time::Instant;

use brix_bench::profiling::{
    AnalyticMeasurer, Measurer, ProfileMeta, Search, SimMeasurer, build_profile, compare,
};
use brix_optimizer::{Grid, Profile, Slo};
use brix_sim::Catalog;

const MODEL: &str = "llama-3-8b";
const GPUS: &[&str] = &["L4", "A10", "L40S", "A100-80GB", "H100"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: optimizer_profiles OUT")?,
    );
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let catalog = Catalog::builtin();
    let model = catalog.model(MODEL)?.clone();
    let (grid, slo, search) = (Grid::default(), Slo::default(), Search::default());
    let mut comparisons = Vec::new();
    for method in ["analytic", "sim"] {
        std::fs::create_dir_all(out.join(method))?;
    }
    for gpu_name in GPUS {
        let gpu = catalog.gpu(gpu_name)?.clone();
        let sim = SimMeasurer::new(model.clone(), gpu.clone())?;
        let analytic = AnalyticMeasurer::new(&model, &gpu)?;
        let mut made: Vec<Profile> = Vec::new();
        for (method, m) in [
            ("analytic", &analytic as &dyn Measurer),
            ("sim", &sim as &dyn Measurer),
        ] {
            let meta = ProfileMeta {
                gpu: gpu.name.clone(),
                cost: gpu.price_per_hour * f64::from(model.tensor_parallel_size),
                model: MODEL.into(),
                method: method.into(),
                max_model_len: sim.max_model_len(),
            };
            let t0 = Instant::now();
            let p = build_profile(m, &meta, &grid, &slo, &search, threads, &|_, _| {})?;
            eprintln!("{gpu_name} {method}: {:.1} s", t0.elapsed().as_secs_f64());
            let path = out.join(method).join(format!("{gpu_name}.json"));
            std::fs::write(&path, serde_json::to_string_pretty(&p)? + "\n")?;
            made.push(p);
        }
        if let Some(c) = compare(&made[0], &made[1]) {
            eprintln!(
                "{gpu_name} analytic/sim: median {:.2}, min {:.2}, max {:.2}, {:.0} % within ±20 %",
                c.median_ratio,
                c.min_ratio,
                c.max_ratio,
                100.0 * c.within_20pct
            );
            comparisons.push(c);
        }
    }
    std::fs::write(
        out.join("compare.json"),
        serde_json::to_string_pretty(&comparisons)? + "\n",
    )?;
    Ok(())
}
