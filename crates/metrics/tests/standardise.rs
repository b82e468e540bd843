//! The builtin rules against recorded expositions: real vLLM 0.32 (CPU build, tiny model, after
//! three completions and one streamed chat) and SGLang's documented `/metrics` example.

use brix_metrics::expo::{self, Exposition, Family};
use brix_metrics::{Combine, Mode, Rules, names, standardise, try_standardise, values};

const VLLM: &str = include_str!("data/vllm-0.32-cpu.prom");
const SGLANG: &str = include_str!("data/sglang.prom");

const DROP: Mode = Mode::Transform {
    keep_original: false,
};
const KEEP: Mode = Mode::Transform {
    keep_original: true,
};

fn parse(text: &str) -> Exposition {
    let e = expo::parse(text).expect("within the size limit");
    assert_eq!(e.skipped, 0, "output must be clean exposition:\n{text}");
    e
}

fn family<'a>(e: &'a Exposition, name: &str) -> Option<&'a Family> {
    e.families.iter().find(|f| f.name == name)
}

/// Asserts `to` in `out` is `from` in `input` renamed: same type, help, labels and values.
fn same_series(input: &Exposition, out: &Exposition, from: &str, to: &str) {
    let a = family(input, from).unwrap_or_else(|| panic!("{from} in the input"));
    let b = family(out, to).unwrap_or_else(|| panic!("{to} in the output"));
    assert_eq!((&a.kind, &a.help), (&b.kind, &b.help), "{to}");
    assert_eq!(a.samples.len(), b.samples.len(), "{to}");
    for (x, y) in a.samples.iter().zip(&b.samples) {
        let suffix = x
            .name
            .strip_prefix(from.trim_end_matches("_total"))
            .unwrap_or("");
        assert!(
            y.name.ends_with(suffix) && y.name.starts_with(to.trim_end_matches("_total")),
            "{} -> {}",
            x.name,
            y.name
        );
        assert_eq!(
            (&x.labels, x.value.to_bits()),
            (&y.labels, y.value.to_bits())
        );
    }
}

fn value(e: &Exposition, series: &str) -> f64 {
    e.families
        .iter()
        .flat_map(|f| &f.samples)
        .filter(|s| s.name == series)
        .map(|s| s.value)
        .sum()
}

#[test]
fn vllm_gets_every_standard_name() {
    let rules = Rules::builtin("vllm").expect("builtin");
    let input = parse(VLLM);
    let out = parse(&standardise(&rules, VLLM, DROP));
    for (from, to) in [
        ("vllm:num_requests_waiting", names::QUEUE_SIZE),
        ("vllm:num_requests_running", names::RUNNING),
        ("vllm:kv_cache_usage_perc", names::KV_USAGE),
        ("vllm:prompt_tokens_total", names::PROMPT_TOKENS),
        ("vllm:prompt_tokens_created", "aibrix:prompt_tokens_created"),
        ("vllm:generation_tokens_total", names::GENERATION_TOKENS),
        ("vllm:time_to_first_token_seconds", names::TTFT),
        ("vllm:inter_token_latency_seconds", names::TPOT),
        ("vllm:e2e_request_latency_seconds", names::E2E),
        ("vllm:request_success_total", names::REQUEST_SUCCESS),
    ] {
        same_series(&input, &out, from, to);
    }
    assert_eq!(value(&out, names::PROMPT_TOKENS), 27.0);
    assert_eq!(value(&out, names::GENERATION_TOKENS), 46.0);
    assert_eq!(value(&out, "aibrix:time_to_first_token_seconds_count"), 4.0);
    let success = family(&out, names::REQUEST_SUCCESS).expect("present");
    assert!(success.samples.iter().any(|s| {
        s.value == 4.0
            && s.labels
                .contains(&("finished_reason".into(), "length".into()))
    }));
    // Kept: running under vLLM's name (AIBrix tooling reads it), the passthrough histograms.
    for kept in [
        "vllm:num_requests_running",
        "vllm:request_prompt_tokens",
        "vllm:request_generation_tokens",
    ] {
        assert_eq!(family(&out, kept), family(&input, kept), "{kept}");
    }
    // Dropped without keep_original: everything else of the engine's.
    for gone in [
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "python_gc_objects_collected_total",
        "vllm:cache_config_info",
    ] {
        assert!(family(&out, gone).is_none(), "{gone}");
    }
}

