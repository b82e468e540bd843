//! The exports called as C would call them: null pointers, bad handles, short buffers and
//! NVML's size protocol get error codes, never a crash. One test, because the exports share
//! one process-wide configuration.
#![expect(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test"
)]

use std::ffi::CStr;
use std::ptr::null_mut;

use super::*;
use crate::device::field;

fn handle(i: u32) -> Handle {
    let mut h: Handle = null_mut();
    assert_eq!(nvmlDeviceGetHandleByIndex_v2(i, &mut h), ret::SUCCESS);
    h
}

#[test]
fn exports_answer_errors_instead_of_crashing() {
    install(
        Config::from_toml_str(
            "[gpus]\ncard_count = 2\n[gpus.1]\narch = 5\nretired_page_dbe = 3\nnvlink_active = [true, false]\n",
        )
        .unwrap(),
    );
    // Null out-pointers.
    assert_eq!(nvmlDeviceGetCount_v2(null_mut()), ret::INVALID_ARGUMENT);
    assert_eq!(
        nvmlDeviceGetHandleByIndex_v2(0, null_mut()),
        ret::INVALID_ARGUMENT
    );
    let h1 = handle(1);
    assert_eq!(nvmlDeviceGetName(h1, null_mut(), 96), ret::INVALID_ARGUMENT);
    assert_eq!(
        nvmlDeviceGetPciInfo_v3(h1, null_mut()),
        ret::INVALID_ARGUMENT
    );
    assert_eq!(
        nvmlDeviceGetRemappedRows(h1, null_mut(), null_mut(), null_mut(), null_mut()),
        ret::NOT_SUPPORTED
    );
    assert_eq!(
        nvmlDeviceGetFieldValues(h1, 1, null_mut()),
        ret::INVALID_ARGUMENT
    );
    assert_eq!(
        nvmlDeviceGetFieldValues(h1, -1, null_mut()),
        ret::INVALID_ARGUMENT
    );
    // Bad handles and indices.
    let mut n: c_uint = 0;
    assert_eq!(
        nvmlDeviceGetHandleByIndex_v2(2, &mut null_mut()),
        ret::INVALID_ARGUMENT
    );
    assert_eq!(
        nvmlDeviceGetIndex(null_mut(), &mut n),
        ret::INVALID_ARGUMENT
    );
    assert_eq!(
        nvmlDeviceGetIndex(std::ptr::without_provenance_mut(99), &mut n),
        ret::INVALID_ARGUMENT
    );
    assert_eq!(nvmlDeviceGetIndex(h1, &mut n), ret::SUCCESS);
    assert_eq!(n, 1);
    // Short string buffers.
    let mut buf = [0 as c_char; 4];
    assert_eq!(
        nvmlDeviceGetName(h1, buf.as_mut_ptr(), 4),
        ret::INSUFFICIENT_SIZE
    );
    let mut buf = [0 as c_char; 96];
    assert_eq!(nvmlDeviceGetName(h1, buf.as_mut_ptr(), 96), ret::SUCCESS);
    let name: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    assert_eq!(name, b"NVIDIA A100-SXM4-80GB");
    // Retired pages: NVML's size protocol.
    let mut count: c_uint = 0;
    let mut addr = [0u64; 3];
    assert_eq!(
        nvmlDeviceGetRetiredPages(h1, 1, &mut count, addr.as_mut_ptr()),
        ret::INSUFFICIENT_SIZE
    );
    assert_eq!(count, 3);
    assert_eq!(
        nvmlDeviceGetRetiredPages(h1, 1, &mut count, addr.as_mut_ptr()),
        ret::SUCCESS
    );
    assert_eq!(addr, [0x1000, 0x2000, 0x3000]);
    assert_eq!(
        nvmlDeviceGetRetiredPages(h1, 1, &mut count, null_mut()),
        ret::INVALID_ARGUMENT
    );
    assert_eq!(
        nvmlDeviceGetRetiredPages(h1, 2, &mut count, addr.as_mut_ptr()),
        ret::INVALID_ARGUMENT
    );
    assert_eq!(
        nvmlDeviceGetRetiredPages(handle(0), 1, &mut count, addr.as_mut_ptr()),
        ret::NOT_SUPPORTED
    );
    // Field values: one slot answered, one unknown field NOT_SUPPORTED in its own slot.
    let mut values = [field::NVLINK_LINK_COUNT, 9999].map(|id| FieldValue {
        field_id: id,
        scope_id: 0,
        timestamp: 0,
        latency_usec: 0,
        value_type: 0,
        nvml_return: 0,
        value: 0,
    });
    assert_eq!(
        nvmlDeviceGetFieldValues(h1, 2, values.as_mut_ptr()),
        ret::SUCCESS
    );
    assert_eq!((values[0].nvml_return, values[0].value), (ret::SUCCESS, 2));
    assert_eq!(values[1].nvml_return, ret::NOT_SUPPORTED);
    let mut active: c_uint = 9;
    assert_eq!(nvmlDeviceGetNvLinkState(h1, 1, &mut active), ret::SUCCESS);
    assert_eq!(active, DISABLED);
    assert_eq!(
        nvmlDeviceGetNvLinkState(h1, 2, &mut active),
        ret::INVALID_ARGUMENT
    );
    // Error strings are static C strings.
    let p = nvmlErrorString(9);
    assert!(!p.is_null());
    // SAFETY: nvmlErrorString returns a pointer to a static NUL-terminated string.
    assert_eq!(unsafe { CStr::from_ptr(p) }, c"Driver Not Loaded");
    // Shutdown drops the configuration: calls then answer UNINITIALIZED.
    assert_eq!(nvmlShutdown(), ret::SUCCESS);
    assert_eq!(nvmlDeviceGetCount_v2(&mut n), ret::UNINITIALIZED);
    assert_eq!(nvmlShutdown(), ret::UNINITIALIZED);
}
