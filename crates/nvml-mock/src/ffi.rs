//! The exported NVML C functions. Each one runs inside [`guard`] (a panic becomes
//! `NVML_ERROR_UNKNOWN`, never an unwind across the C boundary), reads the configuration
//! loaded by `nvmlInit`, and writes its answer through [`put`] / [`put_str`] / [`slice_mut`],
//! the only places with `unsafe`, each after a null check (null = `NVML_ERROR_INVALID_ARGUMENT`).

use std::ffi::{c_char, c_int, c_longlong, c_uint, c_ulonglong, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::device::{Device, ret};

type Ret = c_uint;
/// `nvmlDevice_t`: an opaque pointer; here the card index plus one (never dereferenced).
type Handle = *mut c_void;

/// Where AIBrix's `ai-accelerator-tool mock` puts the TOML.
const AIBRIX_CONFIG: &str = "/opt/gpu_mock/gpu_mock_conf.toml";
/// `nvmlEnableState_t`.
const ENABLED: c_uint = 1;
const DISABLED: c_uint = 0;
/// `NVML_VALUE_TYPE_UNSIGNED_LONG_LONG`.
const VALUE_TYPE_ULL: c_uint = 3;

struct State {
    /// `nvmlInit` minus `nvmlShutdown` calls (NVML reference-counts initialisation).
    refs: u32,
    config: Option<Arc<Config>>,
}

static STATE: Mutex<State> = Mutex::new(State {
    refs: 0,
    config: None,
});

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs one export: its `Err` code or `NVML_SUCCESS`, and `NVML_ERROR_UNKNOWN` on a panic.
fn guard(f: impl FnOnce() -> Result<(), Ret>) -> Ret {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => ret::SUCCESS,
        Ok(Err(code)) => code,
        Err(_) => ret::UNKNOWN,
    }
}

fn put<T>(p: *mut T, v: T) -> Result<(), Ret> {
    if p.is_null() {
        return Err(ret::INVALID_ARGUMENT);
    }
    // SAFETY: non-null, and NVML's contract is that an out-pointer points to a writable `T`
    // owned by the caller; the unaligned write makes no alignment assumption.
    unsafe { p.write_unaligned(v) };
    Ok(())
}

fn get<T>(p: *const T) -> Result<T, Ret> {
    if p.is_null() {
        return Err(ret::INVALID_ARGUMENT);
    }
    // SAFETY: non-null, and NVML's in/out arguments point to an initialised `T` of the caller.
    Ok(unsafe { p.read_unaligned() })
}

fn slice_mut<'a, T>(p: *mut T, len: usize) -> Result<&'a mut [T], Ret> {
    if p.is_null() {
        return Err(ret::INVALID_ARGUMENT);
    }
    // SAFETY: non-null, and the caller passes `len` as the number of `T`s its buffer holds;
    // the slice lives only for this call.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// Copies `s` and a NUL into the caller's `len`-byte buffer (`INSUFFICIENT_SIZE` if short).
fn put_str(buf: *mut c_char, len: c_uint, s: &str) -> Result<(), Ret> {
    let out = slice_mut(buf.cast::<u8>(), len as usize)?;
    let n = s.len();
    if n >= out.len() {
        return Err(ret::INSUFFICIENT_SIZE);
    }
    out[..n].copy_from_slice(s.as_bytes());
    out[n] = 0;
    Ok(())
}

fn load() -> Result<Config, String> {
    let path = match std::env::var_os("BRIX_NVML_MOCK_CONFIG") {
        Some(p) => std::path::PathBuf::from(p),
        None if std::path::Path::new(AIBRIX_CONFIG).exists() => AIBRIX_CONFIG.into(),
        None => return Ok(Config::default()),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Config::from_toml_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn init() -> Result<(), Ret> {
    let cfg = load().map_err(|msg| {
        eprintln!("brix-nvml-mock: {msg}");
        ret::UNKNOWN
    })?;
    match cfg.nvml_init_error {
        Some(code) if code != ret::SUCCESS => return Err(code),
        _ => {}
    }
    let mut st = state();
    st.refs = st.refs.saturating_add(1);
    st.config = Some(Arc::new(cfg));
    Ok(())
}

fn config() -> Result<Arc<Config>, Ret> {
    state().config.clone().ok_or(ret::UNINITIALIZED)
}

fn device(h: Handle) -> Result<Device, Ret> {
    let cfg = config()?;
    let index = h
        .addr()
        .checked_sub(1)
        .and_then(|i| u32::try_from(i).ok())
        .filter(|&i| i < cfg.card_count())
        .ok_or(ret::INVALID_ARGUMENT)?;
    Ok(Device::resolve(&cfg, index))
}

fn uint(dev: Handle, out: *mut c_uint, f: impl FnOnce(&Device) -> u32) -> Ret {
    guard(|| put(out, f(&device(dev)?)))
}

fn state_of(b: bool) -> c_uint {
    if b { ENABLED } else { DISABLED }
}

/// `nvmlInit_v2`: loads the TOML; answers `nvml_init_error` when set.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit_v2() -> Ret {
    guard(init)
}

/// `nvmlInit` (the v1 name).
#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit() -> Ret {
    guard(init)
}

/// `nvmlInitWithFlags`: flags ignored.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> Ret {
    guard(init)
}

