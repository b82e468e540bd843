use std::collections::HashMap;
use std::time::Instant;

use crate::workload::vocab::text;
use crate::workload::{BLOCK_TOKENS, FileError, Format, LineError, Workload, detect, parse};

use super::traces_dir;

const MOONCAKE: &str = r#"{"timestamp": 0, "input_length": 1100, "output_length": 5, "hash_ids": [0, 1, 2]}
{"timestamp": 250, "input_length": 1024, "output_length": 6, "hash_ids": [0, 1]}

{"timestamp": 1500, "input_length": 700, "output_length": 7, "hash_ids": [0, 2]}
{"timestamp": 2000, "input_length": 100, "output_length": 8, "hash_ids": [2]}
{"timestamp": 2000, "input_length": 600, "output_length": 9, "hash_ids": [3, 3]}
"#;

fn mooncake() -> Workload {
    parse(MOONCAKE, 11).expect("sample parses")
}

fn block(prompt: &[u32], k: usize) -> &[u32] {
    &prompt[k * BLOCK_TOKENS..((k + 1) * BLOCK_TOKENS).min(prompt.len())]
}

#[test]
fn mooncake_equal_ids_give_equal_blocks() {
    let w = mooncake();
    let r = &w.requests;
    assert_eq!(r.len(), 5);
    let times: Vec<f64> = r.iter().map(|r| r.at_s).collect();
    assert_eq!(times, [0.0, 0.25, 1.5, 2.0, 2.0]);
    let lengths: Vec<usize> = r.iter().map(|r| r.prompt.len()).collect();
    assert_eq!(lengths, [1100, 1024, 700, 100, 600]);
    let outputs: Vec<u32> = r.iter().map(|r| r.output_tokens).collect();
    assert_eq!(outputs, [5, 6, 7, 8, 9]);
    assert_eq!(r[1].prompt[..], r[0].prompt[..1024], "ids 0, 1 shared");
    assert_eq!(
        block(&r[2].prompt, 0),
        block(&r[0].prompt, 0),
        "id 0 shared"
    );
    assert_ne!(
        block(&r[0].prompt, 0),
        block(&r[0].prompt, 1),
        "distinct ids differ"
    );
    assert_eq!(
        block(&r[4].prompt, 0)[..88],
        block(&r[4].prompt, 1)[..],
        "an id repeated in one record"
    );
}

#[test]
fn mooncake_partial_block_is_a_prefix_of_the_full_block() {
    let w = mooncake();
    let r = &w.requests;
    // Id 2: 76 words in request 0, 188 in request 2, 100 in request 3, and a full block in
    // none, so all three cuts must agree where they overlap.
    assert_eq!(block(&r[0].prompt, 2).len(), 1100 - 1024);
    assert_eq!(block(&r[2].prompt, 1).len(), 700 - 512);
    assert!(block(&r[2].prompt, 1).starts_with(block(&r[0].prompt, 2)));
    assert!(block(&r[2].prompt, 1).starts_with(&r[3].prompt));
    // A cut seen before the full block, and after it.
    let later = format!(
        "{MOONCAKE}{}\n",
        r#"{"timestamp": 3000, "input_length": 512, "output_length": 1, "hash_ids": [2]}"#
    );
    let w = parse(&later, 11).expect("parses");
    let full = &w.requests[5].prompt;
    assert_eq!(full.len(), 512);
    assert!(full.starts_with(&w.requests[2].prompt[512..]));
    let after = format!(
        "{later}{}\n",
        r#"{"timestamp": 4000, "input_length": 3, "output_length": 1, "hash_ids": [2]}"#
    );
    let w = parse(&after, 11).expect("parses");
    assert_eq!(w.requests[6].prompt[..], full[..3]);
}

