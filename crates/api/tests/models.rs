//! `validate_models`: one good and one bad case per rule, and `CommandEngine::render`.

use brix_api::{ColdStart, CommandEngine, EngineSpec, ModelSpec, SimEngine, validate_models};

fn parse(yaml: &str) -> Vec<ModelSpec> {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// `Ok(())` or the error's `field: message`.
fn check(yaml: &str) -> Result<(), String> {
    validate_models(&parse(yaml)).map_err(|e| e.to_string())
}

#[test]
fn defaults_fill_in() {
    let models = parse(
        "- name: a\n  engine: {sim: {}}\n- name: b\n  engine: {command: {command: 'vllm --port {port}'}}\n",
    );
    assert_eq!(models[0].replicas, 1);
    assert_eq!(models[0].engine, EngineSpec::Sim(SimEngine::default()));
    let EngineSpec::Sim(sim) = &models[0].engine else {
        panic!("sim")
    };
    assert_eq!(
        (sim.gpu.as_str(), sim.model_profile.as_str()),
        ("A100-80GB", "llama-3-8b")
    );
    let EngineSpec::Command(cmd) = &models[1].engine else {
        panic!("command")
    };
    assert_eq!((cmd.ready_timeout_s, cmd.stop_grace_s), (600, 30));
    assert!(cmd.env.is_empty());
}

#[test]
fn sim_with_no_value_means_all_defaults() {
    let models = parse("- name: a\n  engine:\n    sim:\n");
    assert_eq!(models[0].engine, EngineSpec::Sim(SimEngine::default()));
}

#[test]
fn every_rule_has_a_good_and_a_bad_case() {
    let sim = |extra: &str| format!("- name: m\n  engine:\n    sim: {{{extra}}}\n");
    let cmd = |fields: &str| format!("- name: m\n  engine:\n    command: {{{fields}}}\n");
    let cases: Vec<(String, Result<(), &str>)> = vec![
        // the list
        ("[]".into(), Err("models: at least one model is required")),
        (sim(""), Ok(())),
        // names
        ("- name: ''\n  engine: {sim: {}}\n".into(), Err("models[0].name: must not be empty")),
        ("- name: meta-llama/Llama-3\n  engine: {sim: {}}\n".into(), Err("models[0].name: 'meta-llama/Llama-3' contains '/'")),
        ("- name: has space\n  engine: {sim: {}}\n".into(), Err("models[0].name: 'has space' contains ' '")),
        ("- name: -x\n  engine: {sim: {}}\n".into(), Err("models[0].name: '-x' must start with a letter or digit")),
        ("- name: Qwen2.5-7B_v1\n  engine: {sim: {}}\n".into(), Ok(())),
        (
            "- name: a\n  engine: {sim: {}}\n- name: b\n  engine: {sim: {}}\n- name: a\n  engine: {sim: {}}\n".into(),
            Err("models[2].name: 'a' is already the name of another model"),
        ),
        // replicas
        ("- name: a\n  replicas: 0\n  engine: {sim: {}}\n".into(), Ok(())),
        ("- name: a\n  replicas: 64\n  engine: {sim: {}}\n".into(), Ok(())),
        ("- name: a\n  replicas: 65\n  engine: {sim: {}}\n".into(), Err("models[0].replicas: 65 is more than 64")),
        // sim engine
        (sim("gpu: H100-80GB, model_profile: llama-3-70b-tp8"), Ok(())),
        (sim("gpu: ''"), Err("models[0].engine.sim.gpu: must not be empty")),
        (sim("model_profile: ' '"), Err("models[0].engine.sim.model_profile: must not be empty")),
        (sim("max_num_seqs: 0"), Err("models[0].engine.sim.max_num_seqs: must be at least 1")),
        (sim("max_model_len: 0"), Err("models[0].engine.sim.max_model_len: must be at least 1")),
        (sim("num_gpu_blocks_override: 0"), Err("models[0].engine.sim.num_gpu_blocks_override: must be at least 1")),
        (sim("max_num_seqs: 8, max_model_len: 4096, num_gpu_blocks_override: 100, seed: 7"), Ok(())),
        (sim("enable_lora: true, max_loras: 4"), Ok(())),
        (sim("max_loras: 4"), Err("models[0].engine.sim.max_loras: needs enable_lora: true")),
        (sim("enable_lora: true, max_loras: 0"), Err("models[0].engine.sim.max_loras: must be at least 1")),
        (sim("output_len: 'fixed:16'"), Ok(())),
        (sim("output_len: 'uniform:8:64'"), Ok(())),
        (sim("output_len: 'exp:128'"), Ok(())),
        (sim("output_len: 'lognormal:200:0.8'"), Ok(())),
        (sim("output_len: 'uniform:64:8'"), Err("models[0].engine.sim.output_len: bad output length 'uniform:64:8'")),
        (sim("output_len: 'fixed:0'"), Err("models[0].engine.sim.output_len: bad output length")),
        (sim("output_len: 'poisson:3'"), Err("models[0].engine.sim.output_len: bad output length")),
        (sim("cold_start: {}"), Ok(())),
        (sim("cold_start: {load_gbps: 2.5, engine_init_s: 0}"), Ok(())),
        (sim("cold_start: {load_gbps: 0}"), Err("models[0].engine.sim.cold_start.load_gbps: must be a throughput")),
        (sim("cold_start: {engine_init_s: -1}"), Err("models[0].engine.sim.cold_start.engine_init_s: must be a number of seconds")),
        // command engine
        (cmd("command: 'vllm serve x --port {port} --served-model-name {model}'"), Ok(())),
        (cmd("command: ''"), Err("models[0].engine.command.command: must not be empty")),
        (cmd("command: 'vllm serve x --port 8000'"), Err("models[0].engine.command.command: must contain {port}")),
        (cmd("command: '{port}', env: {HF_HOME: /tmp/hf, CUDA_VISIBLE_DEVICES: '0'}"), Ok(())),
        (cmd("command: '{port}', env: {'A=B': x}"), Err("models[0].engine.command.env[A=B]: an environment variable name")),
        (cmd("command: '{port}', env: {'': x}"), Err("models[0].engine.command.env[]: an environment variable name")),
        (cmd("command: '{port}', ready_timeout_s: 0"), Err("models[0].engine.command.ready_timeout_s: must be at least 1")),
        (cmd("command: '{port}', ready_timeout_s: 1, stop_grace_s: 0"), Ok(())),
    ];
    for (yaml, want) in cases {
        let got = check(&yaml);
        match (&got, want) {
            (Ok(()), Ok(())) => {}
            (Err(got), Err(want)) if got.starts_with(want) => {}
            _ => panic!("for\n{yaml}\nwant {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn render_substitutes_port_and_model() {
    let cmd = CommandEngine {
        command: "vllm serve /w --port {port} --served-model-name {model} # {port}".into(),
        env: Default::default(),
        ready_timeout_s: 600,
        stop_grace_s: 30,
        gpus: None,
        runtime: None,
    };
    assert_eq!(
        cmd.render(8123, "llama-3-8b"),
        "vllm serve /w --port 8123 --served-model-name llama-3-8b # 8123"
    );
}

#[test]
fn startup_is_the_override_else_the_cold_start_model_else_zero() {
    let catalog = brix_sim::Catalog::builtin();
    let m = catalog
        .model("llama-3-8b")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut sim = SimEngine::default();
    assert_eq!(sim.startup_s(m), 0.0);
    sim.cold_start = Some(ColdStart::default());
    // 8.03e9 params × 2 bytes at the measured default, plus the default engine init.
    let want = 16.06e9 / (brix_sim::DEFAULT_LOAD_GBPS * 1e9) + brix_sim::DEFAULT_ENGINE_INIT_S;
    assert!(
        (sim.startup_s(m) - want).abs() < 1e-6,
        "{}",
        sim.startup_s(m)
    );
    sim.cold_start = Some(ColdStart {
        load_gbps: Some(4.0),
        engine_init_s: Some(5.0),
    });
    assert!((sim.startup_s(m) - (16.06 / 4.0 + 5.0)).abs() < 1e-6);
    // Twice the bandwidth loads faster; a bigger model loads slower.
    let big = catalog
        .model("llama-3-70b-tp8")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(sim.startup_s(big) > sim.startup_s(m) || big.tensor_parallel_size > 1);
    sim.startup_delay_s = Some(1.5);
    assert_eq!(sim.startup_s(m), 1.5, "startup_delay_s overrides the model");
}
