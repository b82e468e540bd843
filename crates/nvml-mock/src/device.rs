//! One mocked card: the TOML fields resolved against healthy defaults, and the answer each
//! NVML query gets (a value, or the `nvmlReturn_t` a real card of that architecture gives).

use crate::config::{ARCH_AMPERE, Config, DeviceConf};

/// `nvmlReturn_t` codes (nvml.h).
pub mod ret {
    /// `NVML_SUCCESS`.
    pub const SUCCESS: u32 = 0;
    /// `NVML_ERROR_UNINITIALIZED`.
    pub const UNINITIALIZED: u32 = 1;
    /// `NVML_ERROR_INVALID_ARGUMENT`.
    pub const INVALID_ARGUMENT: u32 = 2;
    /// `NVML_ERROR_NOT_SUPPORTED`.
    pub const NOT_SUPPORTED: u32 = 3;
    /// `NVML_ERROR_INSUFFICIENT_SIZE`.
    pub const INSUFFICIENT_SIZE: u32 = 7;
    /// `NVML_ERROR_UNKNOWN`.
    pub const UNKNOWN: u32 = 999;
}

/// nvml.h field ids the mock answers through `nvmlDeviceGetFieldValues`.
pub mod field {
    /// `NVML_FI_DEV_NVLINK_LINK_COUNT`.
    pub const NVLINK_LINK_COUNT: u32 = 91;
    /// `NVML_FI_DEV_REMAPPED_COR`.
    pub const REMAPPED_COR: u32 = 142;
    /// `NVML_FI_DEV_REMAPPED_UNC`.
    pub const REMAPPED_UNC: u32 = 143;
    /// `NVML_FI_DEV_REMAPPED_PENDING`.
    pub const REMAPPED_PENDING: u32 = 144;
    /// `NVML_FI_DEV_REMAPPED_FAILURE`.
    pub const REMAPPED_FAILURE: u32 = 145;
}

/// `nvmlMemoryLocation_t` values the schema has fields for.
const LOC_L1: u32 = 0;
const LOC_L2: u32 = 1;
const LOC_DRAM: u32 = 2;
const LOC_REGISTER_FILE: u32 = 3;
const LOC_SRAM: u32 = 7;

/// A card with every field resolved: what each NVML query about it answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    /// NVML index.
    pub index: u32,
    /// The TOML as written (decides applicability of remapping / retirement when set).
    pub conf: DeviceConf,
    /// Product name.
    pub name: String,
    /// UUID.
    pub uuid: String,
    /// `nvmlDeviceArchitecture_t`.
    pub arch: u32,
    /// PCI bus and device numbers.
    pub pci: (u32, u32),
    /// Current and maximum PCIe generation.
    pub link_gen: (u32, u32),
    /// Current and maximum PCIe width.
    pub link_width: (u32, u32),
}

impl Device {
    /// Card `index` of `cfg` with defaults for what its table leaves unset: an A100 (Ampere),
    /// PCIe gen 4 x16 running at its maximum, no NVLink, no errors.
    pub fn resolve(cfg: &Config, index: u32) -> Device {
        let conf = cfg.device(index);
        let max_gen = conf.link_gen.unwrap_or(4);
        let max_width = conf.link_width_max.unwrap_or(16);
        Device {
            index,
            name: conf
                .device_name
                .clone()
                .unwrap_or_else(|| "NVIDIA A100-SXM4-80GB".to_owned()),
            uuid: conf
                .uuid
                .clone()
                .unwrap_or_else(|| format!("GPU-b81c0000-0000-4000-8000-{index:012x}")),
            arch: conf.arch.unwrap_or(ARCH_AMPERE),
            pci: conf.pci.unwrap_or((0x10 + (index & 0x7f), 0)),
            link_gen: (conf.link_gen_current.unwrap_or(max_gen), max_gen),
            link_width: (conf.link_width_current.unwrap_or(max_width), max_width),
            conf,
        }
    }

