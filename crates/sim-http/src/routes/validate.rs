//! vLLM 0.32's request checks, in its order and with its texts: the body's model validators,
//! then serving (model, tools, lengths), then `SamplingParams`. All raise vLLM's
//! `VLLMValidationError`, which is not a `ValueError`: it passes through pydantic and FastAPI
//! answers it as `BadRequestError` with the `(parameter=X, value=Y)` suffix. Each check names
//! the vLLM source it follows. Type errors in the body are pydantic's (see `pydantic`).

use serde_json::Value;

use super::protocol::{Sampling, Stop, StreamOptions};
use crate::error::Invalid;

/// vLLM's default `max_tokens` for `/v1/completions` (`CompletionRequest.max_tokens = 16`).
pub(crate) const COMPLETIONS_DEFAULT_MAX_TOKENS: i64 = 16;

/// `VLLM_MAX_N_SEQUENCES`' default.
const MAX_N: i64 = 16_384;

/// Below this temperature vLLM samples greedily (`_SAMPLING_EPS`).
const SAMPLING_EPS: f64 = 1e-5;

/// Python's `str()` of a float: always a decimal point or exponent (`-1.0`, `2.5`, `inf`).
pub(crate) fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let s = format!("{x}");
    if s.contains('.') || s.contains('e') {
        s
    } else {
        format!("{s}.0")
    }
}

/// The `response_format` check every generation API shares (`validate_response_format`).
pub(crate) fn response_format(rf: Option<&Value>) -> Result<bool, Invalid> {
    let Some(rf) = rf.filter(|v| !v.is_null()) else {
        return Ok(false);
    };
    let kind = rf.get("type").and_then(Value::as_str);
    if kind == Some("json_schema") && rf.get("json_schema").is_none_or(Value::is_null) {
        return Err(Invalid::serving(
            "When response_format type is 'json_schema', the 'json_schema' field must be provided.",
        )
        .param("response_format"));
    }
    Ok(matches!(kind, Some("json_object" | "json_schema")))
}

/// `validate_stream_options`: options only with `stream=True` (an empty object passes, as
/// Python's truthiness lets it).
pub(crate) fn stream_options(s: &Sampling, raw_empty: bool) -> Result<(), Invalid> {
    if s.stream_options.is_some() && !raw_empty && !s.stream.unwrap_or(false) {
        return Err(
            Invalid::serving("Stream options can only be defined when `stream=True`.")
                .param("stream_options"),
        );
    }
    Ok(())
}

/// Chat's `check_logprobs` for `top_logprobs`.
pub(crate) fn chat_logprobs(
    logprobs: Option<bool>,
    top: Option<i64>,
) -> Result<Option<i64>, Invalid> {
    if let Some(t) = top {
        if t < 0 && t != -1 {
            return Err(
                Invalid::serving("`top_logprobs` must be a positive value or -1.")
                    .param("top_logprobs")
                    .value(t),
            );
        }
        if (t == -1 || t > 0) && !logprobs.unwrap_or(false) {
            return Err(Invalid::serving(
                "when using `top_logprobs`, `logprobs` must be set to true.",
            )
            .param("top_logprobs"));
        }
    }
    Ok(match logprobs {
        Some(true) => Some(top.unwrap_or(0)),
        _ => None,
    })
}

/// Completions' `check_logprobs` for the integer `logprobs`.
pub(crate) fn completion_logprobs(lp: Option<i64>) -> Result<Option<i64>, Invalid> {
    match lp {
        Some(l) if l < 0 && l != -1 => Err(Invalid::serving(
            "`logprobs` must be a positive value or -1.",
        )
        .param("logprobs")
        .value(l)),
        other => Ok(other),
    }
}

/// `SamplingParams._validate_logprobs` with vLLM's default `max_logprobs` of 20; -1 asks for
/// the whole vocabulary.
pub(crate) fn logprobs_allowed(lp: Option<i64>, vocab: u32) -> Result<Option<u32>, Invalid> {
    const MAX_LOGPROBS: i64 = 20;
    let Some(n) = lp else { return Ok(None) };
    let n = if n == -1 { i64::from(vocab) } else { n };
    if n > MAX_LOGPROBS {
        return Err(Invalid::serving(format!(
            "Requested sample logprobs of {n}, which is greater than max allowed: {MAX_LOGPROBS}"
        ))
        .param("logprobs")
        .value(n));
    }
    Ok(Some(n.max(0) as u32))
}

