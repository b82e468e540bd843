//! Generator specs as written after `--workload`: `NAME` or `NAME:field=value,...`.
//!
//! | generator | fields (default) |
//! |---|---|
//! | `shared-prefix` | `groups` (8), `prefix` (1024), `suffix` (64), `output` (128), `requests` (400) |
//! | `multi-turn` | `sessions` (40), `turns` (5), `system` (512), `systems` (1), `context` (0), `user` (64), `output` (64), `think` (1.0 s) |
//! | `synthetic` | `requests` (1000), `prompt` (1024), `prompt_std` (696), `output` (43), `output_std` (34), `max_len` (0: no cap) |
//! | `sharegpt` | `sharegpt:PATH`, or `path` (required), `conversations` (all), `turns` (`first`/`all`), `think` (1.0 s) |
//!
//! Lengths are in words, which are tokens (see [`super::vocab`]). A field may appear once;
//! an unknown field, a repeated one or a bad value is an error that names the field.

use std::path::PathBuf;
use std::str::FromStr;

use super::error::SpecError;
use super::generate::{MultiTurn, SharedPrefix, Synthetic};
use super::sharegpt::ShareGpt;

/// A parsed generator spec.
#[derive(Clone, Debug, PartialEq)]
pub enum GeneratorSpec {
    /// `shared-prefix:...`
    SharedPrefix(SharedPrefix),
    /// `multi-turn:...`
    MultiTurn(MultiTurn),
    /// `sharegpt:...` (reads a file when built).
    ShareGpt(ShareGpt),
    /// `synthetic:...`
    Synthetic(Synthetic),
}

/// The generator names, so a caller can tell a spec from a file path before parsing.
pub const GENERATORS: &[&str] = &["shared-prefix", "multi-turn", "sharegpt", "synthetic"];

impl GeneratorSpec {
    /// Whether `spec` names a generator (`NAME` or `NAME:...` with a known name), as opposed
    /// to a file path.
    pub fn names_generator(spec: &str) -> bool {
        let name = spec.split_once(':').map_or(spec, |(name, _)| name);
        GENERATORS.contains(&name)
    }
}

impl FromStr for GeneratorSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, SpecError> {
        let (name, body) = spec.split_once(':').unwrap_or((spec, ""));
        match name {
            "shared-prefix" => shared_prefix(body).map(Self::SharedPrefix),
            "multi-turn" => multi_turn(body).map(Self::MultiTurn),
            "sharegpt" => sharegpt(body).map(Self::ShareGpt),
            "synthetic" => synthetic(body).map(Self::Synthetic),
            _ => Err(SpecError::UnknownGenerator {
                name: name.to_owned(),
            }),
        }
    }
}

/// Splits `a=1,b=2` into pairs, refusing items without `=` and repeated fields.
fn pairs(body: &str) -> Result<Vec<(&str, &str)>, SpecError> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for item in body
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let Some((field, value)) = item.split_once('=') else {
            return Err(SpecError::NotKeyValue {
                item: item.to_owned(),
            });
        };
        let (field, value) = (field.trim(), value.trim());
        if out.iter().any(|(seen, _)| *seen == field) {
            return Err(SpecError::Duplicate {
                field: field.to_owned(),
            });
        }
        out.push((field, value));
    }
    Ok(out)
}

fn bad(field: &'static str, value: &str, expected: &'static str) -> SpecError {
    SpecError::BadValue {
        field,
        value: value.to_owned(),
        expected,
    }
}

/// A whole number ≥ `min`.
fn number(field: &'static str, value: &str, min: u32) -> Result<u32, SpecError> {
    let expected = if min == 0 {
        "a whole number"
    } else {
        "a whole number ≥ 1"
    };
    value
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= min)
        .ok_or_else(|| bad(field, value, expected))
}

/// A finite number of seconds ≥ 0.
fn seconds(field: &'static str, value: &str) -> Result<f64, SpecError> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| bad(field, value, "seconds ≥ 0"))
}

