//! Brix's own workload file, so a generated (or scheduled) workload is saved and replayed
//! exactly: JSON lines, a header, then one request per line.
//!
//! ```text
//! {"format":"brix-workload","version":1,"requests":2}
//! {"id":0,"at_s":0.0,"output_tokens":128,"prompt":[17,4,980]}
//! {"id":1,"at_s":0.5,"session":3,"turn":1,"think_s":1.25,"output_tokens":64,"prompt":[17,4]}
//! ```
//!
//! `session`, `turn` and `think_s` appear together, only for session turns. Times are written
//! as the shortest decimal that reads back as the same `f64` (and read with `serde_json`'s
//! `float_roundtrip`), so save → load gives an equal [`Workload`]. Unknown fields are errors:
//! a newer file is refused by its `version` rather than half read.

use std::io::Write;

use serde::{Deserialize, Serialize};

use super::error::{
    FieldCheck, FileError, JsonError, LineError, is_u32, json_error, numbered_lines,
};
use super::{Turn, WorkRequest, Workload};

/// The `format` value in the header line.
pub const FORMAT_NAME: &str = "brix-workload";
/// The `version` this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requests: Option<u64>,
}

#[derive(Serialize)]
struct LineOut<'a> {
    id: u64,
    at_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    turn: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    think_s: Option<f64>,
    output_tokens: u32,
    prompt: &'a [u32],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn {
    id: u64,
    at_s: f64,
    session: Option<u64>,
    turn: Option<u32>,
    think_s: Option<f64>,
    output_tokens: u32,
    prompt: Vec<u32>,
}

/// A request line's fields, for naming the one with a wrong kind of value.
const FIELDS: &[FieldCheck] = &[
    ("id", serde_json::Value::is_u64, "a whole number"),
    ("at_s", serde_json::Value::is_number, "seconds"),
    ("session", serde_json::Value::is_u64, "a whole number"),
    ("turn", is_u32, "a whole number"),
    ("think_s", serde_json::Value::is_number, "seconds"),
    ("output_tokens", is_u32, "a token count"),
    ("prompt", is_words, "an array of word ids"),
];

fn is_words(value: &serde_json::Value) -> bool {
    value.as_array().is_some_and(|ids| ids.iter().all(is_u32))
}

/// Writes the workload in the brix-workload format (the caller picks the sink, so this is
/// testable without files).
pub fn write_jsonl(workload: &Workload, mut out: impl Write) -> std::io::Result<()> {
    let header = Header {
        format: FORMAT_NAME.to_owned(),
        version: FORMAT_VERSION,
        requests: Some(workload.requests.len() as u64),
    };
    serde_json::to_writer(&mut out, &header)?;
    out.write_all(b"\n")?;
    for request in &workload.requests {
        let line = LineOut {
            id: request.id,
            at_s: request.at_s,
            session: request.session.map(|t| t.session),
            turn: request.session.map(|t| t.turn),
            think_s: request.session.map(|t| t.think_s),
            output_tokens: request.output_tokens,
            prompt: &request.prompt,
        };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Whether a first line is a brix-workload header, for content detection.
pub(super) fn is_header(line: &str) -> bool {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line)
        .is_ok_and(|map| map.get("format").and_then(|f| f.as_str()) == Some(FORMAT_NAME))
}

/// Reads a brix-workload file back, checking the header and every line.
pub(super) fn parse(text: &str) -> Result<Workload, FileError> {
    let mut lines = numbered_lines(text);
    let (header_line, header) = lines.next().ok_or(FileError::Empty)?;
    let header_at = |kind| FileError::at(header_line, kind);
    let header: Header = serde_json::from_str(header).map_err(|error| header_at(json(error)))?;
    if header.format != FORMAT_NAME {
        return Err(header_at(LineError::Invalid {
            field: "format",
            value: format!("{:?}", header.format),
            expected: "\"brix-workload\"",
        }));
    }
    if header.version != FORMAT_VERSION {
        return Err(header_at(LineError::Invalid {
            field: "version",
            value: header.version.to_string(),
            expected: "1",
        }));
    }
    let mut requests = Vec::new();
    for (number, line) in lines {
        let at = |kind| FileError::at(number, kind);
        let record: LineIn = serde_json::from_str(line)
            .map_err(|error| at(json_error(FORMAT_NAME, line, error, FIELDS)))?;
        requests.push(request(record).map_err(at)?);
    }
    if let Some(promised) = header.requests.filter(|n| *n != requests.len() as u64) {
        return Err(header_at(LineError::Count {
            promised,
            found: requests.len() as u64,
        }));
    }
    Ok(Workload { requests })
}

fn json(error: serde_json::Error) -> LineError {
    LineError::Json {
        format: FORMAT_NAME,
        error: JsonError(error),
    }
}

fn seconds(field: &'static str, value: f64) -> Result<f64, LineError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(LineError::Invalid {
            field,
            value: value.to_string(),
            expected: "seconds ≥ 0",
        })
    }
}

/// One line's request, with its session fields all present or all absent.
fn request(record: LineIn) -> Result<WorkRequest, LineError> {
    let session = match (record.session, record.turn, record.think_s) {
        (None, None, None) => None,
        (Some(session), Some(turn), think_s) => {
            let think_s = seconds("think_s", think_s.unwrap_or(0.0))?;
            Some(Turn {
                session,
                turn,
                think_s,
            })
        }
        (None, _, _) => {
            return Err(LineError::Missing {
                field: "session",
                with: "turn and think_s",
            });
        }
        (Some(_), None, _) => {
            return Err(LineError::Missing {
                field: "turn",
                with: "session",
            });
        }
    };
    Ok(WorkRequest {
        id: record.id,
        at_s: seconds("at_s", record.at_s)?,
        session,
        prompt: record.prompt,
        output_tokens: record.output_tokens,
    })
}
