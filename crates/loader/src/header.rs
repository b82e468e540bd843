//! The safetensors header: an 8-byte little-endian length, then that many bytes of JSON naming
//! each tensor's dtype, shape and byte range in the data section. Everything is checked before
//! a byte of data is fetched, so a bad or hostile file fails fast and allocates nothing big.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Element types of the safetensors format, with their width in bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[allow(missing_docs, non_camel_case_types, clippy::upper_case_acronyms)] // the format's own names
pub enum Dtype {
    BOOL,
    F4,
    F6_E2M3,
    F6_E3M2,
    U8,
    I8,
    F8_E5M2,
    F8_E4M3,
    F8_E8M0,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
    C64,
}

impl Dtype {
    /// Bits per element (sub-byte types pack; a tensor must still fill whole bytes).
    pub fn bits(self) -> u64 {
        match self {
            Self::F4 => 4,
            Self::F6_E2M3 | Self::F6_E3M2 => 6,
            Self::BOOL | Self::U8 | Self::I8 | Self::F8_E5M2 | Self::F8_E4M3 | Self::F8_E8M0 => 8,
            Self::I16 | Self::U16 | Self::F16 | Self::BF16 => 16,
            Self::I32 | Self::U32 | Self::F32 => 32,
            Self::F64 | Self::I64 | Self::U64 | Self::C64 => 64,
        }
    }
}

/// One tensor as the header describes it; `begin..end` is relative to the data section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorMeta {
    /// The tensor's name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions (empty for a scalar).
    pub shape: Vec<u64>,
    /// First byte, relative to the start of the data section.
    pub begin: u64,
    /// One past the last byte.
    pub end: u64,
}

impl TensorMeta {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.begin
    }

    /// Whether the tensor holds no bytes (a zero-sized dimension).
    pub fn is_empty(&self) -> bool {
        self.begin == self.end
    }
}

/// A parsed and validated header: tensors in data order (by offset), the data section's
/// position and length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Tensors sorted by `begin`; they tile `0..data_len` with no gap or overlap.
    pub tensors: Vec<TensorMeta>,
    /// The free-form `__metadata__` map.
    pub metadata: BTreeMap<String, String>,
    /// Where the data section starts in the file: 8 + the JSON's length.
    pub data_start: u64,
    /// Bytes in the data section (the end of the last tensor).
    pub data_len: u64,
}

#[derive(Deserialize)]
struct RawTensor {
    dtype: Dtype,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// The JSON length from the first 8 bytes, refused above `max_header_bytes`.
pub(crate) fn json_len(prefix: &[u8; 8], max_header_bytes: u64) -> Result<u64, String> {
    let n = u64::from_le_bytes(*prefix);
    if n > max_header_bytes {
        return Err(format!(
            "header of {n} bytes is over the limit of {max_header_bytes}"
        ));
    }
    if n < 2 {
        return Err(format!("header of {n} bytes cannot hold a JSON object"));
    }
    Ok(n)
}

/// Parses and validates the JSON (the `json_len` bytes after the prefix): known dtypes, every
/// tensor's byte length equal to its elements × dtype width, offsets contiguous from 0, and
/// the data section no larger than `max_data_bytes`.
pub(crate) fn parse(json: &[u8], max_data_bytes: u64) -> Result<Header, String> {
    let raw: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(json).map_err(|e| format!("header is not a JSON object: {e}"))?;
    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        if name == "__metadata__" {
            metadata = serde_json::from_value(value)
                .map_err(|e| format!("__metadata__ is not a map of strings: {e}"))?;
            continue;
        }
        let t: RawTensor = serde_json::from_value(value)
            .map_err(|e| format!("tensor '{}': {e}", shorten(&name)))?;
        let (begin, end) = t.data_offsets;
        if end < begin {
            return Err(format!(
                "tensor '{}': data_offsets [{begin}, {end}] end before they begin",
                shorten(&name)
            ));
        }
        let bits = t
            .shape
            .iter()
            .try_fold(t.dtype.bits(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("tensor '{}': shape overflows", shorten(&name)))?;
        if bits % 8 != 0 || bits / 8 != end - begin {
            return Err(format!(
                "tensor '{}': {:?} {:?} is {} bits but data_offsets span {} bytes",
                shorten(&name),
                t.dtype,
                t.shape,
                bits,
                end - begin
            ));
        }
        tensors.push(TensorMeta {
            name,
            dtype: t.dtype,
            shape: t.shape,
            begin,
            end,
        });
    }
    tensors.sort_by_key(|t| (t.begin, t.end));
    let mut at = 0;
    for t in &tensors {
        if t.begin != at {
            return Err(format!(
                "tensor '{}' begins at {} but the previous one ends at {at} (offsets must be contiguous)",
                shorten(&t.name),
                t.begin
            ));
        }
        at = t.end;
    }
    if at > max_data_bytes {
        return Err(format!(
            "data section of {at} bytes is over the limit of {max_data_bytes}"
        ));
    }
    Ok(Header {
        tensors,
        metadata,
        data_start: 8 + json.len() as u64,
        data_len: at,
    })
}

/// A tensor name cut to a bounded length for messages.
fn shorten(name: &str) -> String {
    let cut: String = name.chars().take(80).collect();
    let cut: String = cut
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if cut.len() < name.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Header, String> {
        parse(s.as_bytes(), u64::MAX)
    }

    #[test]
    fn valid_header_sorts_by_offset() {
        let h = parse_str(
            r#"{"__metadata__":{"format":"pt"},
                "b":{"dtype":"F32","shape":[2,2],"data_offsets":[2,18]},
                "a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]},
                "c":{"dtype":"F4","shape":[4],"data_offsets":[18,20]}}"#,
        )
        .expect("valid");
        let names: Vec<&str> = h.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(h.data_len, 20);
        assert_eq!(h.metadata["format"], "pt");
    }

    #[test]
    fn bad_headers_say_why() {
        for (json, why) in [
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
                "bits",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                "contiguous",
            ),
            (
                r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#,
                "contiguous",
            ),
            (
                r#"{"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,1]}}"#,
                "tensor 'a'",
            ),
            (
                r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}}"#,
                "end before",
            ),
            (
                r#"{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,1]}}"#,
                "overflows",
            ),
            ("[1,2]", "JSON object"),
        ] {
            let err = parse_str(json).expect_err(json);
            assert!(err.contains(why), "{json}: {err}");
        }
        let big = r#"{"a":{"dtype":"U8","shape":[10],"data_offsets":[0,10]}}"#;
        assert!(
            parse(big.as_bytes(), 9)
                .expect_err("limit")
                .contains("limit")
        );
        assert!(json_len(&(200u64).to_le_bytes(), 100).is_err());
        assert_eq!(json_len(&(100u64).to_le_bytes(), 100), Ok(100));
    }
}
