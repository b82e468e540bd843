//! What makes a directory a usable adapter, and its digest. Blocking file reads; callers run
//! them on a blocking thread.

use std::fs;
use std::io::{self, Read as _};
use std::path::{Component, Path, PathBuf};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::Expect;

/// The adapter's config, as PEFT writes it.
pub(crate) const CONFIG: &str = "adapter_config.json";
/// The weights, preferred form.
pub(crate) const SAFETENSORS: &str = "adapter_model.safetensors";
/// The weights, PyTorch pickle form (older PEFT).
pub(crate) const BIN: &str = "adapter_model.bin";
/// A config larger than this is not a PEFT config.
const CONFIG_MAX: u64 = 1 << 20;
/// safetensors' own cap on the JSON header.
const HEADER_MAX: u64 = 100 << 20;
/// Most files one artifact may hold (a bound on work and on the index).
pub(crate) const FILES_MAX: usize = 10_000;

/// What verification learned about an adapter.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Checked {
    pub rank: u32,
    pub base_model: Option<String>,
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// `name` as a path that stays inside the artifact's directory: relative, `/`-separated,
/// no `.`/`..`/empty components, no backslashes or control characters.
pub(crate) fn safe_relative(name: &str) -> Result<PathBuf, String> {
    let bad = || format!("unsafe file name '{}'", crate::error::one_line(name));
    if name.is_empty() || name.starts_with('/') || name.contains('\\') || name.len() > 1024 {
        return Err(bad());
    }
    if name.chars().any(char::is_control) {
        return Err(bad());
    }
    let mut path = PathBuf::new();
    for part in name.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(bad());
        }
        path.push(part);
    }
    match path.components().all(|c| matches!(c, Component::Normal(_))) {
        true => Ok(path),
        false => Err(bad()),
    }
}

/// `sha256-<hex>` over the `sha256sum`-style listing (`<hex>  <name>\n`) of the files sorted
/// by name: names and contents, independent of download order.
pub(crate) fn digest(files: &mut [(String, String)]) -> String {
    files.sort_unstable();
    let mut hash = Sha256::new();
    for (name, sha) in files.iter() {
        hash.update(format!("{sha}  {name}\n").as_bytes());
    }
    format!("sha256-{}", hex(&hash.finalize()))
}

/// sha256 of one file, streamed.
pub(crate) fn hash_file(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex(&hash.finalize()));
        }
        hash.update(&buf[..n]);
    }
}

/// Names, sizes and modification times of `files` in `dir`, hashed: when it is unchanged, so
/// is the digest (a local artifact is re-hashed only when this changes).
pub(crate) fn fingerprint(dir: &Path, files: &[(String, u64)]) -> io::Result<String> {
    let mut hash = Sha256::new();
    for (name, size) in files {
        let modified = fs::metadata(dir.join(name))?.modified()?;
        let t = modified
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        hash.update(format!("{name} {size} {}.{}\n", t.as_secs(), t.subsec_nanos()).as_bytes());
    }
    Ok(format!("local {}", hex(&hash.finalize())))
}