/// `nvmlShutdown`: the last one drops the configuration.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlShutdown() -> Ret {
    guard(|| {
        let mut st = state();
        if st.refs == 0 {
            return Err(ret::UNINITIALIZED);
        }
        st.refs -= 1;
        if st.refs == 0 {
            st.config = None;
        }
        Ok(())
    })
}

/// `nvmlErrorString`: NVML's descriptions, static strings.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlErrorString(result: Ret) -> *const c_char {
    let s: &'static std::ffi::CStr = match result {
        0 => c"Success",
        1 => c"Uninitialized",
        2 => c"Invalid Argument",
        3 => c"Not Supported",
        4 => c"Insufficient Permissions",
        5 => c"Already Initialized",
        6 => c"Not Found",
        7 => c"Insufficient Size",
        8 => c"Insufficient External Power",
        9 => c"Driver Not Loaded",
        10 => c"Timeout",
        11 => c"Interrupt request issue",
        12 => c"NVML Shared Library Not Found",
        13 => c"Function Not Found",
        14 => c"Corrupted infoROM",
        15 => c"GPU is lost",
        16 => c"GPU requires restart",
        17 => c"GPU access blocked by the operating system",
        18 => c"Driver/library version mismatch",
        19 => c"In use by another client",
        20 => c"Insufficient Memory",
        21 => c"No data",
        _ => c"Unknown Error",
    };
    s.as_ptr()
}

/// `nvmlSystemGetDriverVersion`: a fixed, plausible driver version.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> Ret {
    guard(|| {
        config()?;
        put_str(version, length, "550.54.15")
    })
}

/// `nvmlSystemGetNVMLVersion`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlSystemGetNVMLVersion(version: *mut c_char, length: c_uint) -> Ret {
    guard(|| {
        config()?;
        put_str(version, length, "12.550.54.15")
    })
}

/// `nvmlDeviceGetCount_v2`: `card_count`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> Ret {
    guard(|| put(count, config()?.card_count()))
}

/// `nvmlDeviceGetCount` (the v1 name).
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetCount(count: *mut c_uint) -> Ret {
    nvmlDeviceGetCount_v2(count)
}

/// `nvmlDeviceGetHandleByIndex_v2`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetHandleByIndex_v2(index: c_uint, device: *mut Handle) -> Ret {
    guard(|| {
        if index >= config()?.card_count() {
            return Err(ret::INVALID_ARGUMENT);
        }
        put(device, std::ptr::without_provenance_mut(index as usize + 1))
    })
}

/// `nvmlDeviceGetHandleByIndex` (the v1 name).
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetHandleByIndex(index: c_uint, device: *mut Handle) -> Ret {
    nvmlDeviceGetHandleByIndex_v2(index, device)
}

/// `nvmlDeviceGetIndex`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetIndex(device: Handle, index: *mut c_uint) -> Ret {
    uint(device, index, |d| d.index)
}

/// `nvmlDeviceGetName`: `device_name`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetName(device: Handle, name: *mut c_char, length: c_uint) -> Ret {
    guard(|| put_str(name, length, &self::device(device)?.name))
}

/// `nvmlDeviceGetUUID`: `uuid`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetUUID(device: Handle, uuid: *mut c_char, length: c_uint) -> Ret {
    guard(|| put_str(uuid, length, &self::device(device)?.uuid))
}

