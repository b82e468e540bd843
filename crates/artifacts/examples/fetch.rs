//! Fetches one artifact into a cache directory and prints what `Store::fetch` returned, with
//! credentials from the environment:
//! `cargo run -p brix-artifacts --example fetch -- ARTIFACT_URL [CACHE_DIR] [BASE_MODEL]`.

use brix_artifacts::{Credentials, Expect, Limits, Store};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        eprintln!("usage: fetch ARTIFACT_URL [CACHE_DIR] [BASE_MODEL]");
        return std::process::ExitCode::from(2);
    };
    let dir = args.next().unwrap_or_else(|| "artifact-cache".into());
    let expect = Expect {
        base_models: args.next().into_iter().collect(),
        max_rank: None,
    };
    let store = match Store::open(dir.into(), Limits::default()) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("cache: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match store.fetch(&url, &Credentials::from_env(), &expect).await {
        Ok(fetched) => {
            println!("{fetched:#?}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error ({}, retryable: {}): {e}",
                e.reason(),
                e.is_retryable()
            );
            std::process::ExitCode::FAILURE
        }
    }
}
