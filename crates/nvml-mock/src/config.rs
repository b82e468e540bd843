//! AIBrix's GPU mock TOML (`hack/gpu_mock_conf.toml`, version 0.1.0), parsed and checked:
//! a wrong type, a negative count or an unknown key is an error (`nvmlInit` then fails), an
//! unset field is a healthy device with plausible defaults (an A100 on PCIe gen 4 x16).

use std::collections::BTreeMap;

use toml::{Table, Value};

/// `NVML_DEVICE_ARCH_AMPERE`: from Ampere on, row remapping replaces page retirement.
pub const ARCH_AMPERE: u32 = 7;

/// The whole mock: node-level settings and the configured cards.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// `[gpus] card_count`: what `nvmlDeviceGetCount` answers.
    pub card_count: Option<u32>,
    /// `[gpus] nvml_init_error`: the `nvmlReturn_t` `nvmlInit` answers (0 = success).
    pub nvml_init_error: Option<u32>,
    /// `[gpus.N]` tables by index.
    pub devices: BTreeMap<u32, DeviceConf>,
}

/// One `[gpus.N]` table as written; `None` = unset.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceConf {
    /// `device_name`.
    pub device_name: Option<String>,
    /// `arch` (`nvmlDeviceArchitecture_t`).
    pub arch: Option<u32>,
    /// `pci` as `bus:device` in hex.
    pub pci: Option<(u32, u32)>,
    /// `uuid`.
    pub uuid: Option<String>,
    /// `link_gen`: the maximum PCIe generation (what AIBrix's mock sets).
    pub link_gen: Option<u32>,
    /// `link_gen_current` (Brix extension): the current generation, `link_gen` when unset.
    pub link_gen_current: Option<u32>,
    /// `link_width_current`.
    pub link_width_current: Option<u32>,
    /// `link_width_max`.
    pub link_width_max: Option<u32>,
    /// `nvlink_active[]`: one entry per link.
    pub nvlink_active: Option<Vec<bool>>,
    /// `remapping_failure`.
    pub remapping_failure: Option<bool>,
    /// `remapping_pending`.
    pub remapping_pending: Option<bool>,
    /// `sram_ue`.
    pub sram_ue: Option<u64>,
    /// `dram_ue`.
    pub dram_ue: Option<u64>,
    /// `dram_ce`.
    pub dram_ce: Option<u64>,
    /// `retired_page_sbe`.
    pub retired_page_sbe: Option<u32>,
    /// `retired_page_dbe`.
    pub retired_page_dbe: Option<u32>,
    /// `retired_page_pending`.
    pub retired_page_pending: Option<bool>,
    /// `uncorrectable_agg_l1`.
    pub uncorrectable_agg_l1: Option<u64>,
    /// `uncorrectable_agg_l2`.
    pub uncorrectable_agg_l2: Option<u64>,
    /// `uncorrectable_agg_reg`.
    pub uncorrectable_agg_reg: Option<u64>,
}

impl Config {
    /// Parses the TOML text; the error names the key and what was wrong.
    pub fn from_toml_str(text: &str) -> Result<Config, String> {
        let root: Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let mut cfg = Config::default();
        for (key, value) in &root {
            match key.as_str() {
                "version" => match value.as_str() {
                    Some("0.1.0") => {}
                    Some(other) => {
                        return Err(format!("version: only \"0.1.0\" is known, got {other:?}"));
                    }
                    None => return Err("version: not a string".to_owned()),
                },
                "gpus" => {
                    let gpus = value.as_table().ok_or("gpus: not a table")?;
                    parse_gpus(gpus, &mut cfg)?;
                }
                other => return Err(format!("unknown key {other:?}")),
            }
        }
        Ok(cfg)
    }

    /// Cards `nvmlDeviceGetCount` reports: `card_count`, else one past the highest
    /// configured index, at least one.
    pub fn card_count(&self) -> u32 {
        self.card_count.unwrap_or_else(|| {
            self.devices
                .keys()
                .next_back()
                .map_or(1, |&i| i.saturating_add(1))
        })
    }

    /// The configuration of card `index` (all unset when it has no table).
    pub fn device(&self, index: u32) -> DeviceConf {
        self.devices.get(&index).cloned().unwrap_or_default()
    }
}

fn parse_gpus(gpus: &Table, cfg: &mut Config) -> Result<(), String> {
    for (key, value) in gpus {
        match key.as_str() {
            "card_count" => cfg.card_count = Some(uint(key, value)?),
            "nvml_init_error" => cfg.nvml_init_error = Some(uint(key, value)?),
            idx => {
                let index: u32 = idx
                    .parse()
                    .map_err(|_| format!("gpus.{idx}: unknown key (not a card index)"))?;
                let table = value
                    .as_table()
                    .ok_or_else(|| format!("gpus.{idx}: not a table"))?;
                let dev = parse_device(table).map_err(|e| format!("gpus.{idx}.{e}"))?;
                cfg.devices.insert(index, dev);
            }
        }
    }
    Ok(())
}