#[test]
fn sglang_gets_every_standard_name() {
    let rules = Rules::builtin("sglang").expect("builtin");
    let input = parse(SGLANG);
    let out = parse(&standardise(&rules, SGLANG, DROP));
    for (from, to) in [
        ("sglang:num_queue_reqs", names::QUEUE_SIZE),
        ("sglang:num_running_reqs", names::RUNNING),
        ("sglang:token_usage", names::KV_USAGE),
        ("sglang:token_usage", names::TOKEN_USAGE),
        ("sglang:gen_throughput", names::GENERATION_THROUGHPUT),
        ("sglang:prompt_tokens_total", names::PROMPT_TOKENS),
        ("sglang:generation_tokens_total", names::GENERATION_TOKENS),
        ("sglang:time_to_first_token_seconds", names::TTFT),
        ("sglang:time_per_output_token_seconds", names::TPOT),
        ("sglang:e2e_request_latency_seconds", names::E2E),
        ("sglang:cache_hit_rate", names::CACHE_HIT_RATE),
    ] {
        same_series(&input, &out, from, to);
    }
    assert_eq!(value(&out, names::QUEUE_SIZE), 2826.0);
    assert_eq!(value(&out, names::RUNNING), 162.0);
    assert_eq!(value(&out, names::KV_USAGE), 0.28);
    assert_eq!(value(&out, names::PROMPT_TOKENS), 8.128902e6);
    assert_eq!(
        value(&out, "aibrix:e2e_request_latency_seconds_count"),
        11228.0
    );
    let ttft = family(&out, names::TTFT).expect("present");
    assert_eq!(ttft.kind.as_deref(), Some("histogram"));
    assert!(
        ttft.samples
            .iter()
            .any(|s| s.name == "aibrix:time_to_first_token_seconds_bucket"
                && s.labels.contains(&("le".into(), "+Inf".into()))
                && s.value == 11008.0)
    );
    for kept in [
        "sglang:num_running_reqs",
        "sglang:func_latency_seconds",
        "sglang:num_used_tokens",
    ] {
        assert!(family(&out, kept).is_some(), "{kept}");
    }
    assert!(family(&out, "sglang:num_queue_reqs").is_none());
}

#[test]
fn keep_original_adds_and_never_duplicates() {
    for (engine, text) in [("vllm", VLLM), ("sglang", SGLANG)] {
        let rules = Rules::builtin(engine).expect("builtin");
        let input = parse(text);
        let dropped = parse(&standardise(&rules, text, DROP));
        let kept = try_standardise(&rules, text, KEEP).expect("ok");
        let out = parse(&kept.text);
        for f in &input.families {
            assert_eq!(
                family(&out, &f.name),
                Some(f),
                "{engine}: {} unchanged",
                f.name
            );
        }
        for f in &dropped.families {
            assert_eq!(family(&out, &f.name), Some(f), "{engine}: {}", f.name);
        }
        let mut seen = std::collections::HashSet::new();
        assert!(
            out.families.iter().all(|f| seen.insert(&f.name)),
            "{engine}"
        );
        // Standardising standardised output changes nothing (a runtime behind a runtime).
        let again = parse(&standardise(&rules, &kept.text, KEEP));
        assert_eq!(again, out, "{engine}");
    }
}