    /// `nvmlPciInfo_t.busId` (`domain:bus:device.function`, 8-digit domain).
    pub fn bus_id(&self) -> String {
        format!("00000000:{:02X}:{:02X}.0", self.pci.0, self.pci.1)
    }

    /// `nvmlPciInfo_t.busIdLegacy` (4-digit domain).
    pub fn bus_id_legacy(&self) -> String {
        format!("0000:{:02X}:{:02X}.0", self.pci.0, self.pci.1)
    }

    /// `nvmlDeviceGetMemoryErrorCounter(errorType, counterType, location)`: the schema's
    /// volatile DRAM/SRAM counts (also counted in the aggregate), aggregate L1/L2/register
    /// file uncorrectable counts; every other counter is zero.
    pub fn memory_errors(
        &self,
        uncorrected: bool,
        aggregate: bool,
        location: u32,
    ) -> Result<u64, u32> {
        let c = &self.conf;
        let v = match (uncorrected, aggregate, location) {
            (true, _, LOC_DRAM) => c.dram_ue.unwrap_or(0),
            (true, _, LOC_SRAM) => c.sram_ue.unwrap_or(0),
            (false, _, LOC_DRAM) => c.dram_ce.unwrap_or(0),
            (true, true, LOC_L1) => c.uncorrectable_agg_l1.unwrap_or(0),
            (true, true, LOC_L2) => c.uncorrectable_agg_l2.unwrap_or(0),
            (true, true, LOC_REGISTER_FILE) => c.uncorrectable_agg_reg.unwrap_or(0),
            (_, _, 0..=LOC_SRAM) => 0,
            _ => return Err(ret::INVALID_ARGUMENT),
        };
        Ok(v)
    }

    /// `nvmlDeviceGetTotalEccErrors`: the sum over locations.
    pub fn total_ecc_errors(&self, uncorrected: bool, aggregate: bool) -> u64 {
        (0..=LOC_SRAM)
            .filter_map(|loc| self.memory_errors(uncorrected, aggregate, loc).ok())
            .fold(0u64, u64::saturating_add)
    }

    /// Whether page retirement answers: when the TOML sets a retirement field (AIBrix does not
    /// sanitise), else on architectures before Ampere.
    fn retirement_supported(&self) -> bool {
        let c = &self.conf;
        c.retired_page_sbe.is_some()
            || c.retired_page_dbe.is_some()
            || c.retired_page_pending.is_some()
            || self.arch < ARCH_AMPERE
    }

    /// `nvmlDeviceGetRetiredPages(cause)` page count (`double_bit` = cause 1).
    pub fn retired_pages(&self, double_bit: bool) -> Result<u32, u32> {
        if !self.retirement_supported() {
            return Err(ret::NOT_SUPPORTED);
        }
        let c = &self.conf;
        Ok(if double_bit {
            c.retired_page_dbe
        } else {
            c.retired_page_sbe
        }
        .unwrap_or(0))
    }

    /// `nvmlDeviceGetRetiredPagesPendingStatus`.
    pub fn retired_pending(&self) -> Result<bool, u32> {
        if !self.retirement_supported() {
            return Err(ret::NOT_SUPPORTED);
        }
        Ok(self.conf.retired_page_pending.unwrap_or(false))
    }

    /// `nvmlDeviceGetRemappedRows`: (correctable rows, uncorrectable rows, pending, failure);
    /// answered when the TOML sets a remapping field, else from Ampere on.
    pub fn remapped_rows(&self) -> Result<(u32, u32, bool, bool), u32> {
        let c = &self.conf;
        if c.remapping_failure.is_none() && c.remapping_pending.is_none() && self.arch < ARCH_AMPERE
        {
            return Err(ret::NOT_SUPPORTED);
        }
        Ok((
            0,
            0,
            c.remapping_pending.unwrap_or(false),
            c.remapping_failure.unwrap_or(false),
        ))
    }

