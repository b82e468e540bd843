//! The per-GPU checks: each reads NVML through nvml-wrapper and turns what it sees into
//! findings; `NotSupported` marks the check not applicable on this GPU.

use std::collections::BTreeSet;

use nvml_wrapper::enum_wrappers::device::{
    EccCounter, MemoryError, MemoryLocation, RetirementCause,
};
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::{Device, Nvml};

use crate::{
    CORRECTABLE_WARN_THRESHOLD, Check, Finding, GpuReport, Severity, fail, nvml_error_name, warn,
};

/// NVML field ids (nvml.h `NVML_FI_DEV_*`): row remapping has no dedicated nvml-wrapper call,
/// so it is read as field values, the same counters `nvidia-smi -q` and DCGM read.
const FI_NVLINK_LINK_COUNT: u32 = 91;
const FI_REMAPPED_COR: u32 = 142;
const FI_REMAPPED_UNC: u32 = 143;
const FI_REMAPPED_PENDING: u32 = 144;
const FI_REMAPPED_FAILURE: u32 = 145;
/// `NVML_NVLINK_MAX_LINKS`: probed when the GPU does not say how many links it has.
const NVLINK_MAX_LINKS: u32 = 18;

/// Findings of one GPU while its checks run, and which checks did or did not apply.
struct Acc {
    findings: Vec<Finding>,
    applicable: BTreeSet<Check>,
    not_applicable: BTreeSet<Check>,
}

impl Acc {
    /// The value of one NVML call, or `None` with the error recorded: `NotSupported` (or a
    /// function the library lacks) = not applicable; a lost GPU or one that needs a reset =
    /// Fail; anything else = Warn (the check could not run).
    fn read<T>(&mut self, check: Check, call: &str, r: Result<T, NvmlError>) -> Option<T> {
        match r {
            Ok(v) => {
                self.applicable.insert(check);
                Some(v)
            }
            Err(e) => {
                self.error(check, call, &e);
                None
            }
        }
    }

    fn error(&mut self, check: Check, call: &str, e: &NvmlError) {
        match e {
            NvmlError::NotSupported
            | NvmlError::FunctionNotFound
            | NvmlError::FailedToLoadSymbol(_) => {
                self.not_applicable.insert(check);
            }
            NvmlError::GpuLost | NvmlError::ResetRequired => {
                self.applicable.insert(check);
                self.findings
                    .push(fail(check, format!("{call}: {} ({e})", nvml_error_name(e))));
            }
            _ => {
                self.applicable.insert(check);
                self.findings.push(warn(
                    check,
                    format!("{call} failed: {} ({e}); check not run", nvml_error_name(e)),
                ));
            }
        }
    }

    fn push(&mut self, f: Finding) {
        self.findings.push(f);
    }
}

/// All checks of GPU `index`.
pub(crate) fn gpu(nvml: &Nvml, index: u32) -> GpuReport {
    let mut acc = Acc {
        findings: Vec::new(),
        applicable: BTreeSet::new(),
        not_applicable: BTreeSet::new(),
    };
    let mut report = GpuReport {
        index,
        uuid: None,
        name: None,
        arch: None,
        pci_bus_id: None,
        healthy: false,
        findings: Vec::new(),
        not_applicable: Vec::new(),
    };
    match nvml.device_by_index(index) {
        Ok(dev) => {
            identity(&dev, &mut acc, &mut report);
            pcie(&dev, &mut acc);
            ecc(&dev, &mut acc);
            retired_pages(&dev, &mut acc);
            row_remap(&dev, &mut acc);
            nvlink(&dev, &mut acc);
        }
        Err(e) => acc.push(fail(
            Check::Device,
            format!("cannot open GPU {index}: {} ({e})", nvml_error_name(&e)),
        )),
    }
    report.healthy = !acc.findings.iter().any(|f| f.severity == Severity::Fail);
    report.not_applicable = acc
        .not_applicable
        .difference(&acc.applicable)
        .copied()
        .collect();
    report.findings = acc.findings;
    report
}

fn identity(dev: &Device<'_>, acc: &mut Acc, report: &mut GpuReport) {
    report.name = acc.read(Check::Identity, "nvmlDeviceGetName", dev.name());
    report.uuid = acc.read(Check::Identity, "nvmlDeviceGetUUID", dev.uuid());
    report.arch = match dev.architecture() {
        Ok(a) => Some(format!("{a:?}")),
        Err(NvmlError::UnexpectedVariant(code)) => Some(format!("unknown ({code})")),
        Err(e) => acc.read::<String>(Check::Identity, "nvmlDeviceGetArchitecture", Err(e)),
    };
    report.pci_bus_id = acc
        .read(Check::Identity, "nvmlDeviceGetPciInfo_v3", dev.pci_info())
        .map(|p| p.bus_id);
}

