//! A stand-in `libnvidia-ml` that answers the NVML calls Brix makes from AIBrix's GPU mock
//! TOML, so every failure in that schema can be produced on demand without broken hardware.
//!
//! Unlike AIBrix's `nvml_injectiond.so` (an `/etc/ld.so.preload` hijack that overrides some
//! calls of the real NVML), this library *is* the NVML: there is no real one behind it. Load it
//! by path (`brix diag --nvml-lib target/debug/libbrix_nvml_mock.so`, nvml-wrapper's
//! `lib_path`) or copy it as `libnvidia-ml.so.1` into a directory on `LD_LIBRARY_PATH`.
//!
//! The configuration is read at `nvmlInit` from `$BRIX_NVML_MOCK_CONFIG`, else AIBrix's
//! `/opt/gpu_mock/gpu_mock_conf.toml`, else nothing (one healthy card). A file that does not
//! parse makes `nvmlInit` answer `NVML_ERROR_UNKNOWN` with the reason on stderr.

// This crate is the one place in the workspace that needs `unsafe` (allowed in its Cargo.toml
// `[lints]`): it exports a C ABI and writes through the raw out-pointers NVML's callers pass.
// Every unsafe block is a single pointer write or slice view in `ffi`, after a null check,
// with a SAFETY comment; every export catches panics so none crosses the C boundary.

pub mod config;
mod device;
mod ffi;

pub use config::{Config, DeviceConf};
pub use device::Device;