/// Chat's `check_tool_usage`; returns the effective `tool_choice` (`"auto"` when tools are
/// given without one).
pub(crate) fn tool_usage(
    tools: Option<&Value>,
    choice: Option<&Value>,
) -> Result<Option<Value>, Invalid> {
    let tools = tools.filter(|t| !t.is_null());
    if tools.and_then(Value::as_array).is_some_and(Vec::is_empty) {
        return Err(Invalid::serving(
            "`tools` must not be an empty array. Either provide at least one tool or omit the field entirely.")
        .param("tools"));
    }
    let choice = match choice.filter(|c| !c.is_null()) {
        None if tools.is_some() => return Ok(Some(Value::from("auto"))),
        None => return Ok(None),
        Some(c) => c,
    };
    if choice == "none" {
        return Ok(Some(choice.clone()));
    }
    let Some(tools) = tools else {
        return Err(
            Invalid::serving("When using `tool_choice`, `tools` must be set.").param("tool_choice"),
        );
    };
    if choice == "auto" || choice == "required" {
        return Ok(Some(choice.clone()));
    }
    let Some(obj) = choice.as_object() else {
        let shown = choice
            .as_str()
            .map_or_else(|| choice.to_string(), str::to_string);
        return Err(Invalid::serving(
            format!(
                "Invalid value for `tool_choice`: {shown}! Only named tools, \"none\", \"auto\" or \"required\" are supported."
            ))
        .param("tool_choice"));
    };
    const USAGE: &str =
        "Correct usage: `{\"type\": \"function\", \"function\": {\"name\": \"my_function\"}}`";
    let name = match obj.get("function").and_then(Value::as_object) {
        None => {
            return Err(Invalid::serving(format!(
                "Invalid value for `function`: `None` in `tool_choice`! {USAGE}"
            ))
            .param("tool_choice.function"));
        }
        Some(f) => match f.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n,
            _ => {
                return Err(Invalid::serving(format!(
                    "Expected field `name` in `function` in `tool_choice`! {USAGE}"
                ))
                .param("tool_choice.function.name"));
            }
        },
    };
    let known = tools.as_array().is_some_and(|ts| {
        ts.iter()
            .any(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(name))
    });
    if !known {
        return Err(Invalid::serving(
            "The tool specified in `tool_choice` does not match any of the specified `tools`",
        )
        .param("tool_choice"));
    }
    Ok(Some(choice.clone()))
}

/// The online renderer's tool check with default flags (no `--enable-auto-tool-choice`, no
/// `--tool-call-parser`): any tool choice other than `none` is refused.
pub(crate) fn tool_choice_served(choice: Option<&Value>) -> Result<(), Invalid> {
    let Some(c) = choice else { return Ok(()) };
    if c == "none" {
        return Ok(());
    }
    if c == "auto" {
        return Err(Invalid::serving(
            "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set",
        ));
    }
    let desc = match c.pointer("/function/name").and_then(Value::as_str) {
        Some(name) => format!("function \"{name}\""),
        None => format!("\"{}\"", c.as_str().unwrap_or_default()),
    };
    Err(Invalid::serving(format!(
        "tool_choice={desc} requires --tool-call-parser to be set"
    )))
}

/// `TokenizeParams.__post_init__`: the requested output alone may not exceed the context.
pub(crate) fn max_output(
    requested: Option<i64>,
    param: &'static str,
    max_model_len: u32,
) -> Result<(), Invalid> {
    match requested {
        Some(m) if m > i64::from(max_model_len) => Err(Invalid::serving(format!(
            "{param}={m} cannot be greater than max_model_len={max_model_len}. Please request fewer output tokens."
        ))
        .param(param)
        .value(m)),
        _ => Ok(()),
    }
}

/// `TokenizeParams._token_len_check`. Text prompts are tokenized with truncation at
/// `max_model_len + 1`, so vLLM can only say "at least" that many.
pub(crate) fn prompt_len(len: usize, from_text: bool, max_model_len: u32) -> Result<(), Invalid> {
    let max = max_model_len as usize;
    if len <= max {
        return Ok(());
    }
    let (count, qualifier) = match from_text {
        true => (max + 1, "at least "),
        false if len == max + 1 => (len, "at least "),
        false => (len, ""),
    };
    Err(Invalid::serving(format!(
        "This model's maximum context length is {max_model_len} tokens. However, your prompt contains {qualifier}{count} input tokens, which exceeds this limit even without any output tokens. Please reduce the length of the input prompt."
    ))
    .param("input_tokens")
    .value(count))
}

/// `get_max_tokens`: what the request may generate, clamped to what fits.
pub(crate) fn clamp_max_tokens(requested: Option<i64>, prompt: usize, max_model_len: u32) -> i64 {
    let room = i64::from(max_model_len) - prompt as i64;
    requested.map_or(room, |r| r.min(room))
}

