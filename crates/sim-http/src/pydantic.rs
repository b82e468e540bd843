//! Body errors as vLLM's FastAPI app reports pydantic's: type `Bad Request`, `param` the
//! field's location, and a message that dumps the error entry the way Python prints a dict
//! (`1 validation error:\n  {'type': ..., 'loc': 'body.x', 'msg': ..., 'input': ...}`).
//!
//! Covered: malformed JSON, a missing required field, and a value of the wrong type for the
//! numeric and list fields vLLM declares. Other shape errors keep serde's text (documented).

use serde_json::Value;

/// One pydantic validation error, rendered as vLLM's `validation_exception_handler` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pydantic {
    kind: &'static str,
    loc: String,
    msg: &'static str,
    /// The input as vLLM summarizes it (`str()` of a scalar, `<dict of N items>`).
    input: String,
    ctx: Option<&'static str>,
}

impl Pydantic {
    /// The `param` vLLM reports: the dotted location.
    pub(crate) fn loc(&self) -> &str {
        &self.loc
    }

    /// A required body field that is absent.
    pub(crate) fn missing(field: &str, body_keys: usize) -> Self {
        Self {
            kind: "missing",
            loc: format!("body.{field}"),
            msg: "Field required",
            input: format!("<dict of {body_keys} items>"),
            ctx: None,
        }
    }

    /// A body that is not JSON; `err` is serde's reading of it.
    pub(crate) fn json(err: &serde_json::Error) -> Self {
        let text = err.to_string();
        // Python's json module names the same faults differently.
        let ctx = if text.starts_with("key must be a string") {
            "Expecting property name enclosed in double quotes"
        } else if text.starts_with("trailing characters") {
            "Extra data"
        } else if text.starts_with("expected `,` or `}`") || text.starts_with("expected `,` or `]`")
        {
            "Expecting ',' delimiter"
        } else if text.starts_with("expected `:`") {
            "Expecting ':' delimiter"
        } else {
            "Expecting value"
        };
        Self {
            kind: "json_invalid",
            loc: format!("body.{}", err.column().saturating_sub(1)),
            msg: "JSON decode error",
            input: "<dict of 0 items>".into(),
            ctx: Some(ctx),
        }
    }

    /// Checks the declared types of `fields` in a parsed body, in order: `floats` must be
    /// numbers, `ints` integers, `lists` arrays.
    pub(crate) fn check_types(
        body: &Value,
        floats: &[&str],
        ints: &[&str],
        lists: &[&str],
    ) -> Result<(), Self> {
        let wrong = |field: &str, kind, msg, v: &Value| Self {
            kind,
            loc: format!("body.{field}"),
            msg,
            input: summarize(v),
            ctx: None,
        };
        for &f in floats {
            match body.get(f) {
                None | Some(Value::Null | Value::Number(_)) => {}
                Some(v @ Value::String(s)) if s.trim().parse::<f64>().is_err() => {
                    return Err(wrong(
                        f,
                        "float_parsing",
                        "Input should be a valid number, unable to parse string as a number",
                        v,
                    ));
                }
                Some(Value::String(_)) => {}
                Some(v) => return Err(wrong(f, "float_type", "Input should be a valid number", v)),
            }
        }
        for &f in ints {
            match body.get(f) {
                None | Some(Value::Null) => {}
                Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {}
                Some(v @ Value::Number(n)) if n.as_f64().is_some_and(|x| x.fract() != 0.0) => {
                    return Err(wrong(
                        f,
                        "int_from_float",
                        "Input should be a valid integer, got a number with a fractional part",
                        v,
                    ));
                }
                Some(Value::Number(_)) => {}
                Some(v @ Value::String(s)) if s.trim().parse::<i64>().is_err() => {
                    return Err(wrong(
                        f,
                        "int_parsing",
                        "Input should be a valid integer, unable to parse string as an integer",
                        v,
                    ));
                }
                Some(Value::String(_)) => {}
                Some(v) => return Err(wrong(f, "int_type", "Input should be a valid integer", v)),
            }
        }
        for &f in lists {
            match body.get(f) {
                None | Some(Value::Array(_)) => {}
                Some(v) => return Err(wrong(f, "list_type", "Input should be a valid list", v)),
            }
        }
        Ok(())
    }
}

/// vLLM's `_summarize_error_input`: strings as they are (cut at 200 characters), containers
/// described by size, other values as Python's `str()` prints them.
fn summarize(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().count() > 200 => {
            format!("{}...[truncated]", s.chars().take(200).collect::<String>())
        }
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("<list of {} items>", a.len()),
        Value::Object(o) => format!("<dict of {} items>", o.len()),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        Value::Number(n) => n.to_string(),
    }
}

impl std::fmt::Display for Pydantic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "1 validation error:\n  {{'type': {}, 'loc': {}, 'msg': {}, 'input': {}",
            py_repr(self.kind),
            py_repr(&self.loc),
            py_repr(self.msg),
            py_repr(&self.input),
        )?;
        if let Some(ctx) = self.ctx {
            write!(f, ", 'ctx': {{'error': {}}}", py_repr(ctx))?;
        }
        f.write_str("}")
    }
}

/// Python's `repr()` of a string: single quotes unless it holds one and no double quote.
fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_print_as_vllm_prints_them() {
        // Texts taken from vLLM 0.32's FastAPI app (its handler over its request models).
        assert_eq!(
            Pydantic::missing("messages", 1).to_string(),
            "1 validation error:\n  {'type': 'missing', 'loc': 'body.messages', 'msg': 'Field required', 'input': '<dict of 1 items>'}"
        );
        let body = json!({"temperature": "hot", "max_tokens": "x", "messages": "hi"});
        let e = Pydantic::check_types(&body, &["temperature"], &[], &[]).err();
        assert_eq!(
            e.map(|e| e.to_string()),
            Some("1 validation error:\n  {'type': 'float_parsing', 'loc': 'body.temperature', 'msg': 'Input should be a valid number, unable to parse string as a number', 'input': 'hot'}".into())
        );
        let e = Pydantic::check_types(&body, &[], &["max_tokens"], &[]).err();
        assert_eq!(e.as_ref().map(Pydantic::loc), Some("body.max_tokens"));
        let e = Pydantic::check_types(&body, &[], &[], &["messages"]).err();
        assert!(e.is_some_and(|e| e.to_string().contains("'type': 'list_type'")));
        let bad = serde_json::from_str::<Value>("{not json").err();
        assert_eq!(
            bad.map(|e| Pydantic::json(&e).to_string()),
            Some("1 validation error:\n  {'type': 'json_invalid', 'loc': 'body.1', 'msg': 'JSON decode error', 'input': '<dict of 0 items>', 'ctx': {'error': 'Expecting property name enclosed in double quotes'}}".into())
        );
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert!(
            Pydantic::check_types(&json!({"n": 2, "top_p": 1}), &["top_p"], &["n"], &[]).is_ok()
        );
    }
}
