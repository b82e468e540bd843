//! Azure LLM inference traces (CSV `TIMESTAMP,ContextTokens,GeneratedTokens`, timestamps like
//! `2023-11-16 18:15:46.6805900`) turned into requests. Pure: the caller reads the file.
//!
//! The trace has no text and no prefix structure, so each row's prompt is `ContextTokens`
//! words drawn from a stream seeded by (seed, row): arrival pattern and lengths are real,
//! prefix sharing is nil. Times are seconds after the earliest row (the first, in the
//! published files), computed in integer nanoseconds so a day's offset loses no precision.
//! Columns are found by header name, in any order; fields are plain (no quoting).

use super::error::{FileError, LineError, numbered_lines};
use super::seed::{Stream, push_words, rng};
use super::{WorkRequest, Workload, sort_by_arrival};

const TIMESTAMP: &str = "TIMESTAMP";
const CONTEXT: &str = "ContextTokens";
const GENERATED: &str = "GeneratedTokens";

/// Whether a header line is an Azure LLM trace's, for content detection.
pub(super) fn is_header(line: &str) -> bool {
    let columns: Vec<&str> = line.split(',').map(str::trim).collect();
    [TIMESTAMP, CONTEXT, GENERATED]
        .iter()
        .all(|c| columns.contains(c))
}

/// The requests of an Azure trace, in time order.
pub(super) fn parse(text: &str, seed: u64) -> Result<Workload, FileError> {
    let mut lines = numbered_lines(text);
    let (header_line, header) = lines.next().ok_or(FileError::Empty)?;
    let header_at = |kind| FileError::at(header_line, kind);
    let columns: Vec<&str> = header
        .trim_start_matches('\u{feff}')
        .split(',')
        .map(str::trim)
        .collect();
    let find = |column: &'static str| {
        columns
            .iter()
            .position(|c| *c == column)
            .ok_or_else(|| header_at(LineError::MissingColumn { column }))
    };
    let (time_col, context_col, generated_col) =
        (find(TIMESTAMP)?, find(CONTEXT)?, find(GENERATED)?);

    let mut rows: Vec<(i128, u32, u32)> = Vec::new();
    for (number, line) in lines {
        let at = |kind| FileError::at(number, kind);
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != columns.len() {
            return Err(at(LineError::Columns {
                expected: columns.len(),
                found: fields.len(),
            }));
        }
        let time = parse_timestamp(fields[time_col]).ok_or_else(|| {
            at(invalid(
                TIMESTAMP,
                fields[time_col],
                "a time like 2023-11-16 18:15:46.6805900",
            ))
        })?;
        let tokens = |col: usize, name: &'static str| {
            fields[col]
                .parse::<u32>()
                .map_err(|_| at(invalid(name, fields[col], "a token count")))
        };
        rows.push((
            time,
            tokens(context_col, CONTEXT)?,
            tokens(generated_col, GENERATED)?,
        ));
    }
    let Some(start) = rows.iter().map(|row| row.0).min() else {
        return Err(FileError::Empty);
    };
    let mut requests: Vec<WorkRequest> = rows
        .into_iter()
        .enumerate()
        .map(|(row, (time, context, generated))| {
            let mut prompt = Vec::new();
            push_words(
                &mut rng(seed, Stream::AzurePrompt, &[row as u64]),
                context as usize,
                &mut prompt,
            );
            WorkRequest {
                id: row as u64,
                at_s: (time - start) as f64 / 1e9,
                session: None,
                prompt,
                output_tokens: generated,
            }
        })
        .collect();
    sort_by_arrival(&mut requests);
    Ok(Workload { requests })
}

fn invalid(field: &'static str, value: &str, expected: &'static str) -> LineError {
    LineError::Invalid {
        field,
        value: format!("`{value}`"),
        expected,
    }
}

/// Nanoseconds since 1970 (UTC) of `YYYY-MM-DD HH:MM:SS[.fraction]`, with an optional `T`
/// separator and an optional `Z` or `±HH:MM` suffix; `None` for anything else.
pub(super) fn parse_timestamp(text: &str) -> Option<i128> {
    let text = text.trim();
    let (date, rest) = (text.get(..10)?, text.get(10..)?);
    let rest = rest.strip_prefix([' ', 'T'])?;
    let (time, offset_s) = split_offset(rest)?;
    let year: i64 = digits(date.get(0..4)?)?;
    let month: i64 = digits(date.get(5..7)?)?;
    let day: i64 = digits(date.get(8..10)?)?;
    if date.as_bytes()[4] != b'-' || date.as_bytes()[7] != b'-' {
        return None;
    }
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    if hms.len() != 8 || hms.as_bytes()[2] != b':' || hms.as_bytes()[5] != b':' {
        return None;
    }
    let (hour, minute, second): (i64, i64, i64) = (
        digits(hms.get(0..2)?)?,
        digits(hms.get(3..5)?)?,
        digits(hms.get(6..8)?)?,
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let nanos: i128 = if fraction.is_empty() {
        0
    } else {
        if fraction.len() > 9 {
            return None;
        }
        let value: i128 = digits(fraction)?;
        value * 10i128.pow(9 - fraction.len() as u32)
    };
    let seconds =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    Some(i128::from(seconds) * 1_000_000_000 + nanos)
}

/// Splits a trailing `Z` or `±HH:MM` off a time of day; the offset in seconds.
fn split_offset(time: &str) -> Option<(&str, i64)> {
    if let Some(time) = time.strip_suffix('Z') {
        return Some((time, 0));
    }
    match time.get(8..).and_then(|tail| tail.find(['+', '-'])) {
        None => Some((time, 0)),
        Some(at) => {
            let (time, offset) = time.split_at(8 + at);
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let (h, m) = offset.get(1..)?.split_once(':')?;
            let (h, m): (i64, i64) = (digits(h)?, digits(m)?);
            Some((time, sign * (h * 3600 + m * 60)))
        }
    }
}

/// A run of ASCII digits as a number (no sign, no spaces).
fn digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}