/// The checked sampling parameters.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Checked {
    pub(crate) n: u32,
    pub(crate) min_tokens: u32,
    pub(crate) seed: Option<u64>,
    pub(crate) stop: Vec<String>,
    pub(crate) include_stop: bool,
    pub(crate) ignore_eos: bool,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
    pub(crate) continuous_usage: bool,
}

/// `SamplingParams._verify_args` and `_verify_greedy_sampling`, for one clamped `max_tokens`.
pub(crate) fn sampling(s: &Sampling, max_tokens: i64) -> Result<Checked, Invalid> {
    let n = s.n.unwrap_or(1);
    if n < 1 {
        return Err(Invalid::serving(format!("n must be at least 1, got {n}.")));
    }
    if n > MAX_N {
        return Err(Invalid::serving(format!(
            "n must be at most {MAX_N}, got {n}. To increase this limit, set the VLLM_MAX_N_SEQUENCES environment variable."
        )));
    }
    let presence = s.presence_penalty.unwrap_or(0.0);
    if !(-2.0..=2.0).contains(&presence) {
        return Err(Invalid::serving(format!(
            "presence_penalty must be in [-2, 2], got {}.",
            py_float(presence)
        )));
    }
    let frequency = s.frequency_penalty.unwrap_or(0.0);
    if !(-2.0..=2.0).contains(&frequency) {
        return Err(Invalid::serving(format!(
            "frequency_penalty must be in [-2, 2], got {}.",
            py_float(frequency)
        )));
    }
    let repetition = s.repetition_penalty.unwrap_or(1.0);
    if !repetition.is_finite() {
        return Err(Invalid::serving(format!(
            "repetition_penalty must be a finite number, got {}.",
            py_float(repetition)
        )));
    }
    if repetition <= 0.0 {
        return Err(Invalid::serving(format!(
            "repetition_penalty must be greater than zero, got {}.",
            py_float(repetition)
        )));
    }
    let t = s.temperature.unwrap_or(1.0);
    let temp = |msg: String| {
        Invalid::serving(msg)
            .param("temperature")
            .value(py_float(t))
    };
    if !t.is_finite() {
        return Err(temp(format!(
            "temperature must be a finite number, got {}.",
            py_float(t)
        )));
    }
    if t < 0.0 {
        return Err(temp(format!(
            "temperature must be non-negative, got {}.",
            py_float(t)
        )));
    }
    if t > 2.0 {
        return Err(temp(format!(
            "temperature must be in [0, 2], got {}.",
            py_float(t)
        )));
    }
    let top_p = s.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(
            Invalid::serving(format!("top_p must be in (0, 1], got {}.", py_float(top_p)))
                .param("top_p")
                .value(py_float(top_p)),
        );
    }
    let top_k = s.top_k.unwrap_or(0);
    if top_k < -1 {
        return Err(Invalid::serving(format!(
            "top_k must be 0 (disable), or at least 1, got {top_k}."
        )));
    }
    let min_p = s.min_p.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&min_p) {
        return Err(Invalid::serving(format!(
            "min_p must be in [0, 1], got {}.",
            py_float(min_p)
        )));
    }
    if max_tokens < 1 {
        return Err(
            Invalid::serving(format!("max_tokens must be at least 1, got {max_tokens}."))
                .param("max_tokens")
                .value(max_tokens),
        );
    }
    let min_tokens = s.min_tokens.unwrap_or(0);
    if min_tokens < 0 {
        return Err(Invalid::serving(format!(
            "min_tokens must be greater than or equal to 0, got {min_tokens}."
        )));
    }
    if min_tokens > max_tokens {
        return Err(Invalid::serving(format!(
            "min_tokens must be less than or equal to max_tokens={max_tokens}, got {min_tokens}."
        )));
    }
    let stop = s.stop.as_ref().map(Stop::to_vec).unwrap_or_default();
    if stop.iter().any(String::is_empty) {
        return Err(Invalid::serving("stop cannot contain an empty string."));
    }
    if t < SAMPLING_EPS && n > 1 {
        return Err(Invalid::serving(format!(
            "n must be 1 when using greedy sampling, got {n}."
        )));
    }
    let stream = s.stream.unwrap_or(false);
    let opts: StreamOptions = s.stream_options.unwrap_or_default();
    // vLLM 0.32 (`should_include_usage`): `include_usage` defaults to false, and per-chunk
    // usage needs both flags.
    let include_usage = s.stream_options.is_some() && opts.include_usage.unwrap_or(false);
    Ok(Checked {
        n: n as u32,
        min_tokens: min_tokens as u32,
        // vLLM takes -1 as "no seed"; other values are int64 and keep their bits.
        seed: s.seed.filter(|&x| x != -1).map(|x| x as u64),
        stop,
        include_stop: s.include_stop_str_in_output.unwrap_or(false),
        ignore_eos: s.ignore_eos.unwrap_or(false),
        stream,
        include_usage,
        continuous_usage: include_usage && opts.continuous_usage_stats.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(json: &str) -> Sampling {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn sampling_checks_use_vllms_texts() {
        let msg = |json: &str, max: i64| sampling(&s(json), max).map_err(|e| e.to_string());
        let cases = [
            (
                r#"{"temperature":-1}"#,
                "temperature must be non-negative, got -1.0. (parameter=temperature, value=-1.0)",
            ),
            (
                r#"{"temperature":2.5}"#,
                "temperature must be in [0, 2], got 2.5. (parameter=temperature, value=2.5)",
            ),
            (
                r#"{"top_p":0}"#,
                "top_p must be in (0, 1], got 0.0. (parameter=top_p, value=0.0)",
            ),
            (r#"{"n":0}"#, "n must be at least 1, got 0."),
            (
                r#"{"presence_penalty":3}"#,
                "presence_penalty must be in [-2, 2], got 3.0.",
            ),
            (
                r#"{"frequency_penalty":-2.5}"#,
                "frequency_penalty must be in [-2, 2], got -2.5.",
            ),
            (
                r#"{"repetition_penalty":0}"#,
                "repetition_penalty must be greater than zero, got 0.0.",
            ),
            (
                r#"{"top_k":-2}"#,
                "top_k must be 0 (disable), or at least 1, got -2.",
            ),
            (r#"{"min_p":1.5}"#, "min_p must be in [0, 1], got 1.5."),
            (
                r#"{"min_tokens":-1}"#,
                "min_tokens must be greater than or equal to 0, got -1.",
            ),
            (
                r#"{"min_tokens":9}"#,
                "min_tokens must be less than or equal to max_tokens=5, got 9.",
            ),
            (
                r#"{"stop":["a",""]}"#,
                "stop cannot contain an empty string.",
            ),
            (
                r#"{"n":2,"temperature":0}"#,
                "n must be 1 when using greedy sampling, got 2.",
            ),
        ];
        for (json, want) in cases {
            assert_eq!(msg(json, 5), Err(want.to_string()), "{json}");
        }
        assert_eq!(
            msg("{}", 0),
            Err("max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)".into())
        );
        let ok = sampling(
            &s(r#"{"n":3,"seed":-1,"stop":"x","stream":true,"stream_options":{}}"#),
            5,
        );
        let ok = ok.unwrap_or_else(|e| panic!("{e}"));
        // `include_usage` defaults to false in vLLM 0.32, even inside `stream_options`.
        assert_eq!(
            (ok.n, ok.seed, ok.stop.len(), ok.include_usage),
            (3, None, 1, false)
        );
    }

    #[test]
    fn lengths_and_tools_use_vllms_texts() {
        assert_eq!(
            max_output(Some(600), "max_tokens", 512).map_err(|e| e.to_string()),
            Err("max_tokens=600 cannot be greater than max_model_len=512. Please request fewer output tokens. (parameter=max_tokens, value=600)".into())
        );
        let e = prompt_len(900, true, 512).map_err(|e| e.to_string());
        assert!(e.is_err_and(
            |e| e.contains("your prompt contains at least 513 input tokens")
                && e.ends_with("(parameter=input_tokens, value=513)")
        ));
        let e = prompt_len(900, false, 512).map_err(|e| e.to_string());
        assert!(e.is_err_and(|e| e.contains("contains 900 input tokens")));
        assert_eq!(clamp_max_tokens(Some(100), 500, 512), 12);
        assert_eq!(clamp_max_tokens(None, 500, 512), 12);
        let tools: Value = serde_json::json!([{"type": "function", "function": {"name": "f"}}]);
        assert_eq!(
            tool_usage(Some(&tools), None),
            Ok(Some(Value::from("auto")))
        );
        assert!(
            tool_choice_served(Some(&Value::from("auto")))
                .is_err_and(|e| e.message.starts_with("\"auto\" tool choice requires"))
        );
        assert!(tool_choice_served(Some(&Value::from("none"))).is_ok());
        let named = serde_json::json!({"type": "function", "function": {"name": "g"}});
        assert!(
            tool_usage(Some(&tools), Some(&named)).is_err_and(|e| e.param == Some("tool_choice"))
        );
        assert!(
            tool_usage(Some(&Value::Array(vec![])), None).is_err_and(|e| e.param == Some("tools"))
        );
        assert!(tool_usage(None, Some(&Value::from("auto"))).is_err());
        assert_eq!(py_float(-1.0), "-1.0");
        assert_eq!(py_float(0.25), "0.25");
    }
}
