//! Accelerator diagnostics through NVML (never `nvidia-smi` text): driver, card count, PCIe
//! link, ECC, retired pages, row remapping, NVLink; one verdict per GPU with its reasons, so
//! `brix diag`, `brix up` and a node job can keep work off a sick GPU.
//!
//! A call NVML answers `NotSupported` (row remapping before Ampere, retired pages on Ampere and
//! newer, NVLink on a PCIe card, ECC counters with ECC off) is "not applicable", never a failure:
//! the check is listed in [`GpuReport::not_applicable`].

mod checks;
mod table;

use std::ffi::OsStr;
use std::path::PathBuf;

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;
use serde::Serialize;

/// What to diagnose: which NVML library, how many cards the node should have, which GPUs.
#[derive(Clone, Debug, Default)]
pub struct DiagConfig {
    /// Path of the NVML library (`libnvidia-ml.so.1` on the loader path when `None`); the
    /// failure mock-up (`libbrix_nvml_mock.so`) is loaded this way.
    pub nvml_lib: Option<PathBuf>,
    /// The card count the node must show (AIBrix's `GPU_CARD_COUNT`); unchecked when `None`.
    pub expected_cards: Option<u32>,
    /// Only these GPU indices (all GPUs when `None`).
    pub gpus: Option<Vec<u32>>,
}

/// Which check a finding comes from (serialised as [`Check::as_str`]: `pcie_width`, `row_remap`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    /// The NVML library loads and `nvmlInit` succeeds (the driver answers).
    Driver,
    /// The node shows the expected number of cards.
    CardCount,
    /// A requested GPU index exists and its handle opens.
    Device,
    /// Name, UUID, architecture and PCI address read back.
    Identity,
    /// PCIe link width: current below the maximum (a degraded lane, AIBrix's link check).
    PcieWidth,
    /// PCIe link generation: current below the maximum.
    PcieGen,
    /// Uncorrectable ECC errors (DRAM, SRAM volatile; L1, L2, register file aggregate).
    EccUncorrectable,
    /// Correctable ECC errors above [`CORRECTABLE_WARN_THRESHOLD`].
    EccCorrectable,
    /// Pages retired for ECC errors, and pages pending retirement (pre-Ampere).
    RetiredPages,
    /// Row remapping failures and remappings pending a reset (Ampere and newer).
    RowRemap,
    /// Every NVLink the GPU has is active.
    NvLink,
}

impl Check {
    /// The stable name used in JSON and in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Driver => "driver",
            Check::CardCount => "card_count",
            Check::Device => "device",
            Check::Identity => "identity",
            Check::PcieWidth => "pcie_width",
            Check::PcieGen => "pcie_gen",
            Check::EccUncorrectable => "ecc_uncorrectable",
            Check::EccCorrectable => "ecc_correctable",
            Check::RetiredPages => "retired_pages",
            Check::RowRemap => "row_remap",
            Check::NvLink => "nvlink",
        }
    }
}

impl Serialize for Check {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// How bad a finding is: a `Fail` makes the GPU (or node) unhealthy, a `Warn` does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Do not schedule work here.
    Fail,
    /// Worth a look; work may still run.
    Warn,
}

/// One reason behind a verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The check that produced it.
    pub check: Check,
    /// Fail or Warn.
    pub severity: Severity,
    /// What was seen, with the numbers.
    pub message: String,
}

/// One GPU's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct GpuReport {
    /// NVML index.
    pub index: u32,
    /// NVML UUID (`GPU-...`), when it could be read.
    pub uuid: Option<String>,
    /// Product name, when it could be read.
    pub name: Option<String>,
    /// Architecture (`Ampere`, `Hopper`, ...), when it could be read.
    pub arch: Option<String>,
    /// PCI bus id (`00000000:3B:00.0`), when it could be read.
    pub pci_bus_id: Option<String>,
    /// No `Fail` finding.
    pub healthy: bool,
    /// The reasons, Fail and Warn.
    pub findings: Vec<Finding>,
    /// Checks this GPU does not support (NVML answered `NotSupported`): not failures.
    pub not_applicable: Vec<Check>,
}