/// nvml.h `nvmlPciInfo_t`.
#[repr(C)]
pub struct PciInfo {
    bus_id_legacy: [c_char; 16],
    domain: c_uint,
    bus: c_uint,
    device: c_uint,
    pci_device_id: c_uint,
    pci_sub_system_id: c_uint,
    bus_id: [c_char; 32],
}

fn c_array<const N: usize>(s: &str) -> [c_char; N] {
    let mut out = [0 as c_char; N];
    for (o, b) in out.iter_mut().zip(s.bytes().take(N - 1)) {
        *o = b as c_char;
    }
    out
}

/// `nvmlDeviceGetPciInfo_v3`: `pci` (bus:device), domain 0, an A100's PCI ids.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetPciInfo_v3(device: Handle, pci: *mut PciInfo) -> Ret {
    guard(|| {
        let d = self::device(device)?;
        let info = PciInfo {
            bus_id_legacy: c_array(&d.bus_id_legacy()),
            domain: 0,
            bus: d.pci.0,
            device: d.pci.1,
            pci_device_id: 0x20B2_10DE,
            pci_sub_system_id: 0x147E_10DE,
            bus_id: c_array(&d.bus_id()),
        };
        put(pci, info)
    })
}

/// `nvmlDeviceGetArchitecture`: `arch`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetArchitecture(device: Handle, arch: *mut c_uint) -> Ret {
    uint(device, arch, |d| d.arch)
}

/// `nvmlDeviceGetCurrPcieLinkWidth`: `link_width_current`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetCurrPcieLinkWidth(device: Handle, width: *mut c_uint) -> Ret {
    uint(device, width, |d| d.link_width.0)
}

/// `nvmlDeviceGetMaxPcieLinkWidth`: `link_width_max`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetMaxPcieLinkWidth(device: Handle, width: *mut c_uint) -> Ret {
    uint(device, width, |d| d.link_width.1)
}

/// `nvmlDeviceGetCurrPcieLinkGeneration`: `link_gen_current` (Brix), else `link_gen`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetCurrPcieLinkGeneration(device: Handle, gen_: *mut c_uint) -> Ret {
    uint(device, gen_, |d| d.link_gen.0)
}

/// `nvmlDeviceGetMaxPcieLinkGeneration`: `link_gen` (as AIBrix's injector).
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetMaxPcieLinkGeneration(device: Handle, gen_: *mut c_uint) -> Ret {
    uint(device, gen_, |d| d.link_gen.1)
}

fn bool_arg(v: c_uint) -> Result<bool, Ret> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(ret::INVALID_ARGUMENT),
    }
}

/// `nvmlDeviceGetMemoryErrorCounter`: `dram_ue`, `sram_ue`, `dram_ce`, `uncorrectable_agg_*`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetMemoryErrorCounter(
    device: Handle,
    error_type: c_uint,
    counter_type: c_uint,
    location: c_uint,
    count: *mut c_ulonglong,
) -> Ret {
    guard(|| {
        let d = self::device(device)?;
        let n = d.memory_errors(bool_arg(error_type)?, bool_arg(counter_type)?, location)?;
        put(count, n)
    })
}

/// `nvmlDeviceGetTotalEccErrors`: the sum of the location counters.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetTotalEccErrors(
    device: Handle,
    error_type: c_uint,
    counter_type: c_uint,
    count: *mut c_ulonglong,
) -> Ret {
    guard(|| {
        let d = self::device(device)?;
        put(
            count,
            d.total_ecc_errors(bool_arg(error_type)?, bool_arg(counter_type)?),
        )
    })
}

/// `nvmlDeviceGetEccMode`: ECC on, current and pending.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetEccMode(
    device: Handle,
    current: *mut c_uint,
    pending: *mut c_uint,
) -> Ret {
    guard(|| {
        self::device(device)?;
        put(current, ENABLED)?;
        put(pending, ENABLED)
    })
}