#[test]
fn mooncake_prefix_sharing_holds_in_cl100k_tokens() {
    let bpe = tiktoken_rs::cl100k_base().expect("cl100k_base loads");
    let w = mooncake();
    let tokens: Vec<Vec<u32>> = w
        .requests
        .iter()
        .map(|r| bpe.encode_ordinary(&text(&r.prompt)))
        .collect();
    for (t, r) in tokens.iter().zip(&w.requests) {
        assert_eq!(t.len(), r.prompt.len(), "one token per word");
    }
    assert_eq!(tokens[1][..], tokens[0][..1024]);
    assert_eq!(tokens[2][..512], tokens[0][..512]);
    assert_ne!(tokens[2][512..], tokens[0][512..700]);
    assert!(tokens[2][512..].starts_with(&tokens[3]));
}

fn line_error(text: &str) -> (usize, LineError) {
    match parse(text, 1) {
        Err(FileError::Line { line, kind }) => (line, kind),
        other => panic!("expected a line error, got {other:?}"),
    }
}

#[test]
fn a_malformed_mooncake_line_is_reported_with_its_number() {
    let good = r#"{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [0]}"#;
    let cases = [
        (
            r#"{"timestamp": 5, "input_length": 10, "output_length": 1, "hash_ids": [0"#,
            "not a Mooncake record",
        ),
        (
            r#"{"timestamp": 5, "input_length": 10, "output_length": 1}"#,
            "missing field `hash_ids`",
        ),
        (
            r#"{"timestamp": 5, "input_length": 513, "output_length": 1, "hash_ids": [0]}"#,
            "does not fit 1 hash_ids",
        ),
        (
            r#"{"timestamp": 5, "input_length": 512, "output_length": 1, "hash_ids": [0, 1]}"#,
            "does not fit 2",
        ),
        (
            r#"{"timestamp": 5, "input_length": 0, "output_length": 1, "hash_ids": []}"#,
            "does not fit 0",
        ),
        (
            r#"{"timestamp": -5, "input_length": 10, "output_length": 1, "hash_ids": [0]}"#,
            "`timestamp` is -5",
        ),
        (
            r#"{"timestamp": 5, "input_length": 10, "output_length": -1, "hash_ids": [0]}"#,
            "`output_length` is -1, expected a token count",
        ),
        (
            r#"{"timestamp": "5", "input_length": 10, "output_length": 1, "hash_ids": [0]}"#,
            "`timestamp` is \"5\"",
        ),
        (
            r#"{"timestamp": 5, "input_length": 10, "output_length": 1, "hash_ids": [0.5]}"#,
            "`hash_ids` is [0.5]",
        ),
    ];
    for (bad, message) in cases {
        let file = format!("{good}\n\n{good}\n{bad}\n{good}\n");
        let (line, kind) = line_error(&file);
        assert_eq!(line, 4, "{bad}");
        assert!(kind.to_string().contains(message), "{bad}: {kind}");
    }
    let error = parse(&format!("{good}\n{good}\n{{\"hash_ids\": oops\n"), 1).expect_err("bad line");
    assert!(
        error
            .to_string()
            .starts_with("line 3: not a Mooncake record"),
        "{error}"
    );
}

const AZURE: &str = "TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 23:59:59.5000000,374,44
2023-11-17 00:00:00.0000001,396,109
2023-11-17 00:00:01,879,55
";

#[test]
fn azure_times_are_relative_to_the_first_row() {
    assert_eq!(detect(AZURE), Some(Format::AzureCsv));
    let w = parse(AZURE, 2).expect("parses");
    let times: Vec<f64> = w.requests.iter().map(|r| r.at_s).collect();
    assert_eq!(times, [0.0, 0.5000001, 1.5], "across midnight, to 100 ns");
    let shape: Vec<(usize, u32)> = w
        .requests
        .iter()
        .map(|r| (r.prompt.len(), r.output_tokens))
        .collect();
    assert_eq!(shape, [(374, 44), (396, 109), (879, 55)]);
    assert_ne!(
        w.requests[0].prompt[..10],
        w.requests[1].prompt[..10],
        "no shared prefixes"
    );
    assert_eq!(parse(AZURE, 2).expect("parses"), w, "seeded");
    // Columns are found by name.
    let reordered = "GeneratedTokens,TIMESTAMP,ContextTokens\n7,2023-11-16 18:15:46.6805900,3\n";
    let w = parse(reordered, 2).expect("parses");
    assert_eq!(
        (w.requests[0].prompt.len(), w.requests[0].output_tokens),
        (3, 7)
    );
}