#[test]
fn one_reading_whatever_the_source() {
    let rules = Rules::all_builtin();
    let wanted = [
        (names::RUNNING, Combine::Sum),
        (names::QUEUE_SIZE, Combine::Sum),
        (names::KV_USAGE, Combine::Max),
        (names::PROMPT_TOKENS, Combine::Sum),
    ];
    for (engine, text, want) in [
        ("vllm", VLLM, [Some(0.0), Some(0.0), Some(0.0), Some(27.0)]),
        (
            "sglang",
            SGLANG,
            [Some(162.0), Some(2826.0), Some(0.28), Some(8.128902e6)],
        ),
    ] {
        let engine_rules = Rules::builtin(engine).expect("builtin");
        for mode in [DROP, KEEP, Mode::Passthrough] {
            let text = standardise(&engine_rules, text, mode);
            assert_eq!(values(&rules, &text, &wanted), want, "{engine} {mode:?}");
        }
        assert_eq!(values(&rules, text, &wanted), want, "{engine} raw");
    }
    // The legacy vLLM gauge and SGLang's, read under the one KV name.
    let legacy = "vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.5\n";
    let kv = [(names::KV_USAGE, Combine::Max)];
    assert_eq!(values(&rules, legacy, &kv), [Some(0.5)]);
    let both = format!("{legacy}aibrix:kv_cache_usage_perc 0.25\n");
    assert_eq!(values(&rules, &both, &kv), [Some(0.25)], "standard wins");
    assert_eq!(values(&rules, "up 1\n", &kv), [None]);
}

#[test]
fn a_user_file_overrides_and_extends() {
    let mut rules = Rules::builtin("vllm").expect("builtin");
    let user = r#"
[[rule]]
from = "vllm:num_requests_waiting"
to = "team:waiting"
labels = { model_name = "model" }

[[rule]]
from = "vllm:kv_cache_usage_perc"
action = "drop"

[[rule]]
from = "vllm:num_preemptions_total"
to = "team:preemptions_total"
"#;
    rules.extend(Rules::from_toml_str(user).expect("valid"));
    let out = parse(&standardise(&rules, VLLM, KEEP));
    assert!(
        family(&out, names::QUEUE_SIZE).is_none(),
        "builtin replaced"
    );
    let waiting = family(&out, "team:waiting").expect("renamed");
    assert!(
        waiting.samples[0]
            .labels
            .contains(&("model".into(), "tiny".into()))
    );
    assert!(
        family(&out, "vllm:kv_cache_usage_perc").is_none(),
        "dropped even when keeping"
    );
    assert!(family(&out, names::KV_USAGE).is_none());
    assert!(family(&out, "team:preemptions_total").is_some());
    assert!(family(&out, "team:preemptions_created").is_some());
    assert!(
        family(&out, names::RUNNING).is_some(),
        "other builtins stay"
    );
}

#[test]
fn passthrough_changes_nothing() {
    let rules = Rules::all_builtin();
    for text in [VLLM, SGLANG] {
        assert_eq!(
            parse(&standardise(&rules, text, Mode::Passthrough)),
            parse(text)
        );
    }
}

#[test]
fn malformed_input_is_skipped_and_counted() {
    let rules = Rules::all_builtin();
    let text = "# TYPE vllm:num_requests_running gauge\n\
        vllm:num_requests_running{model_name=\"m\"} 3\n\
        vllm:num_requests_running{model_name=\"unterminated} 4\n\
        vllm:num_requests_waiting 1 2 3\n\
        {} 5\n\
        \u{1F600} 6\n\
        # TYPE\n\
        vllm:kv_cache_usage_perc{a=\"x\\\"y\\\\z\\nw\"} 0.5 1700000000000\n\
        vllm:num_requests_waiting NaN\n";
    let s = try_standardise(&rules, text, DROP).expect("ok");
    assert_eq!(s.skipped_lines, 5);
    let out = parse(&s.text);
    assert_eq!(value(&out, names::RUNNING), 3.0);
    let kv = &family(&out, names::KV_USAGE).expect("present").samples[0];
    assert_eq!(kv.labels, vec![("a".into(), "x\"y\\z\nw".into())]);
    assert_eq!(kv.timestamp, Some(1_700_000_000_000));
    assert!(value(&out, names::QUEUE_SIZE).is_nan());
    // Seeded corruption of the real exposition: never a panic, always clean output.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..200 {
        let mut bytes = VLLM.as_bytes().to_vec();
        for _ in 0..20 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed % bytes.len() as u64) as usize;
            let pool = b"{}\"\\=, \n#aZ9:_.";
            bytes[at] = pool[(seed >> 32) as usize % pool.len()];
        }
        let text = String::from_utf8_lossy(&bytes);
        for mode in [DROP, KEEP, Mode::Passthrough] {
            parse(&standardise(&rules, &text, mode));
        }
    }
}

