use std::path::PathBuf;

use crate::workload::{
    GeneratorSpec, MultiTurn, ShareGpt, SharedPrefix, SpecError, WorkloadError, load,
};

fn parse(spec: &str) -> Result<GeneratorSpec, SpecError> {
    spec.parse()
}

#[test]
fn specs_parse_with_defaults_for_missing_fields() {
    assert_eq!(
        parse("shared-prefix"),
        Ok(GeneratorSpec::SharedPrefix(SharedPrefix::default()))
    );
    assert_eq!(
        parse("shared-prefix:groups=8,prefix=1024,suffix=64,output=128,requests=400"),
        Ok(GeneratorSpec::SharedPrefix(SharedPrefix::default()))
    );
    assert_eq!(
        parse("shared-prefix: groups = 2 ,requests=5,"),
        Ok(GeneratorSpec::SharedPrefix(SharedPrefix {
            groups: 2,
            requests: 5,
            ..SharedPrefix::default()
        }))
    );
    assert_eq!(
        parse("multi-turn:sessions=40,turns=5,system=512,user=64,output=64,think=1.0"),
        Ok(GeneratorSpec::MultiTurn(MultiTurn::default()))
    );
    assert_eq!(
        parse("multi-turn:systems=4,think=0"),
        Ok(GeneratorSpec::MultiTurn(MultiTurn {
            systems: 4,
            think: 0.0,
            ..MultiTurn::default()
        }))
    );
    let plain = ShareGpt {
        path: PathBuf::from("/data/a,b.json"),
        conversations: None,
        all_turns: false,
        think: 1.0,
    };
    assert_eq!(
        parse("sharegpt:/data/a,b.json"),
        Ok(GeneratorSpec::ShareGpt(plain))
    );
    assert_eq!(
        parse("sharegpt:path=sg.json,conversations=100,turns=all,think=2"),
        Ok(GeneratorSpec::ShareGpt(ShareGpt {
            path: PathBuf::from("sg.json"),
            conversations: Some(100),
            all_turns: true,
            think: 2.0,
        }))
    );
    assert!(GeneratorSpec::names_generator("multi-turn:turns=2"));
    assert!(!GeneratorSpec::names_generator("traces/multi-turn.jsonl"));
}

fn bad_value_field(spec: &str) -> &'static str {
    match parse(spec) {
        Err(SpecError::BadValue { field, .. }) => field,
        other => panic!("{spec}: expected a bad value, got {other:?}"),
    }
}

#[test]
fn spec_errors_name_the_field() {
    let cases = [
        ("shared-prefix:groups=0", "groups"),
        ("shared-prefix:prefix=-3", "prefix"),
        ("shared-prefix:suffix=1.5", "suffix"),
        ("shared-prefix:output=0", "output"),
        ("shared-prefix:requests=lots", "requests"),
        ("shared-prefix:prefix=0,suffix=0", "suffix"),
        ("multi-turn:sessions=0", "sessions"),
        ("multi-turn:turns=", "turns"),
        ("multi-turn:user=0", "user"),
        ("multi-turn:systems=0", "systems"),
        ("multi-turn:think=-1", "think"),
        ("multi-turn:think=inf", "think"),
        ("sharegpt:path=a.json,turns=some", "turns"),
        ("sharegpt:path=a.json,conversations=0", "conversations"),
        ("sharegpt:path=", "path"),
    ];
    for (spec, field) in cases {
        assert_eq!(bad_value_field(spec), field, "{spec}");
    }
    assert_eq!(
        parse("shared-prefix:group=8"),
        Err(SpecError::UnknownField {
            generator: "shared-prefix",
            field: "group".into(),
            known: "groups, prefix, suffix, output, requests",
        })
    );
    assert_eq!(
        parse("multi-turn:turns=2,turns=3"),
        Err(SpecError::Duplicate {
            field: "turns".into()
        })
    );
    assert_eq!(
        parse("multi-turn:turns"),
        Err(SpecError::NotKeyValue {
            item: "turns".into()
        })
    );
    assert_eq!(parse("sharegpt"), Err(SpecError::Missing { field: "path" }));
    assert_eq!(
        parse("zipf:n=3"),
        Err(SpecError::UnknownGenerator {
            name: "zipf".into()
        })
    );
}

#[test]
fn load_reports_the_spec_and_its_field() {
    let error = load("multi-turn:sessions=4,think=soon", 0).expect_err("bad think");
    assert!(matches!(error, WorkloadError::Spec { .. }));
    assert_eq!(
        error.to_string(),
        "workload spec `multi-turn:sessions=4,think=soon`: field `think`: expected seconds ≥ 0, got `soon`"
    );
}