#[test]
fn a_malformed_azure_line_is_reported_with_its_number() {
    let cases = [
        (
            "2023-11-16 18:15:4x.1,10,1",
            "`TIMESTAMP` is `2023-11-16 18:15:4x.1`",
        ),
        ("2023-13-16 18:15:46,10,1", "TIMESTAMP"),
        ("2023-11-16 18:15:46,ten,1", "`ContextTokens` is `ten`"),
        ("2023-11-16 18:15:46,10,-1", "`GeneratedTokens` is `-1`"),
        (
            "2023-11-16 18:15:46,10",
            "expected 3 comma-separated fields, found 2",
        ),
    ];
    for (bad, message) in cases {
        let file = format!("{AZURE}{bad}\n2023-11-17 00:00:02,1,1\n");
        let (line, kind) = line_error(&file);
        assert_eq!(line, 5, "{bad}");
        assert!(kind.to_string().contains(message), "{bad}: {kind}");
    }
}

#[test]
fn the_real_traces_load() {
    let Some(dir) = traces_dir() else { return };
    // Debug builds read the first 300 Mooncake requests; the whole file is timed in release by
    // `mooncake_whole_file_load_time`.
    let whole = std::fs::read_to_string(dir.join("mooncake_conversation.jsonl")).expect("readable");
    let head: String = whole.lines().take(300).flat_map(|l| [l, "\n"]).collect();
    let w = parse(&head, 1).expect("Mooncake head parses");
    assert_eq!(w.requests.len(), 300);
    assert_blocks_consistent(&head, &w);
    for (name, rows) in [
        ("azure_llm_2023_conv.csv", 19_366),
        ("azure_llm_2023_code.csv", 8_819),
    ] {
        let text = std::fs::read_to_string(dir.join(name)).expect("readable");
        let w = parse(&text, 1).expect("Azure trace parses");
        assert_eq!(w.requests.len(), rows, "{name}");
        let last = w.requests.last().map_or(0.0, |r| r.at_s);
        assert!(
            w.requests[0].at_s == 0.0 && (3000.0..3700.0).contains(&last),
            "{name}: {last}"
        );
    }
}

/// Every hash id's block is the same wherever it appears (a cut one is a prefix).
fn assert_blocks_consistent(text: &str, w: &Workload) {
    let mut seen: HashMap<u64, &[u32]> = HashMap::new();
    for (line, request) in text.lines().zip(&w.requests) {
        let record: serde_json::Value = serde_json::from_str(line).expect("json");
        let ids = record["hash_ids"].as_array().expect("ids");
        for (k, id) in ids.iter().enumerate() {
            let here = block(&request.prompt, k);
            let id = id.as_u64().expect("id");
            let earlier = seen.entry(id).or_insert(here);
            let n = here.len().min(earlier.len());
            assert_eq!(here[..n], earlier[..n], "id {id}");
            if here.len() > earlier.len() {
                seen.insert(id, here);
            }
        }
    }
}

#[test]
#[ignore = "timing: run with cargo test --release -- --ignored"]
fn mooncake_whole_file_load_time() {
    let Some(dir) = traces_dir() else { return };
    let path = dir.join("mooncake_conversation.jsonl");
    let start = Instant::now();
    let w = crate::workload::load(&path.to_string_lossy(), 1).expect("loads");
    let elapsed = start.elapsed();
    let tokens: usize = w.requests.iter().map(|r| r.prompt.len()).sum();
    eprintln!(
        "Mooncake: {} requests, {tokens} tokens, loaded in {elapsed:?}",
        w.requests.len()
    );
    assert_eq!(w.requests.len(), 12_031);
}