fn pcie(dev: &Device<'_>, acc: &mut Acc) {
    let cur = acc.read(
        Check::PcieWidth,
        "nvmlDeviceGetCurrPcieLinkWidth",
        dev.current_pcie_link_width(),
    );
    let max = acc.read(
        Check::PcieWidth,
        "nvmlDeviceGetMaxPcieLinkWidth",
        dev.max_pcie_link_width(),
    );
    if let (Some(cur), Some(max)) = (cur, max)
        && cur < max
    {
        acc.push(fail(
            Check::PcieWidth,
            format!("PCIe link width x{cur}, max x{max}: a degraded link"),
        ));
    }
    let cur = acc.read(
        Check::PcieGen,
        "nvmlDeviceGetCurrPcieLinkGeneration",
        dev.current_pcie_link_gen(),
    );
    let max = acc.read(
        Check::PcieGen,
        "nvmlDeviceGetMaxPcieLinkGeneration",
        dev.max_pcie_link_gen(),
    );
    if let (Some(cur), Some(max)) = (cur, max)
        && cur < max
    {
        acc.push(warn(
            Check::PcieGen,
            format!("PCIe link generation {cur}, max {max} (an idle GPU lowers it to save power; under load it means a bad slot or riser)"),
        ));
    }
}

fn ecc(dev: &Device<'_>, acc: &mut Acc) {
    const UNCORRECTABLE: [(EccCounter, MemoryLocation, &str); 5] = [
        (
            EccCounter::Volatile,
            MemoryLocation::Device,
            "DRAM (volatile)",
        ),
        (
            EccCounter::Volatile,
            MemoryLocation::SRAM,
            "SRAM (volatile)",
        ),
        (
            EccCounter::Aggregate,
            MemoryLocation::L1Cache,
            "L1 cache (aggregate)",
        ),
        (
            EccCounter::Aggregate,
            MemoryLocation::L2Cache,
            "L2 cache (aggregate)",
        ),
        (
            EccCounter::Aggregate,
            MemoryLocation::RegisterFile,
            "register file (aggregate)",
        ),
    ];
    let mut seen = Vec::new();
    for (counter, location, label) in UNCORRECTABLE {
        let r = dev.memory_error_counter(MemoryError::Uncorrected, counter, location);
        if let Some(n) = acc.read(
            Check::EccUncorrectable,
            "nvmlDeviceGetMemoryErrorCounter",
            r,
        ) && n > 0
        {
            seen.push(format!("{label} {n}"));
        }
    }
    if seen.is_empty() {
        let r = dev.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile);
        if let Some(n) = acc.read(Check::EccUncorrectable, "nvmlDeviceGetTotalEccErrors", r)
            && n > 0
        {
            seen.push(format!("total (volatile) {n}"));
        }
    }
    if !seen.is_empty() {
        acc.push(fail(
            Check::EccUncorrectable,
            format!("uncorrectable ECC errors: {}", seen.join(", ")),
        ));
    }
    let r = dev.memory_error_counter(
        MemoryError::Corrected,
        EccCounter::Volatile,
        MemoryLocation::Device,
    );
    let corrected = match acc.read(Check::EccCorrectable, "nvmlDeviceGetMemoryErrorCounter", r) {
        Some(n) => Some(n),
        None => {
            let r = dev.total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile);
            acc.read(Check::EccCorrectable, "nvmlDeviceGetTotalEccErrors", r)
        }
    };
    if let Some(n) = corrected
        && n > CORRECTABLE_WARN_THRESHOLD
    {
        acc.push(warn(
            Check::EccCorrectable,
            format!("{n} correctable DRAM ECC errors since the driver loaded (warn above {CORRECTABLE_WARN_THRESHOLD})"),
        ));
    }
}

fn retired_pages(dev: &Device<'_>, acc: &mut Acc) {
    for (cause, what, severity) in [
        (
            RetirementCause::DoubleBitEccError,
            "double-bit ECC errors",
            Severity::Fail,
        ),
        (
            RetirementCause::MultipleSingleBitEccErrors,
            "multiple single-bit ECC errors",
            Severity::Warn,
        ),
    ] {
        let count = match dev.retired_pages(cause) {
            Ok(pages) => {
                acc.applicable.insert(Check::RetiredPages);
                (!pages.is_empty()).then(|| pages.len().to_string())
            }
            // Real NVML answers a size query with INSUFFICIENT_SIZE when pages exist; the
            // wrapper passes no count back, so the number is "at least one".
            Err(NvmlError::InsufficientSize(n)) => {
                acc.applicable.insert(Check::RetiredPages);
                Some(n.map_or_else(|| "at least 1".to_owned(), |n| n.to_string()))
            }
            Err(e) => {
                acc.error(Check::RetiredPages, "nvmlDeviceGetRetiredPages", &e);
                None
            }
        };
        if let Some(count) = count {
            acc.push(Finding {
                check: Check::RetiredPages,
                severity,
                message: format!("{count} pages retired for {what}"),
            });
        }
    }
    let pending = acc.read(
        Check::RetiredPages,
        "nvmlDeviceGetRetiredPagesPendingStatus",
        dev.are_pages_pending_retired(),
    );
    if pending == Some(true) {
        acc.push(fail(
            Check::RetiredPages,
            "pages pending retirement: the GPU needs a reset".to_owned(),
        ));
    }
}

