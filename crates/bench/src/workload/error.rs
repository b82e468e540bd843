//! Why a workload could not be built: a file that cannot be read or written, a file whose
//! content is not a workload (with the line), or a generator spec with a bad field.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// Why [`super::load`] or [`super::save`] failed, named for the step that failed.
#[derive(Debug, Error)]
pub enum WorkloadError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("reading workload {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// The file could not be written.
    #[error("writing workload {}: {error}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// The file was read but is not a workload in any known format.
    #[error("{}: {error}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Where and why.
        error: FileError,
    },
    /// The generator spec does not parse.
    #[error("workload spec `{spec}`: {error}")]
    Spec {
        /// The spec as given.
        spec: String,
        /// Which field is wrong, and how.
        error: SpecError,
    },
}

/// What is wrong with a file's content, and on which line, so a bad trace row is found at once.
#[derive(Debug, Error)]
pub enum FileError {
    /// The first line matches none of the formats [`super::detect`] knows.
    #[error(
        "unrecognised content on line {line}: expected a brix-workload or Mooncake JSONL file, \
         an Azure LLM CSV with a TIMESTAMP,ContextTokens,GeneratedTokens header, or a ShareGPT \
         JSON array"
    )]
    UnknownFormat {
        /// The first non-blank line (1-based).
        line: usize,
    },
    /// The file has no records at all.
    #[error("no requests in the file")]
    Empty,
    /// One line (1-based) is malformed; nothing is ever skipped silently.
    #[error("line {line}: {kind}")]
    Line {
        /// 1-based line number in the file.
        line: usize,
        /// What is wrong with it.
        kind: LineError,
    },
}

impl FileError {
    /// Line `line` (1-based) is wrong in this way.
    pub(super) fn at(line: usize, kind: LineError) -> Self {
        Self::Line { line, kind }
    }
}

/// The non-blank lines of a line-based file, each with its 1-based number, as errors cite them.
pub(super) fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .filter(|(_, line)| !line.trim().is_empty())
}

/// What is wrong with one line of a workload or trace file.
#[derive(Debug, Error)]
pub enum LineError {
    /// Not valid JSON, or not the record shape the format needs.
    #[error("not a {format} record: {error}")]
    Json {
        /// The format the file was detected as.
        format: &'static str,
        /// The parser's complaint, with the column.
        error: JsonError,
    },
    /// A field has a value out of its range.
    #[error("`{field}` is {value}, expected {expected}")]
    Invalid {
        /// The field or column.
        field: &'static str,
        /// The value as read.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A field that must be present with another one is missing.
    #[error("`{field}` is missing (it must come with `{with}`)")]
    Missing {
        /// The missing field.
        field: &'static str,
        /// The field that needs it.
        with: &'static str,
    },
    /// A Mooncake record's `input_length` does not fit its `hash_ids` blocks.
    #[error(
        "input_length {input_length} does not fit {blocks} hash_ids of 512 tokens \
         (the last block must hold 1 to 512 tokens)"
    )]
    Blocks {
        /// The record's `input_length`.
        input_length: u64,
        /// How many `hash_ids` it lists.
        blocks: usize,
    },
    /// A CSV header lacks a column the format needs.
    #[error("the header has no `{column}` column")]
    MissingColumn {
        /// The column's name.
        column: &'static str,
    },
    /// A CSV row has the wrong number of fields.
    #[error("expected {expected} comma-separated fields, found {found}")]
    Columns {
        /// Fields in the header.
        expected: usize,
        /// Fields in this row.
        found: usize,
    },
    /// A brix-workload header promises a different number of requests (a truncated file).
    #[error("the header promises {promised} requests but the file has {found}")]
    Count {
        /// From the header.
        promised: u64,
        /// Request lines read.
        found: u64,
    },
}

/// A `serde_json` error shown without its "at line 1 column N" tail, since each record is
/// parsed on its own and the file's line number is reported beside it.
#[derive(Debug)]
pub struct JsonError(pub serde_json::Error);

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = self.0.to_string();
        let tail = format!(" at line {} column {}", self.0.line(), self.0.column());
        let message = full.strip_suffix(&tail).unwrap_or(&full);
        write!(f, "{message} (column {})", self.0.column())
    }
}

impl std::error::Error for JsonError {}

/// What is wrong with a generator spec (`shared-prefix:groups=8,...`), naming the field.
#[derive(Debug, Error, PartialEq)]
pub enum SpecError {
    /// The text before `:` names no generator, and no file has that name.
    #[error(
        "unknown generator `{name}` (known: shared-prefix, multi-turn, sharegpt), \
         and no file of that name"
    )]
    UnknownGenerator {
        /// The name given.
        name: String,
    },
    /// A comma-separated item is not `field=value`.
    #[error("`{item}` is not field=value")]
    NotKeyValue {
        /// The item as given.
        item: String,
    },
    /// The generator has no such field.
    #[error("unknown field `{field}` for {generator} (fields: {known})")]
    UnknownField {
        /// The generator.
        generator: &'static str,
        /// The field given.
        field: String,
        /// The fields it takes.
        known: &'static str,
    },
    /// A field appears twice.
    #[error("field `{field}` is given twice")]
    Duplicate {
        /// The field.
        field: String,
    },
    /// A field's value does not parse or is out of range.
    #[error("field `{field}`: expected {expected}, got `{value}`")]
    BadValue {
        /// The field.
        field: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A required field is absent.
    #[error("field `{field}` is required")]
    Missing {
        /// The field.
        field: &'static str,
    },
}

/// A field a JSON record needs: its name, a test of its value, and what the test wants.
pub(super) type FieldCheck = (&'static str, fn(&serde_json::Value) -> bool, &'static str);

/// The record's error, naming the field when one has a value of the wrong kind (the typed
/// parse only says "expected u32"); the parser's own message otherwise. Runs only on failure.
pub(super) fn json_error(
    format: &'static str,
    line: &str,
    error: serde_json::Error,
    fields: &[FieldCheck],
) -> LineError {
    let object = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line).ok();
    let misfit = object.as_ref().and_then(|object| {
        fields.iter().find_map(|&(field, fits, expected)| {
            let value = object.get(field)?;
            (!fits(value)).then(|| LineError::Invalid {
                field,
                value: value.to_string(),
                expected,
            })
        })
    });
    misfit.unwrap_or(LineError::Json {
        format,
        error: JsonError(error),
    })
}

/// Whether a JSON value is a whole number that fits a `u32`.
pub(super) fn is_u32(value: &serde_json::Value) -> bool {
    value.as_u64().is_some_and(|n| u32::try_from(n).is_ok())
}
