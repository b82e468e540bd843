//! Test support: scratch directories, generated safetensors files, the reference reader.

#![allow(dead_code)] // each test binary uses a different part

pub mod server;

use std::path::{Path, PathBuf};

use brix_loader::{HostSink, LoadReport, digest};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// A fresh directory under the target dir, removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "brix-loader-test-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic bytes (an LCG), different for each `seed`.
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// Tensors of several dtypes and shapes (a scalar, a zero-sized one, odd sizes that cut across
/// chunk boundaries), about `scale` × 10 KiB in all, written by the safetensors crate.
pub fn write_model(path: &Path, scale: usize) {
    let specs: Vec<(&str, Dtype, Vec<usize>)> = vec![
        ("embed.weight", Dtype::BF16, vec![31 * scale, 64]),
        ("layers.0.attn.q.weight", Dtype::F32, vec![17, 13 * scale]),
        ("layers.0.attn.scale", Dtype::F32, vec![]),
        ("layers.0.mlp.up.weight", Dtype::F16, vec![3, 5, 7 * scale]),
        ("layers.0.mlp.empty", Dtype::F16, vec![0, 4]),
        ("layers.0.mask", Dtype::BOOL, vec![101]),
        ("layers.0.q8", Dtype::I8, vec![1000 * scale]),
        ("layers.0.fp8", Dtype::F8_E4M3, vec![33, 33]),
        ("position_ids", Dtype::I64, vec![7 * scale]),
        ("lm_head.weight", Dtype::U8, vec![4099 * scale]),
    ];
    let data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = specs
        .into_iter()
        .enumerate()
        .map(|(i, (name, dtype, shape))| {
            let n = shape.iter().product::<usize>() * dtype.bitsize() / 8;
            (name.to_owned(), dtype, shape, bytes(n, i as u64))
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            let view = TensorView::new(*dtype, shape.clone(), bytes).expect("view");
            (name.clone(), view)
        })
        .collect();
    let meta = [("format".to_owned(), "pt".to_owned())]
        .into_iter()
        .collect();
    safetensors::serialize_to_file(views, Some(meta), path).expect("write safetensors");
}

/// Checks a load against the safetensors crate reading the same file from disk: every tensor's
/// dtype, shape, bytes and digest, and the byte total.
pub fn assert_same_as_file(path: &Path, sink: &HostSink, report: &LoadReport) {
    let file = std::fs::read(path).expect("read");
    let reference = SafeTensors::deserialize(&file).expect("safetensors crate parses it");
    let mut expected = reference.tensors();
    // File order, as the loader's: by offset, then size, then name (zero-sized tensors share
    // an offset with their neighbour).
    expected.sort_by_key(|(n, v)| (v.data().as_ptr() as usize, v.data().len(), n.clone()));
    let got: Vec<_> = sink.tensors().collect();
    assert_eq!(got.len(), expected.len());
    assert_eq!(report.tensors, expected.len());
    let total: usize = expected.iter().map(|(_, v)| v.data().len()).sum();
    assert_eq!(
        report.bytes, total as u64,
        "bytes = the header's data length"
    );
    assert_eq!(sink.data().len(), total);
    assert_eq!(report.digests.len(), expected.len());
    for (((name, view), (meta, loaded)), d) in expected.iter().zip(&got).zip(&report.digests) {
        assert_eq!(&meta.name, name);
        assert_eq!(format!("{:?}", meta.dtype), format!("{:?}", view.dtype()));
        let shape: Vec<u64> = view.shape().iter().map(|&s| s as u64).collect();
        assert_eq!(meta.shape, shape, "{name}");
        assert!(*loaded == view.data(), "{name}: bytes differ");
        assert_eq!(d.name, *name);
        assert_eq!(d.xxh64, digest(view.data()), "{name}: digest");
    }
}