/// Every regular file under `dir` (following file symlinks, as in a Hugging Face snapshot;
/// not directory symlinks), as (`/`-separated relative name, size), sorted.
pub(crate) fn list_files(dir: &Path) -> io::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = stack.pop() {
        for entry in fs::read_dir(&path)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push((entry.path(), rel));
            } else if let Ok(meta) = fs::metadata(entry.path())
                && meta.is_file()
            {
                out.push((rel, meta.len()));
            }
            if out.len() > FILES_MAX {
                return Err(io::Error::other(format!("more than {FILES_MAX} files")));
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// [`check_adapter`], or for a files-only store just that there is something.
pub(crate) fn check(
    dir: &Path,
    names: &[&str],
    expect: &Expect,
    files_only: bool,
) -> Result<Checked, String> {
    match files_only {
        false => check_adapter(dir, names, expect),
        true if names.is_empty() => Err("no files".into()),
        true => Ok(Checked {
            rank: 0,
            base_model: None,
        }),
    }
}

/// Checks the adapter in `dir` whose files are `names`: the config parses and has a positive
/// rank within `expect.max_rank`, the base model matches, and the weights are there (with a
/// sound header when safetensors).
pub(crate) fn check_adapter(
    dir: &Path,
    names: &[&str],
    expect: &Expect,
) -> Result<Checked, String> {
    if !names.contains(&CONFIG) {
        return Err(format!("{CONFIG} is missing"));
    }
    let config = read_config(&dir.join(CONFIG))?;
    let rank = config
        .get("r")
        .and_then(Value::as_u64)
        .filter(|&r| r > 0)
        .and_then(|r| u32::try_from(r).ok())
        .ok_or_else(|| format!("{CONFIG}: 'r' (the LoRA rank) must be a positive integer"))?;
    if let Some(max) = expect.max_rank
        && rank > max
    {
        return Err(format!("rank {rank} exceeds the engines' max_rank {max}"));
    }
    let base_model = config
        .get("base_model_name_or_path")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if let Some(base) = &base_model {
        check_base(base, &expect.base_models)?;
    }
    if names.contains(&SAFETENSORS) {
        check_safetensors(&dir.join(SAFETENSORS)).map_err(|why| format!("{SAFETENSORS}: {why}"))?;
    } else if !names.contains(&BIN) {
        return Err(format!("no weights ({SAFETENSORS} or {BIN})"));
    }
    Ok(Checked { rank, base_model })
}

fn read_config(path: &Path) -> Result<Value, String> {
    let size = fs::metadata(path)
        .map_err(|e| format!("{CONFIG}: {e}"))?
        .len();
    if size > CONFIG_MAX {
        return Err(format!("{CONFIG} is {size} bytes, more than {CONFIG_MAX}"));
    }
    let text = fs::read(path).map_err(|e| format!("{CONFIG}: {e}"))?;
    let value: Value =
        serde_json::from_slice(&text).map_err(|e| format!("{CONFIG} does not parse: {e}"))?;
    match value {
        Value::Object(_) => Ok(value),
        _ => Err(format!("{CONFIG} is not a JSON object")),
    }
}

fn last_segment(name: &str) -> &str {
    name.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(name)
}

/// The adapter's base model must be one of `allowed` (by last path segment, ignoring case:
/// `meta-llama/Llama-3-8B` matches `/models/llama-3-8b`).
fn check_base(base: &str, allowed: &[String]) -> Result<(), String> {
    let ours = last_segment(base);
    if allowed.is_empty()
        || allowed
            .iter()
            .any(|a| last_segment(a).eq_ignore_ascii_case(ours))
    {
        return Ok(());
    }
    Err(format!(
        "base model '{}' (base_model_name_or_path) matches none of the expected base models: {}",
        crate::error::one_line(base),
        allowed.join(", ")
    ))
}

/// The safetensors layout: 8-byte little-endian header length, a JSON object header naming
/// each tensor's `data_offsets`, all inside the file.
fn check_safetensors(path: &Path) -> Result<(), String> {
    let mut file = fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix)
        .map_err(|_| "shorter than its 8-byte header length".to_owned())?;
    let header_len = u64::from_le_bytes(prefix);
    if header_len > HEADER_MAX || header_len > len.saturating_sub(8) {
        return Err(format!(
            "header length {header_len} does not fit in {len} bytes"
        ));
    }
    let mut header = vec![0u8; usize::try_from(header_len).map_err(|e| e.to_string())?];
    file.read_exact(&mut header).map_err(|e| e.to_string())?;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&header).map_err(|e| format!("header does not parse: {e}"))?;
    let data_len = len - 8 - header_len;
    let mut tensors = 0;
    for (name, info) in &header {
        if name == "__metadata__" {
            continue;
        }
        let offsets = info.get("data_offsets").and_then(Value::as_array);
        let (start, end) = match offsets.map(|o| o.as_slice()) {
            Some([a, b]) => (a.as_u64(), b.as_u64()),
            _ => (None, None),
        };
        match (start, end) {
            (Some(s), Some(e)) if s <= e && e <= data_len => tensors += 1,
            _ => {
                return Err(format!(
                    "tensor '{}' has data_offsets outside the {data_len} data bytes (truncated?)",
                    crate::error::one_line(name)
                ));
            }
        }
    }
    match tensors {
        0 => Err("holds no tensors".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