    /// `nvmlDeviceGetNvLinkState(link)`: no `nvlink_active` = no NVLink (NotSupported); a link
    /// past the list = a link the card does not have (InvalidArgument, as NVML answers).
    pub fn nvlink_state(&self, link: u32) -> Result<bool, u32> {
        let links = self.conf.nvlink_active.as_deref().unwrap_or(&[]);
        if links.is_empty() {
            return Err(ret::NOT_SUPPORTED);
        }
        usize::try_from(link)
            .ok()
            .and_then(|l| links.get(l).copied())
            .ok_or(ret::INVALID_ARGUMENT)
    }

    /// `nvmlDeviceGetFieldValues` for one field id.
    pub fn field(&self, id: u32) -> Result<u64, u32> {
        match id {
            field::NVLINK_LINK_COUNT => match self.conf.nvlink_active.as_deref() {
                Some(l) if !l.is_empty() => Ok(l.len() as u64),
                _ => Err(ret::NOT_SUPPORTED),
            },
            field::REMAPPED_COR => self.remapped_rows().map(|r| u64::from(r.0)),
            field::REMAPPED_UNC => self.remapped_rows().map(|r| u64::from(r.1)),
            field::REMAPPED_PENDING => self.remapped_rows().map(|r| u64::from(r.2)),
            field::REMAPPED_FAILURE => self.remapped_rows().map(|r| u64::from(r.3)),
            _ => Err(ret::NOT_SUPPORTED),
        }
    }
}

#[cfg(test)]
mod tests {
    #![expect(
        clippy::unwrap_used,
        reason = "tests: a failed unwrap is a failed test"
    )]

    use super::*;

    fn dev(toml: &str) -> Device {
        Device::resolve(&Config::from_toml_str(toml).unwrap(), 0)
    }

    #[test]
    fn unset_fields_are_a_healthy_ampere() {
        let d = dev("");
        assert_eq!(d.link_width, (16, 16));
        assert_eq!(d.link_gen, (4, 4));
        assert_eq!(d.total_ecc_errors(true, false), 0);
        assert_eq!(d.remapped_rows(), Ok((0, 0, false, false)));
        assert_eq!(d.retired_pages(true), Err(ret::NOT_SUPPORTED));
        assert_eq!(d.nvlink_state(0), Err(ret::NOT_SUPPORTED));
        assert_eq!(d.bus_id(), "00000000:10:00.0");
    }

    #[test]
    fn architecture_decides_remapping_versus_retirement() {
        let volta = dev("[gpus.0]\narch = 5\n");
        assert_eq!(volta.remapped_rows(), Err(ret::NOT_SUPPORTED));
        assert_eq!(volta.retired_pages(false), Ok(0));
        assert_eq!(volta.retired_pending(), Ok(false));
        // A set field answers whatever the architecture, as AIBrix's injector does.
        let set = dev("[gpus.0]\narch = 9\nretired_page_dbe = 2\n");
        assert_eq!(set.retired_pages(true), Ok(2));
    }

    #[test]
    fn fields_drive_their_counters() {
        let d = dev(
            "[gpus.0]\ndram_ue = 3\nsram_ue = 2\ndram_ce = 5\nuncorrectable_agg_l2 = 4\nnvlink_active = [true, false]\n",
        );
        assert_eq!(d.memory_errors(true, false, LOC_DRAM), Ok(3));
        assert_eq!(d.memory_errors(true, false, LOC_SRAM), Ok(2));
        assert_eq!(d.memory_errors(false, false, LOC_DRAM), Ok(5));
        assert_eq!(d.memory_errors(true, true, LOC_L2), Ok(4));
        assert_eq!(d.memory_errors(true, false, LOC_L2), Ok(0));
        assert_eq!(d.memory_errors(true, false, 99), Err(ret::INVALID_ARGUMENT));
        assert_eq!(d.total_ecc_errors(true, false), 5);
        assert_eq!(d.total_ecc_errors(true, true), 9);
        assert_eq!(d.nvlink_state(1), Ok(false));
        assert_eq!(d.nvlink_state(2), Err(ret::INVALID_ARGUMENT));
        assert_eq!(d.field(field::NVLINK_LINK_COUNT), Ok(2));
    }
}