/// The node's verdict: node-level findings (driver, card count) and one report per GPU.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// No `Fail` at node level nor on any checked GPU.
    pub healthy: bool,
    /// Driver version NVML reports, when it could be read.
    pub driver_version: Option<String>,
    /// Cards NVML counts, when it could count them.
    pub card_count: Option<u32>,
    /// Node-level findings (driver, card count, requested GPUs that do not exist).
    pub node: Vec<Finding>,
    /// One report per checked GPU, by index.
    pub gpus: Vec<GpuReport>,
}

/// Correctable (volatile) DRAM ECC errors above this count give a `Warn`: a few corrected
/// bits are normal on a large memory, a steady stream is a module on its way out.
pub const CORRECTABLE_WARN_THRESHOLD: u64 = 100;

/// Most cards one node can hold; a larger count from NVML is a broken library, and walking
/// it would take hours and a report of billions of entries.
pub const MAX_CARDS: u32 = 1024;

impl Report {
    /// Whether work may start on GPU `index`: `Err` with the reasons when the node has a
    /// failure (driver, card count: indices may have shifted), when the GPU was not checked,
    /// or when the GPU itself failed. What `brix up` asks before starting a replica.
    pub fn gpu_ok(&self, index: u32) -> Result<(), String> {
        let node: Vec<&str> = fails(&self.node).collect();
        if !node.is_empty() {
            return Err(format!("node: {}", node.join("; ")));
        }
        let Some(gpu) = self.gpus.iter().find(|g| g.index == index) else {
            return Err(format!(
                "GPU {index} was not diagnosed (not present or not requested)"
            ));
        };
        let reasons: Vec<&str> = fails(&gpu.findings).collect();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(format!("GPU {index}: {}", reasons.join("; ")))
        }
    }

    /// The report as an aligned text table, one row per GPU plus the node row.
    pub fn to_table(&self) -> String {
        table::render(self)
    }
}

fn fails(findings: &[Finding]) -> impl Iterator<Item = &str> {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Fail)
        .map(|f| f.message.as_str())
}

fn fail(check: Check, message: String) -> Finding {
    Finding {
        check,
        severity: Severity::Fail,
        message,
    }
}

fn warn(check: Check, message: String) -> Finding {
    Finding {
        check,
        severity: Severity::Warn,
        message,
    }
}

/// Runs every check and returns the verdicts. Blocking (NVML calls take milliseconds); never
/// panics: a missing library or failed `nvmlInit` is a node `Fail` naming NVML's error, and a
/// panic inside the NVML binding (e.g. a library without `nvmlShutdown`) is a node `Fail` too.
pub fn diagnose(cfg: &DiagConfig) -> Report {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cfg))).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Report {
            healthy: false,
            driver_version: None,
            card_count: None,
            node: vec![fail(
                Check::Driver,
                format!("the NVML binding panicked: {what}"),
            )],
            gpus: Vec::new(),
        }
    })
}

