use crate::workload::{
    Arrival, FileError, Format, LineError, MultiTurn, SpecError, Turn, WorkRequest, Workload,
    WorkloadError, detect, load, parse, save, schedule, write_jsonl,
};

use super::temp_path;

fn to_text(w: &Workload) -> String {
    let mut out = Vec::new();
    write_jsonl(w, &mut out).expect("writes to memory");
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn save_then_load_gives_the_same_workload() {
    let spec = MultiTurn {
        sessions: 5,
        turns: 3,
        system: 30,
        systems: 1,
        context: 7,
        user: 5,
        output: 4,
        think: 1.5,
    };
    let w = schedule(
        spec.generate(8),
        &Arrival::Poisson { rate: 3.3 },
        8,
        None,
        None,
    );
    assert!(
        w.requests.iter().any(|r| r.at_s.to_string().len() > 15),
        "times with many digits"
    );
    let path = temp_path("roundtrip.jsonl");
    save(&w, &path).expect("saves");
    let loaded = load(&path.to_string_lossy(), 999).expect("loads");
    std::fs::remove_file(&path).expect("cleanup");
    assert_eq!(loaded, w, "exact, whatever the seed");
}

#[test]
fn the_format_is_a_header_then_one_request_a_line() {
    let w = Workload {
        requests: vec![
            WorkRequest {
                id: 0,
                at_s: 0.0,
                session: None,
                prompt: vec![1, 2],
                output_tokens: 3,
            },
            WorkRequest {
                id: 1,
                at_s: 0.1,
                session: Some(Turn {
                    session: 4,
                    turn: 1,
                    think_s: 2.5,
                }),
                prompt: vec![],
                output_tokens: 1,
            },
        ],
    };
    let text = to_text(&w);
    assert_eq!(
        text,
        "{\"format\":\"brix-workload\",\"version\":1,\"requests\":2}\n\
         {\"id\":0,\"at_s\":0.0,\"output_tokens\":3,\"prompt\":[1,2]}\n\
         {\"id\":1,\"at_s\":0.1,\"session\":4,\"turn\":1,\"think_s\":2.5,\"output_tokens\":1,\"prompt\":[]}\n"
    );
    assert_eq!(detect(&text), Some(Format::Brix));
    assert_eq!(parse(&text, 0).expect("parses"), w);
}

#[test]
fn formats_are_told_by_content() {
    let cases = [
        (
            "{\"format\":\"brix-workload\",\"version\":1}\n",
            Some(Format::Brix),
        ),
        (
            "\n\n{\"timestamp\": 0, \"input_length\": 1, \"output_length\": 1, \"hash_ids\": [0]}\n",
            Some(Format::Mooncake),
        ),
        (
            "\u{feff}TIMESTAMP,ContextTokens,GeneratedTokens\n",
            Some(Format::AzureCsv),
        ),
        ("[{\"conversations\": []}]", Some(Format::ShareGpt)),
        ("  [\n", Some(Format::ShareGpt)),
        ("{\"format\":\"other\"}\n", None),
        ("{\"input_length\": 1}\n", None),
        ("time,tokens\n1,2\n", None),
        ("", None),
    ];
    for (text, format) in cases {
        assert_eq!(detect(text), format, "{text:?}");
    }
    assert!(matches!(
        parse("\n\nhello\n", 0),
        Err(FileError::UnknownFormat { line: 3 })
    ));
    assert!(matches!(parse(" \n", 0), Err(FileError::Empty)));
}

#[test]
fn a_file_path_is_loaded_whatever_its_extension() {
    let path = temp_path("trace.txt");
    std::fs::write(
        &path,
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,5,2\n",
    )
    .expect("writes");
    let w = load(&path.to_string_lossy(), 0).expect("loads");
    std::fs::remove_file(&path).expect("cleanup");
    assert_eq!(w.requests.len(), 1);
}

#[test]
fn bad_brix_files_name_the_line() {
    let header = "{\"format\":\"brix-workload\",\"version\":1}";
    let good = "{\"id\":0,\"at_s\":0.0,\"output_tokens\":3,\"prompt\":[1]}";
    let cases = [
        (
            format!(
                "{header}\n{good}\n{{\"id\":1,\"at_s\":-1.0,\"output_tokens\":3,\"prompt\":[1]}}"
            ),
            3,
            "`at_s` is -1",
        ),
        (
            format!(
                "{header}\n{good}\n{{\"id\":1,\"at_s\":0.0,\"turn\":2,\"output_tokens\":3,\"prompt\":[1]}}"
            ),
            3,
            "`session` is missing",
        ),
        (
            format!(
                "{header}\n{good}\n{{\"id\":1,\"at_s\":0.0,\"session\":2,\"output_tokens\":3,\"prompt\":[1]}}"
            ),
            3,
            "`turn` is missing",
        ),
        (
            format!(
                "{header}\n{good}\n{{\"id\":1,\"at_s\":0.0,\"output_tokens\":3,\"prompt\":[1],\"extra\":1}}"
            ),
            3,
            "unknown field `extra`",
        ),
        (
            format!("{header}\n{good}\n{{\"id\":1,\"at_s\":0.0,\"output_tokens\":3}}"),
            3,
            "missing field `prompt`",
        ),
        (
            format!(
                "{header}\n{good}\n{{\"id\":1,\"at_s\":0.0,\"output_tokens\":3,\"prompt\":[1,-2]}}"
            ),
            3,
            "`prompt` is [1,-2]",
        ),
        (
            format!("{{\"format\":\"brix-workload\",\"version\":2}}\n{good}"),
            1,
            "`version` is 2",
        ),
        (
            format!("{{\"format\":\"brix-workload\",\"version\":1,\"requests\":3}}\n{good}"),
            1,
            "promises 3 requests but the file has 1",
        ),
    ];
    for (text, expected_line, message) in cases {
        match parse(&text, 0) {
            Err(FileError::Line { line, kind }) => {
                assert_eq!(line, expected_line, "{text}");
                assert!(kind.to_string().contains(message), "{text}: {kind}");
            }
            other => panic!("{text}: expected a line error, got {other:?}"),
        }
    }
}

#[test]
fn load_errors_name_the_file_and_the_line() {
    let path = temp_path("bad.jsonl");
    let good = r#"{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [0]}"#;
    std::fs::write(&path, format!("{good}\n{good}\n{{\"timestamp\": 1}}\n")).expect("writes");
    let error = load(&path.to_string_lossy(), 0).expect_err("bad line");
    std::fs::remove_file(&path).expect("cleanup");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "{}: line 3: not a Mooncake record",
            path.display()
        )),
        "{message}"
    );
    assert!(matches!(
        error,
        WorkloadError::File {
            error: FileError::Line {
                line: 3,
                kind: LineError::Json { .. }
            },
            ..
        }
    ));

    let missing = temp_path("missing.jsonl");
    assert!(matches!(
        load(&missing.to_string_lossy(), 0),
        Err(WorkloadError::Read { .. })
    ));
    let error = load("poison:rate=3", 0).expect_err("not a generator");
    assert!(
        matches!(&error, WorkloadError::Spec { error: SpecError::UnknownGenerator { name }, .. } if name == "poison"),
        "{error}"
    );
    let error = load("sharegpt:/no/such/file.json", 0).expect_err("no file");
    assert!(matches!(error, WorkloadError::Read { .. }), "{error}");
}
