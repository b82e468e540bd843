//! Prints the calibration table (published vs model) as Markdown for docs/sim.md.
//!
//! `cargo run --release -p brix-sim --example calibrate`

fn main() {
    println!("| id | setup | published | model | error | fitted |");
    println!("|---|---|---|---|---|---|");
    for r in brix_sim::calibration_table() {
        println!(
            "| {} | {} | {:.2} {u} | {:.2} {u} | {:+.1} % | {} |",
            r.id,
            r.setup,
            r.published,
            r.model,
            r.error() * 100.0,
            if r.fitted {
                format!("yes (±{:.0} %)", r.tolerance * 100.0)
            } else {
                "no".into()
            },
            u = r.unit
        );
    }
}
