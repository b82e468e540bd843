//! Tests for the workload module: pure table tests on small inline files, plus checks against
//! the real traces in `../shared/traces` when that folder is there.

mod arrival;
mod files;
mod generate;
mod spec;
mod traces;
mod vocab;

use std::path::PathBuf;

/// `../shared/traces` beside the checkout, if present (CI and developers have it).
fn traces_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/traces");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: no shared traces at {}", dir.display());
        None
    }
}

/// A unique path in the temp dir for one test's file.
fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("brix-workload-{}-{name}", std::process::id()))
}
