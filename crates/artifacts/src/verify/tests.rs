use std::fs;

use super::*;

fn safetensors(tensors: &[(&str, usize)], truncate: usize) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut at = 0;
    for (name, len) in tensors {
        header.insert(
            (*name).into(),
            serde_json::json!({"dtype": "F32", "shape": [len / 4], "data_offsets": [at, at + len]}),
        );
        at += len;
    }
    let header = serde_json::to_vec(&Value::Object(header)).expect("json");
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.resize(out.len() + at - truncate, 7);
    out
}

fn adapter(dir: &Path, config: &str, weights: &[u8]) -> Vec<&'static str> {
    fs::create_dir_all(dir).expect("dir");
    fs::write(dir.join(CONFIG), config).expect("config");
    fs::write(dir.join(SAFETENSORS), weights).expect("weights");
    vec![CONFIG, SAFETENSORS]
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("brix-verify-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

#[test]
fn unsafe_names_are_refused() {
    for bad in [
        "",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a//b",
        "./a",
        "a\\b",
        "a\nb",
        "a/",
    ] {
        assert!(safe_relative(bad).is_err(), "{bad:?}");
    }
    for good in ["adapter_config.json", "sub/dir/file.bin", "..a", "a..b"] {
        assert!(safe_relative(good).is_ok(), "{good:?}");
    }
}

#[test]
fn digest_ignores_order_but_not_names_or_contents() {
    let mut a = vec![
        ("b".to_owned(), "22".to_owned()),
        ("a".to_owned(), "11".to_owned()),
    ];
    let mut b = vec![
        ("a".to_owned(), "11".to_owned()),
        ("b".to_owned(), "22".to_owned()),
    ];
    let mut renamed = vec![
        ("a".to_owned(), "11".to_owned()),
        ("c".to_owned(), "22".to_owned()),
    ];
    let mut changed = vec![
        ("a".to_owned(), "11".to_owned()),
        ("b".to_owned(), "23".to_owned()),
    ];
    let d = digest(&mut a);
    assert!(d.starts_with("sha256-") && d.len() == 7 + 64, "{d}");
    assert_eq!(d, digest(&mut b));
    assert_ne!(d, digest(&mut renamed));
    assert_ne!(d, digest(&mut changed));
}

#[test]
fn adapter_checks_name_what_is_wrong() {
    let dir = scratch("checks");
    let good = safetensors(&[("a.lora_A.weight", 64), ("a.lora_B.weight", 64)], 0);
    let cfg = |r: &str, base: &str| {
        format!(
            r#"{{"r": {r}, "target_modules": ["q_proj"], "base_model_name_or_path": "{base}"}}"#
        )
    };
    let expect = |bases: &[&str], max_rank| Expect {
        base_models: bases.iter().map(|s| s.to_string()).collect(),
        max_rank,
    };
    let names = adapter(&dir, &cfg("8", "meta-llama/Llama-3-8B"), &good);
    let ok =
        check_adapter(&dir, &names, &expect(&["/models/llama-3-8b/"], Some(8))).expect("valid");
    assert_eq!(
        ok,
        Checked {
            rank: 8,
            base_model: Some("meta-llama/Llama-3-8B".into())
        }
    );

    let cases: Vec<(String, Vec<u8>, Expect, &str)> = vec![
        (
            cfg("8", "x"),
            good.clone(),
            expect(&[], Some(4)),
            "rank 8 exceeds the engines' max_rank 4",
        ),
        (
            cfg("0", "x"),
            good.clone(),
            expect(&[], None),
            "'r' (the LoRA rank) must be a positive integer",
        ),
        (
            cfg("\"8\"", "x"),
            good.clone(),
            expect(&[], None),
            "'r' (the LoRA rank)",
        ),
        (
            "{not json".into(),
            good.clone(),
            expect(&[], None),
            "adapter_config.json does not parse",
        ),
        (
            cfg("8", "org/Other-7B"),
            good.clone(),
            expect(&["llama-3-8b", "qwen"], None),
            "base model 'org/Other-7B' (base_model_name_or_path) matches none of the expected base models: llama-3-8b, qwen",
        ),
        (
            cfg("8", "x"),
            safetensors(&[("t", 64)], 1),
            expect(&[], None),
            "outside the 63 data bytes (truncated?)",
        ),
        (
            cfg("8", "x"),
            vec![1, 2, 3],
            expect(&[], None),
            "shorter than its 8-byte header length",
        ),
        (
            cfg("8", "x"),
            safetensors(&[], 0),
            expect(&[], None),
            "holds no tensors",
        ),
    ];
    for (config, weights, expect, want) in cases {
        let names = adapter(&dir, &config, &weights);
        let err = check_adapter(&dir, &names, &expect).expect_err(want);
        assert!(err.contains(want), "{err:?} should contain {want:?}");
    }
    let err = check_adapter(&dir, &[SAFETENSORS], &expect(&[], None)).expect_err("no config");
    assert_eq!(err, "adapter_config.json is missing");
    let err = check_adapter(&dir, &[CONFIG], &expect(&[], None)).expect_err("no weights");
    assert!(err.contains("no weights"), "{err}");
    // An empty base model name is accepted whatever the expected models.
    let names = adapter(&dir, &cfg("4", ""), &good);
    let ok = check_adapter(&dir, &names, &expect(&["llama"], None)).expect("empty base");
    assert_eq!(ok.base_model, None);
    fs::remove_dir_all(&dir).expect("cleanup");
}
