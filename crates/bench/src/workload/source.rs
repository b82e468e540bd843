//! Where a workload comes from: a file whose format is told from its content (never its
//! extension), or a generator spec. [`load`] and [`save`] are the only functions here that
//! touch the file system; [`parse`] and [`detect`] work on text.

use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::error::{FileError, SpecError, WorkloadError};
use super::spec::GeneratorSpec;
use super::{ShareGpt, Workload, azure, format, mooncake};

/// The file formats a `--workload PATH` can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Brix's own JSONL ([`super::write_jsonl`]): replayed exactly.
    Brix,
    /// Mooncake JSONL trace: timestamps, lengths and prefix block ids.
    Mooncake,
    /// Azure LLM inference CSV trace: timestamps and lengths.
    AzureCsv,
    /// ShareGPT JSON array of conversations (first turns, as `sharegpt:PATH` does).
    ShareGpt,
}

/// The format of a file's text, from its first non-blank line; `None` if it is none of them.
pub fn detect(text: &str) -> Option<Format> {
    let first = text
        .trim_start_matches('\u{feff}')
        .lines()
        .find(|l| !l.trim().is_empty())?
        .trim();
    if first.starts_with('[') {
        Some(Format::ShareGpt)
    } else if first.starts_with('{') {
        if format::is_header(first) {
            Some(Format::Brix)
        } else if first.contains("\"hash_ids\"") {
            Some(Format::Mooncake)
        } else {
            None
        }
    } else if azure::is_header(first) {
        Some(Format::AzureCsv)
    } else {
        None
    }
}

/// The workload in a file's text, whatever its format; `seed` draws the words of traces that
/// carry none. Every malformed line is an error with its line number.
pub fn parse(text: &str, seed: u64) -> Result<Workload, FileError> {
    let text = text.trim_start_matches('\u{feff}');
    match detect(text) {
        Some(Format::Brix) => format::parse(text),
        Some(Format::Mooncake) => mooncake::parse(text, seed),
        Some(Format::AzureCsv) => azure::parse(text, seed),
        Some(Format::ShareGpt) => first_turns().build(text, seed),
        None => {
            let line = text
                .lines()
                .position(|l| !l.trim().is_empty())
                .map_or(1, |i| i + 1);
            Err(if text.trim().is_empty() {
                FileError::Empty
            } else {
                FileError::UnknownFormat { line }
            })
        }
    }
}

/// A ShareGPT file named directly: first turns of every conversation.
fn first_turns() -> ShareGpt {
    ShareGpt {
        path: PathBuf::new(),
        conversations: None,
        all_turns: false,
        think: 1.0,
    }
}

/// The workload `--workload` names: a generator spec (see [`GeneratorSpec`]) or the path of a
/// Brix, Mooncake, Azure CSV or ShareGPT file. A name that is neither a known generator nor
/// a readable file is reported as an unknown generator when it looks like `name:...`.
pub fn load(spec: &str, seed: u64) -> Result<Workload, WorkloadError> {
    if GeneratorSpec::names_generator(spec) {
        let generator: GeneratorSpec = spec.parse().map_err(|error| WorkloadError::Spec {
            spec: spec.to_owned(),
            error,
        })?;
        return match generator {
            GeneratorSpec::SharedPrefix(g) => Ok(g.generate(seed)),
            GeneratorSpec::MultiTurn(g) => Ok(g.generate(seed)),
            GeneratorSpec::Synthetic(g) => Ok(g.generate(seed)),
            GeneratorSpec::ShareGpt(g) => {
                let text = read(&g.path)?;
                g.build(&text, seed)
                    .map_err(|error| file_error(&g.path, error))
            }
        };
    }
    let path = Path::new(spec);
    match fs::read_to_string(path) {
        Ok(text) => parse(&text, seed).map_err(|error| file_error(path, error)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && looks_like_spec(spec) => {
            let name = spec
                .split_once(':')
                .map_or(spec, |(name, _)| name)
                .to_owned();
            Err(WorkloadError::Spec {
                spec: spec.to_owned(),
                error: SpecError::UnknownGenerator { name },
            })
        }
        Err(error) => Err(WorkloadError::Read {
            path: path.to_owned(),
            error,
        }),
    }
}

/// `name:...` with a bare lowercase name: meant as a generator, not a path.
fn looks_like_spec(spec: &str) -> bool {
    spec.split_once(':').is_some_and(|(name, _)| {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
    })
}

fn read(path: &Path) -> Result<String, WorkloadError> {
    fs::read_to_string(path).map_err(|error| WorkloadError::Read {
        path: path.to_owned(),
        error,
    })
}

fn file_error(path: &Path, error: FileError) -> WorkloadError {
    WorkloadError::File {
        path: path.to_owned(),
        error,
    }
}

/// Writes the workload to `path` in Brix's own format, to be replayed exactly by [`load`].
pub fn save(workload: &Workload, path: impl AsRef<Path>) -> Result<(), WorkloadError> {
    let path = path.as_ref();
    let write_error = |error| WorkloadError::Write {
        path: path.to_owned(),
        error,
    };
    let file = fs::File::create(path).map_err(write_error)?;
    format::write_jsonl(workload, BufWriter::new(file)).map_err(write_error)
}
