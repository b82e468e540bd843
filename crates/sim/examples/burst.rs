//! The published ShareGPT burst (320 prompts at once) replayed as vLLM 0.5.4 ran it and as a
//! V1 engine would: shows how much of its TTFT is the API server taking the burst in.
//!
//! `cargo run --release -p brix-sim --example burst`

fn main() {
    println!("| GPU | engine | mean TTFT | mean TPOT | median TPOT | output tok/s | mean e2e |");
    println!("|---|---|---|---|---|---|---|");
    for gpu in ["A100-80GB", "H100"] {
        for (as_v0, engine) in [(true, "0.5.4 (front end blocks steps)"), (false, "V1")] {
            let Some(m) = brix_sim::sharegpt_burst(gpu, as_v0) else {
                eprintln!("no profile for {gpu}");
                std::process::exit(1);
            };
            println!(
                "| {gpu} | {engine} | {:.0} ms | {:.1} ms | {:.1} ms | {:.0} | {:.0} ms |",
                m.ttft * 1e3,
                m.tpot * 1e3,
                m.median_tpot * 1e3,
                m.throughput,
                m.e2e * 1e3
            );
        }
    }
}