fn parse_device(t: &Table) -> Result<DeviceConf, String> {
    let mut d = DeviceConf::default();
    for (key, v) in t {
        let k = key.as_str();
        match k {
            "device_name" => d.device_name = Some(string(k, v)?),
            "uuid" => d.uuid = Some(string(k, v)?),
            "arch" => d.arch = Some(uint(k, v)?),
            "pci" => d.pci = Some(pci(k, v)?),
            "link_gen" => d.link_gen = Some(uint(k, v)?),
            "link_gen_current" => d.link_gen_current = Some(uint(k, v)?),
            "link_width_current" => d.link_width_current = Some(uint(k, v)?),
            "link_width_max" => d.link_width_max = Some(uint(k, v)?),
            "nvlink_active" => {
                let arr = v.as_array().ok_or_else(|| format!("{k}: not an array"))?;
                let links = arr
                    .iter()
                    .map(|x| {
                        x.as_bool()
                            .ok_or_else(|| format!("{k}: not an array of booleans"))
                    })
                    .collect::<Result<Vec<bool>, String>>()?;
                d.nvlink_active = Some(links);
            }
            "remapping_failure" => d.remapping_failure = Some(boolean(k, v)?),
            "remapping_pending" => d.remapping_pending = Some(boolean(k, v)?),
            "sram_ue" => d.sram_ue = Some(uint(k, v)?),
            "dram_ue" => d.dram_ue = Some(uint(k, v)?),
            "dram_ce" => d.dram_ce = Some(uint(k, v)?),
            "retired_page_sbe" => d.retired_page_sbe = Some(uint(k, v)?),
            "retired_page_dbe" => d.retired_page_dbe = Some(uint(k, v)?),
            "retired_page_pending" => d.retired_page_pending = Some(boolean(k, v)?),
            "uncorrectable_agg_l1" => d.uncorrectable_agg_l1 = Some(uint(k, v)?),
            "uncorrectable_agg_l2" => d.uncorrectable_agg_l2 = Some(uint(k, v)?),
            "uncorrectable_agg_reg" => d.uncorrectable_agg_reg = Some(uint(k, v)?),
            // AIBrix's injector reads it for XID events, which Brix does not mock.
            "crictl_xid" => {}
            other => return Err(format!("{other}: unknown key")),
        }
    }
    Ok(d)
}

fn uint<T: TryFrom<i64>>(key: &str, v: &Value) -> Result<T, String> {
    let n = v
        .as_integer()
        .ok_or_else(|| format!("{key}: not an integer"))?;
    T::try_from(n).map_err(|_| format!("{key}: {n} is out of range"))
}

fn boolean(key: &str, v: &Value) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| format!("{key}: not a boolean"))
}

fn string(key: &str, v: &Value) -> Result<String, String> {
    let s = v.as_str().ok_or_else(|| format!("{key}: not a string"))?;
    if s.contains('\0') {
        return Err(format!("{key}: contains a NUL byte"));
    }
    Ok(s.to_owned())
}

/// AIBrix's `pci = "bus:device"`, both hexadecimal.
fn pci(key: &str, v: &Value) -> Result<(u32, u32), String> {
    let s = string(key, v)?;
    let bad = || format!("{key}: {s:?} is not bus:device in hex");
    let (bus, dev) = s.split_once(':').ok_or_else(bad)?;
    let bus = u32::from_str_radix(bus, 16).map_err(|_| bad())?;
    let dev = u32::from_str_radix(dev, 16).map_err(|_| bad())?;
    if bus > 0xff || dev > 0x1f {
        return Err(bad());
    }
    Ok((bus, dev))
}

#[cfg(test)]
mod tests {
    #![expect(
        clippy::unwrap_used,
        reason = "tests: a failed unwrap is a failed test"
    )]

    use super::*;

    const AIBRIX: &str = include_str!("../tests/data/gpu_mock_conf.toml");

    #[test]
    fn parses_aibrix_example_verbatim() {
        let cfg = Config::from_toml_str(AIBRIX).unwrap();
        assert_eq!(cfg.card_count(), 4);
        assert_eq!(cfg.nvml_init_error, Some(9));
        let d0 = cfg.device(0);
        assert_eq!(d0.remapping_pending, Some(true));
        assert_eq!(d0.dram_ue, Some(7));
        let d1 = cfg.device(1);
        assert_eq!(d1.device_name.as_deref(), Some("A800"));
        assert_eq!(d1.pci, Some((0, 0)));
        assert_eq!(d1.nvlink_active, Some(vec![true; 6]));
        assert_eq!(cfg.device(3), DeviceConf::default());
    }

    #[test]
    fn card_count_defaults_to_configured_cards() {
        assert_eq!(Config::from_toml_str("").unwrap().card_count(), 1);
        let cfg = Config::from_toml_str("[gpus.2]\ndram_ue = 1\n").unwrap();
        assert_eq!(cfg.card_count(), 3);
    }

    #[test]
    fn rejects_wrong_types_unknown_keys_and_bad_values() {
        for (text, want) in [
            (
                "[gpus.0]\ndram_ue = \"x\"",
                "gpus.0.dram_ue: not an integer",
            ),
            (
                "[gpus.0]\ndram_ue = -1",
                "gpus.0.dram_ue: -1 is out of range",
            ),
            ("[gpus.0]\ndram_eu = 1", "gpus.0.dram_eu: unknown key"),
            (
                "[gpus.0]\npci = \"zz\"",
                "gpus.0.pci: \"zz\" is not bus:device in hex",
            ),
            (
                "[gpus.0]\nnvlink_active = [1]",
                "gpus.0.nvlink_active: not an array of booleans",
            ),
            ("[gpus]\ncard_count = true", "card_count: not an integer"),
            ("[gpus.x]\n", "gpus.x: unknown key (not a card index)"),
            (
                "version = \"0.2.0\"",
                "version: only \"0.1.0\" is known, got \"0.2.0\"",
            ),
            ("[gpus", ""),
        ] {
            let err = Config::from_toml_str(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