/// Reads integer field values; `None` per field that NVML does not answer (recorded in `acc`).
fn fields(dev: &Device<'_>, acc: &mut Acc, check: Check, ids: &[u32]) -> Vec<Option<u64>> {
    let ids: Vec<FieldId> = ids.iter().map(|&i| FieldId(i)).collect();
    let Some(samples) = acc.read(
        check,
        "nvmlDeviceGetFieldValues",
        dev.field_values_for(&ids),
    ) else {
        return vec![None; ids.len()];
    };
    samples
        .into_iter()
        .map(|s| {
            let value = s.and_then(|s| s.value);
            match acc.read(check, "nvmlDeviceGetFieldValues", value)? {
                SampleValue::U32(v) => Some(u64::from(v)),
                SampleValue::U64(v) => Some(v),
                SampleValue::I64(v) => u64::try_from(v).ok(),
                SampleValue::F64(v) => Some(v.max(0.0) as u64),
            }
        })
        .collect()
}

fn row_remap(dev: &Device<'_>, acc: &mut Acc) {
    let ids = [
        FI_REMAPPED_COR,
        FI_REMAPPED_UNC,
        FI_REMAPPED_PENDING,
        FI_REMAPPED_FAILURE,
    ];
    let v = fields(dev, acc, Check::RowRemap, &ids);
    let rows = format!(
        "{} rows remapped for correctable, {} for uncorrectable errors",
        v[0].map_or_else(|| "?".to_owned(), |n| n.to_string()),
        v[1].map_or_else(|| "?".to_owned(), |n| n.to_string()),
    );
    if v[3].is_some_and(|n| n > 0) {
        acc.push(fail(
            Check::RowRemap,
            format!("row remapping failure: the GPU is out of spare rows ({rows})"),
        ));
    }
    if v[2].is_some_and(|n| n > 0) {
        acc.push(fail(
            Check::RowRemap,
            format!("row remapping pending: the GPU needs a reset ({rows})"),
        ));
    }
}

fn nvlink(dev: &Device<'_>, acc: &mut Acc) {
    let count = fields(dev, acc, Check::NvLink, &[FI_NVLINK_LINK_COUNT])[0];
    // The link-count field is optional; the applicability of NVLink is decided by the links.
    acc.applicable.remove(&Check::NvLink);
    acc.not_applicable.remove(&Check::NvLink);
    let links = match count {
        Some(0) => {
            acc.not_applicable.insert(Check::NvLink);
            return;
        }
        Some(n) => u32::try_from(n)
            .unwrap_or(NVLINK_MAX_LINKS)
            .min(NVLINK_MAX_LINKS),
        None => NVLINK_MAX_LINKS,
    };
    let (mut present, mut down) = (0u32, Vec::new());
    for link in 0..links {
        match dev.link_wrapper_for(link).is_active() {
            Ok(true) => present += 1,
            Ok(false) => {
                present += 1;
                down.push(link.to_string());
            }
            // A link index the GPU does not have.
            Err(NvmlError::NotSupported | NvmlError::InvalidArg) => {}
            Err(e) => {
                present += 1;
                acc.error(
                    Check::NvLink,
                    &format!("nvmlDeviceGetNvLinkState(link {link})"),
                    &e,
                );
            }
        }
    }
    if present == 0 {
        acc.not_applicable.insert(Check::NvLink);
        return;
    }
    acc.applicable.insert(Check::NvLink);
    let n_down = u32::try_from(down.len()).unwrap_or(u32::MAX);
    if n_down == present {
        // Every link down is also what a PCIe card without its NVLink bridge reports; NVML
        // cannot tell the two apart, so this warns instead of failing every bridge-less card.
        acc.push(warn(
            Check::NvLink,
            format!("no NVLink active (all {present} links down: no bridge fitted, or the fabric is down)"),
        ));
    } else if !down.is_empty() {
        acc.push(fail(
            Check::NvLink,
            format!(
                "NVLink links {} inactive ({n_down} of {present} down)",
                down.join(", ")
            ),
        ));
    }
}