fn unknown(generator: &'static str, field: &str, known: &'static str) -> SpecError {
    SpecError::UnknownField {
        generator,
        field: field.to_owned(),
        known,
    }
}

fn shared_prefix(body: &str) -> Result<SharedPrefix, SpecError> {
    let mut spec = SharedPrefix::default();
    for (field, value) in pairs(body)? {
        match field {
            "groups" => spec.groups = number("groups", value, 1)?,
            "prefix" => spec.prefix = number("prefix", value, 0)?,
            "suffix" => spec.suffix = number("suffix", value, 0)?,
            "output" => spec.output = number("output", value, 1)?,
            "requests" => spec.requests = number("requests", value, 1)?,
            _ => {
                return Err(unknown(
                    "shared-prefix",
                    field,
                    "groups, prefix, suffix, output, requests",
                ));
            }
        }
    }
    if spec.prefix == 0 && spec.suffix == 0 {
        return Err(bad(
            "suffix",
            "0",
            "prefix + suffix ≥ 1 (a prompt needs a word)",
        ));
    }
    Ok(spec)
}

fn multi_turn(body: &str) -> Result<MultiTurn, SpecError> {
    let mut spec = MultiTurn::default();
    for (field, value) in pairs(body)? {
        match field {
            "sessions" => spec.sessions = number("sessions", value, 1)?,
            "turns" => spec.turns = number("turns", value, 1)?,
            "system" => spec.system = number("system", value, 0)?,
            "systems" => spec.systems = number("systems", value, 1)?,
            "context" => spec.context = number("context", value, 0)?,
            "user" => spec.user = number("user", value, 1)?,
            "output" => spec.output = number("output", value, 1)?,
            "think" => spec.think = seconds("think", value)?,
            _ => {
                return Err(unknown(
                    "multi-turn",
                    field,
                    "sessions, turns, system, systems, context, user, output, think",
                ));
            }
        }
    }
    Ok(spec)
}

fn synthetic(body: &str) -> Result<Synthetic, SpecError> {
    let mut spec = Synthetic::default();
    for (field, value) in pairs(body)? {
        match field {
            "requests" => spec.requests = number("requests", value, 1)?,
            "prompt" => spec.prompt = number("prompt", value, 1)?,
            "prompt_std" => spec.prompt_std = number("prompt_std", value, 0)?,
            "output" => spec.output = number("output", value, 1)?,
            "output_std" => spec.output_std = number("output_std", value, 0)?,
            "max_len" => spec.max_len = number("max_len", value, 0)?,
            _ => {
                return Err(unknown(
                    "synthetic",
                    field,
                    "requests, prompt, prompt_std, output, output_std, max_len",
                ));
            }
        }
    }
    Ok(spec)
}

fn sharegpt(body: &str) -> Result<ShareGpt, SpecError> {
    let mut spec = ShareGpt {
        path: PathBuf::new(),
        conversations: None,
        all_turns: false,
        think: 1.0,
    };
    if !body.starts_with("path=") {
        if body.is_empty() {
            return Err(SpecError::Missing { field: "path" });
        }
        spec.path = PathBuf::from(body);
        return Ok(spec);
    }
    for (field, value) in pairs(body)? {
        match field {
            "path" if !value.is_empty() => spec.path = PathBuf::from(value),
            "path" => return Err(bad("path", value, "a file path")),
            "conversations" => spec.conversations = Some(number("conversations", value, 1)?),
            "turns" => {
                spec.all_turns = match value {
                    "first" => false,
                    "all" => true,
                    _ => return Err(bad("turns", value, "`first` or `all`")),
                }
            }
            "think" => spec.think = seconds("think", value)?,
            _ => {
                return Err(unknown(
                    "sharegpt",
                    field,
                    "path, conversations, turns, think",
                ));
            }
        }
    }
    Ok(spec)
}