/// Shared body of the two retired-pages calls: NVML's size protocol (a short buffer gets
/// `INSUFFICIENT_SIZE` and the needed count), fake page addresses, timestamps when asked.
fn retired_pages(
    device: Handle,
    cause: c_uint,
    count: *mut c_uint,
    addresses: *mut c_ulonglong,
    timestamps: *mut c_ulonglong,
) -> Result<(), Ret> {
    let d = self::device(device)?;
    let n = d.retired_pages(bool_arg(cause)?)?;
    let cap = get(count)?;
    if cap < n {
        put(count, n)?;
        return Err(ret::INSUFFICIENT_SIZE);
    }
    if n > 0 {
        let now = now_us().unsigned_abs();
        for (i, a) in slice_mut(addresses, n as usize)?.iter_mut().enumerate() {
            *a = 0x1000 * (i as u64 + 1);
        }
        if !timestamps.is_null() {
            slice_mut(timestamps, n as usize)?.fill(now);
        }
    }
    put(count, n)
}

/// `nvmlDeviceGetRetiredPages`: `retired_page_sbe` (cause 0), `retired_page_dbe` (cause 1).
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetRetiredPages(
    device: Handle,
    cause: c_uint,
    count: *mut c_uint,
    addresses: *mut c_ulonglong,
) -> Ret {
    guard(|| retired_pages(device, cause, count, addresses, std::ptr::null_mut()))
}

/// `nvmlDeviceGetRetiredPages_v2`: the same with timestamps.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetRetiredPages_v2(
    device: Handle,
    cause: c_uint,
    count: *mut c_uint,
    addresses: *mut c_ulonglong,
    timestamps: *mut c_ulonglong,
) -> Ret {
    guard(|| retired_pages(device, cause, count, addresses, timestamps))
}

/// `nvmlDeviceGetRetiredPagesPendingStatus`: `retired_page_pending`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetRetiredPagesPendingStatus(
    device: Handle,
    pending: *mut c_uint,
) -> Ret {
    guard(|| put(pending, state_of(self::device(device)?.retired_pending()?)))
}

/// `nvmlDeviceGetRemappedRows`: `remapping_pending`, `remapping_failure`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetRemappedRows(
    device: Handle,
    corr_rows: *mut c_uint,
    unc_rows: *mut c_uint,
    is_pending: *mut c_uint,
    failure_occurred: *mut c_uint,
) -> Ret {
    guard(|| {
        let (cor, unc, pending, failure) = self::device(device)?.remapped_rows()?;
        put(corr_rows, cor)?;
        put(unc_rows, unc)?;
        put(is_pending, c_uint::from(pending))?;
        put(failure_occurred, c_uint::from(failure))
    })
}

/// `nvmlDeviceGetNvLinkState`: `nvlink_active[link]`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetNvLinkState(
    device: Handle,
    link: c_uint,
    is_active: *mut c_uint,
) -> Ret {
    guard(|| {
        put(
            is_active,
            state_of(self::device(device)?.nvlink_state(link)?),
        )
    })
}

/// nvml.h `nvmlFieldValue_t` (the value union is 8 bytes; the mock always answers u64).
#[repr(C)]
pub struct FieldValue {
    field_id: c_uint,
    scope_id: c_uint,
    timestamp: c_longlong,
    latency_usec: c_longlong,
    value_type: c_uint,
    nvml_return: c_uint,
    value: c_ulonglong,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// `nvmlDeviceGetFieldValues`: NVLink link count (`nvlink_active`), remapped rows
/// (`remapping_*`); every other field answers `NOT_SUPPORTED` in its own slot.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceGetFieldValues(
    device: Handle,
    count: c_int,
    values: *mut FieldValue,
) -> Ret {
    guard(|| {
        let d = self::device(device)?;
        let n = usize::try_from(count).map_err(|_| ret::INVALID_ARGUMENT)?;
        let now = now_us();
        for v in slice_mut(values, n)? {
            v.timestamp = now;
            v.latency_usec = 0;
            match d.field(v.field_id) {
                Ok(x) => {
                    v.value_type = VALUE_TYPE_ULL;
                    v.nvml_return = ret::SUCCESS;
                    v.value = x;
                }
                Err(code) => v.nvml_return = code,
            }
        }
        Ok(())
    })
}

/// Replaces the configuration as `nvmlInit` would, without reading a file (unit tests).
#[cfg(test)]
fn install(cfg: Config) {
    let mut st = state();
    st.refs = st.refs.saturating_add(1);
    st.config = Some(Arc::new(cfg));
}

#[cfg(test)]
#[path = "ffi_tests.rs"]
mod tests;