#[test]
fn oversized_expositions_are_refused() {
    let rules = Rules::all_builtin();
    let big = "x 1\n".repeat(brix_metrics::MAX_EXPOSITION_BYTES / 4 + 1);
    assert!(try_standardise(&rules, &big, DROP).is_err());
    let out = standardise(&rules, &big, DROP);
    assert!(out.starts_with("# brix-metrics: exposition of"), "{out}");
    assert!(parse(&out).families.is_empty());
}

/// The output read by the Python client's parser (what AIBrix itself uses), when the repo's
/// test venv is there.
#[test]
fn python_prometheus_client_reads_the_output() {
    let python = std::env::var("BRIX_PYTHON").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python").to_string()
    });
    let probe = std::process::Command::new(&python)
        .args(["-c", "import prometheus_client"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "!!!! SKIPPED: no python with prometheus_client at {python} (scripts/test makes .venv; or set BRIX_PYTHON)"
        );
        return;
    }
    let script = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
        fs = list(p(sys.stdin.read()))\nprint(len(fs), sum(len(f.samples) for f in fs))\n";
    for (engine, text) in [("vllm", VLLM), ("sglang", SGLANG)] {
        let rules = Rules::builtin(engine).expect("builtin");
        for mode in [DROP, KEEP] {
            let out = standardise(&rules, text, mode);
            let mut child = std::process::Command::new(&python)
                .args(["-c", script])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("python starts");
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(out.as_bytes())
                .expect("written");
            let done = child.wait_with_output().expect("python ends");
            assert!(
                done.status.success(),
                "{engine} {mode:?}: python refused the output"
            );
            let got = String::from_utf8_lossy(&done.stdout);
            let samples: usize = parse(&out).families.iter().map(|f| f.samples.len()).sum();
            let py_samples: usize = got
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .expect("two numbers");
            assert_eq!(py_samples, samples, "{engine} {mode:?}: {got}");
        }
    }
}

/// Prometheus refuses a whole scrape whose series carries one label name twice: neither an
/// engine line like that nor a user's label rename onto a label the series has may produce one.
#[test]
fn no_series_ever_carries_a_label_name_twice() {
    let mut rules = Rules::builtin("vllm").expect("builtin");
    rules.extend(
        Rules::from_toml_str(
            "[[rule]]\nfrom = \"vllm:num_requests_waiting\"\nto = \"aibrix:queue_size\"\n\
             labels = { engine = \"model_name\" }\n",
        )
        .expect("valid rules"),
    );
    let text = "# TYPE vllm:num_requests_waiting gauge\n\
        vllm:num_requests_waiting{model_name=\"m\",engine=\"0\"} 2\n\
        # TYPE vllm:num_requests_running gauge\n\
        vllm:num_requests_running{a=\"1\",a=\"2\"} 3\n\
        vllm:num_requests_running{a=\"1\"} 4\n";
    for mode in [DROP, KEEP, Mode::Passthrough] {
        let s = try_standardise(&rules, text, mode).expect("ok");
        assert_eq!(s.skipped_lines, 1, "the line with `a` twice is malformed");
        let out = parse(&s.text);
        for f in &out.families {
            for smp in &f.samples {
                let mut names: Vec<&str> = smp.labels.iter().map(|(k, _)| k.as_str()).collect();
                names.sort_unstable();
                let len = names.len();
                names.dedup();
                assert_eq!(names.len(), len, "{mode:?}: {}", s.text);
            }
        }
        if mode != Mode::Passthrough {
            // The renamed label wins: the rule says `engine` is what the series calls model_name.
            let q = &family(&out, names::QUEUE_SIZE).expect("renamed").samples[0];
            assert_eq!(
                q.labels,
                vec![("model_name".into(), "0".into())],
                "{mode:?}"
            );
        }
    }
    let e = Rules::from_toml_str(
        "[[rule]]\nfrom = \"a\"\nto = \"b\"\nlabels = { x = \"z\", y = \"z\" }\n",
    )
    .expect_err("two labels renamed onto one name");
    assert!(e.to_string().contains("\"z\""), "{e}");
}