fn run(cfg: &DiagConfig) -> Report {
    let mut report = Report {
        healthy: false,
        driver_version: None,
        card_count: None,
        node: Vec::new(),
        gpus: Vec::new(),
    };
    let mut builder = Nvml::builder();
    if let Some(path) = &cfg.nvml_lib {
        builder.lib_path(OsStr::new(path.as_os_str()));
    }
    let nvml = match builder.init() {
        Ok(nvml) => nvml,
        Err(e) => {
            let lib = cfg.nvml_lib.as_ref().map_or_else(
                || "libnvidia-ml.so.1".to_owned(),
                |p| p.display().to_string(),
            );
            let msg = match &e {
                NvmlError::LibloadingError(le) => format!("cannot load NVML library {lib}: {le}"),
                NvmlError::FailedToLoadSymbol(s) => format!("{lib} is not an NVML library: {s}"),
                other => format!("nvmlInit failed: {} ({other})", nvml_error_name(other)),
            };
            report.node.push(fail(Check::Driver, msg));
            return report;
        }
    };
    report.driver_version = nvml.sys_driver_version().ok();
    let count = match nvml.device_count() {
        Ok(n) => n,
        Err(e) => {
            report.node.push(fail(
                Check::CardCount,
                format!("nvmlDeviceGetCount failed: {} ({e})", nvml_error_name(&e)),
            ));
            return report;
        }
    };
    report.card_count = Some(count);
    if count > MAX_CARDS {
        report.node.push(fail(
            Check::CardCount,
            format!(
                "{count} GPU cards reported, more than the {MAX_CARDS} any node holds: the NVML library is broken; no GPU examined"
            ),
        ));
        return report;
    }
    if let Some(expected) = cfg.expected_cards
        && expected != count
    {
        report.node.push(fail(
            Check::CardCount,
            format!("{count} GPU cards present, {expected} expected"),
        ));
    }
    let indices: Vec<u32> = match &cfg.gpus {
        None => (0..count).collect(),
        Some(list) => {
            let mut list = list.clone();
            list.sort_unstable();
            list.dedup();
            for &i in list.iter().filter(|&&i| i >= count) {
                report.node.push(fail(
                    Check::Device,
                    format!("GPU {i} requested but only {count} present"),
                ));
            }
            list.retain(|&i| i < count);
            list
        }
    };
    for index in indices {
        report.gpus.push(checks::gpu(&nvml, index));
    }
    report.healthy = fails(&report.node).next().is_none() && report.gpus.iter().all(|g| g.healthy);
    report
}

/// NVML's own name for an error (`NVML_ERROR_DRIVER_NOT_LOADED`), so a report says what the
/// driver said in the words of NVIDIA's documentation.
pub fn nvml_error_name(e: &NvmlError) -> String {
    let name = match e {
        NvmlError::Uninitialized => "NVML_ERROR_UNINITIALIZED",
        NvmlError::InvalidArg => "NVML_ERROR_INVALID_ARGUMENT",
        NvmlError::NotSupported => "NVML_ERROR_NOT_SUPPORTED",
        NvmlError::NoPermission => "NVML_ERROR_NO_PERMISSION",
        NvmlError::NotFound => "NVML_ERROR_NOT_FOUND",
        NvmlError::InsufficientSize(_) => "NVML_ERROR_INSUFFICIENT_SIZE",
        NvmlError::InsufficientPower => "NVML_ERROR_INSUFFICIENT_POWER",
        NvmlError::DriverNotLoaded => "NVML_ERROR_DRIVER_NOT_LOADED",
        NvmlError::Timeout => "NVML_ERROR_TIMEOUT",
        NvmlError::IrqIssue => "NVML_ERROR_IRQ_ISSUE",
        NvmlError::LibraryNotFound => "NVML_ERROR_LIBRARY_NOT_FOUND",
        NvmlError::FunctionNotFound => "NVML_ERROR_FUNCTION_NOT_FOUND",
        NvmlError::CorruptedInfoROM => "NVML_ERROR_CORRUPTED_INFOROM",
        NvmlError::GpuLost => "NVML_ERROR_GPU_IS_LOST",
        NvmlError::ResetRequired => "NVML_ERROR_RESET_REQUIRED",
        NvmlError::OperatingSystem => "NVML_ERROR_OPERATING_SYSTEM",
        NvmlError::LibRmVersionMismatch => "NVML_ERROR_LIB_RM_VERSION_MISMATCH",
        NvmlError::InUse => "NVML_ERROR_IN_USE",
        NvmlError::InsufficientMemory => "NVML_ERROR_MEMORY",
        NvmlError::NoData => "NVML_ERROR_NO_DATA",
        NvmlError::VgpuEccNotSupported => "NVML_ERROR_VGPU_ECC_NOT_SUPPORTED",
        NvmlError::Unknown => "NVML_ERROR_UNKNOWN",
        NvmlError::UnexpectedVariant(code) => return format!("NVML error {code}"),
        #[expect(deprecated, reason = "NVML still defines the code")]
        NvmlError::AlreadyInitialized => "NVML_ERROR_ALREADY_INITIALIZED",
        _ => "NVML_ERROR_UNKNOWN",
    };
    name.to_owned()
}
