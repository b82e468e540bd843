//! A tolerant reader and a strict writer of the Prometheus text exposition format (0.0.4, plus
//! the OpenMetrics `# UNIT` and `# EOF` lines engines sometimes send).
//!
//! Reading never fails on content: a line that is not a comment, a `HELP`/`TYPE`/`UNIT`
//! line or a well-formed sample is skipped and counted. Only size is refused
//! ([`MAX_EXPOSITION_BYTES`]), so a runaway engine cannot make a scraper hold an unbounded text.
//! Samples are grouped into families by the `TYPE`/`HELP` line before them (a histogram's
//! `_bucket`/`_sum`/`_count`, a counter's `_total`/`_created`); a family named twice is merged
//! into its first appearance, so the writer never declares one twice.

use std::collections::HashMap;
use std::fmt::Write as _;

/// Largest exposition read (16 MiB): real vLLM and SGLang answers are tens of KiB.
pub const MAX_EXPOSITION_BYTES: usize = 16 << 20;

/// Why an exposition was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpositionError {
    /// The text is over [`MAX_EXPOSITION_BYTES`].
    #[error("exposition of {size} bytes is over the {limit} byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Series name (`x_bucket` for a histogram's buckets).
    pub name: String,
    /// Label pairs in the order given, values unescaped.
    pub labels: Vec<(String, String)>,
    /// The value (`NaN`, `+Inf`, `-Inf` included).
    pub value: f64,
    /// Milliseconds since the epoch, when the line carries one.
    pub timestamp: Option<i64>,
}

/// A metric family: its metadata and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The name in its `TYPE`/`HELP` line (for an undeclared series, the series name).
    pub name: String,
    /// The help text as written (escapes kept).
    pub help: Option<String>,
    /// `counter`, `gauge`, `histogram`, `summary`, `untyped`, ...; `None` when undeclared.
    pub kind: Option<String>,
    /// The OpenMetrics unit, when given.
    pub unit: Option<String>,
    /// Its samples, in order.
    pub samples: Vec<Sample>,
}

/// A parsed exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// Families in the order they first appear.
    pub families: Vec<Family>,
    /// Lines skipped as malformed (to log or count, never to fail on).
    pub skipped: usize,
}

/// Series-name suffixes a family of each type may add to its name.
fn suffixes(kind: Option<&str>) -> &'static [&'static str] {
    match kind {
        Some("counter") => &["_total", "_created"],
        Some("histogram") => &["_bucket", "_sum", "_count", "_created"],
        Some("gaugehistogram") => &["_bucket", "_gsum", "_gcount"],
        Some("summary") => &["_sum", "_count", "_created"],
        Some("info") => &["_info"],
        _ => &[],
    }
}

/// Whether series `name` belongs to a family `family` of type `kind`.
pub fn belongs(name: &str, family: &str, kind: Option<&str>) -> bool {
    name == family
        || name
            .strip_prefix(family)
            .is_some_and(|rest| suffixes(kind).contains(&rest))
}

/// Whether `name` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn valid_label(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `text`; refuses only a text over [`MAX_EXPOSITION_BYTES`].
pub fn parse(text: &str) -> Result<Exposition, ExpositionError> {
    if text.len() > MAX_EXPOSITION_BYTES {
        return Err(ExpositionError::TooLarge {
            size: text.len(),
            limit: MAX_EXPOSITION_BYTES,
        });
    }
    let mut b = Builder::default();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let ok = match line.strip_prefix('#') {
            Some(comment) => b.comment(comment),
            None => match sample(line) {
                Some(s) => {
                    b.sample(s);
                    true
                }
                None => false,
            },
        };
        if !ok {
            b.out.skipped += 1;
        }
    }
    Ok(b.out)
}

/// Groups lines into families.
#[derive(Default)]
struct Builder {
    out: Exposition,
    index: HashMap<String, usize>,
    /// The family the last metadata line or sample went to.
    current: Option<usize>,
}

impl Builder {
    /// The family named `name`, created at the end if new.
    fn family(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.out.families.push(Family {
            name: name.to_string(),
            help: None,
            kind: None,
            unit: None,
            samples: Vec::new(),
        });
        let i = self.out.families.len() - 1;
        self.index.insert(name.to_string(), i);
        i
    }

    /// A `#` line; false if it is a malformed metadata line.
    fn comment(&mut self, rest: &str) -> bool {
        let rest = rest.trim_start();
        let (keyword, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
            return true; // a plain comment (or `# EOF`)
        }
        let tail = tail.trim_start();
        let (name, value) = tail.split_once(' ').unwrap_or((tail, ""));
        if !valid_name(name) {
            return false;
        }
        let value = value.trim();
        if keyword == "TYPE" && !valid_name(value) {
            return false;
        }
        let i = self.family(name);
        self.current = Some(i);
        let f = &mut self.out.families[i];
        let slot = match keyword {
            "HELP" => &mut f.help,
            "TYPE" => &mut f.kind,
            _ => &mut f.unit,
        };
        if slot.is_none() {
            *slot = Some(value.to_string());
        }
        true
    }

    /// Whether series `name` belongs to family `i`.
    fn fits(&self, name: &str, i: usize) -> bool {
        let f = &self.out.families[i];
        belongs(name, &f.name, f.kind.as_deref())
    }

    /// A sample, into the family it belongs to.
    fn sample(&mut self, s: Sample) {
        let i = match self.current {
            Some(i) if self.fits(&s.name, i) => i,
            _ => {
                // Declared elsewhere (`x_bucket` of an earlier `x`), or undeclared: its own.
                let declared = (0..s.name.len())
                    .filter(|&at| s.name.is_char_boundary(at) && s.name[at..].starts_with('_'))
                    .find_map(|at| {
                        let &i = self.index.get(&s.name[..at])?;
                        self.fits(&s.name, i).then_some(i)
                    });
                match declared {
                    Some(i) => i,
                    None => self.family(&s.name.clone()),
                }
            }
        };
        self.current = Some(i);
        self.out.families[i].samples.push(s);
    }
}

/// Reads one sample line; `None` if malformed.
pub fn sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !valid_name(name) {
        return None;
    }
    let mut rest = line[name_end..].trim_start();
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, tail) = label_set(after)?;
        labels = parsed;
        rest = tail.trim_start();
    }
    let mut parts = rest.split_ascii_whitespace();
    let value = value(parts.next()?)?;
    let timestamp = match parts.next() {
        None => None,
        Some(t) => Some(t.parse::<i64>().ok()?),
    };
    if parts.next().is_some() {
        return None;
    }
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
        timestamp,
    })
}

/// Parses a sample value.
fn value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        t if t
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') =>
        {
            None
        }
        t => t.parse().ok(),
    }
}

/// Parses the label pairs after `{` up to the closing `}`; the pairs and what follows.
fn label_set(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(tail) = s.strip_prefix('}') {
            return Some((out, tail));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim();
        if !valid_label(key) {
            return None;
        }
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    other => {
                        value.push('\\');
                        value.push(other);
                    }
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        // A label name given twice is malformed (Prometheus refuses the whole scrape).
        if out.iter().any(|(k, _)| k == key) {
            return None;
        }
        out.push((key.to_string(), value));
        s = s[end + 1..].trim_start();
        if let Some(tail) = s.strip_prefix(',') {
            s = tail;
        } else if !s.starts_with('}') {
            return None;
        }
    }
}

/// Writes `families` as text exposition.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        render_family(&mut out, f);
    }
    out
}

/// Appends one family.
pub fn render_family(out: &mut String, f: &Family) {
    if let Some(help) = &f.help {
        let _ = writeln!(out, "# HELP {} {}", f.name, help);
    }
    if let Some(kind) = &f.kind {
        let _ = writeln!(out, "# TYPE {} {}", f.name, kind);
    }
    if let Some(unit) = &f.unit {
        let _ = writeln!(out, "# UNIT {} {}", f.name, unit);
    }
    for s in &f.samples {
        out.push_str(&s.name);
        if !s.labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in s.labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push_str("=\"");
                for c in v.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '"' => out.push_str("\\\""),
                        '\n' => out.push_str("\\n"),
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        push_value(out, s.value);
        if let Some(t) = s.timestamp {
            let _ = write!(out, " {t}");
        }
        out.push('\n');
    }
}

/// Appends a value in a form every Prometheus parser reads.
fn push_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_escapes_and_special_values() {
        let s = sample(r#"x{a="q\"uote",b="back\\slash",c="new\nline",} NaN 17"#).expect("ok");
        assert_eq!(s.name, "x");
        assert_eq!(
            s.labels,
            vec![
                ("a".into(), "q\"uote".into()),
                ("b".into(), "back\\slash".into()),
                ("c".into(), "new\nline".into())
            ]
        );
        assert!(s.value.is_nan());
        assert_eq!(s.timestamp, Some(17));
        assert_eq!(sample("y +Inf").map(|s| s.value), Some(f64::INFINITY));
        assert_eq!(sample("y -1.5e3").map(|s| s.value), Some(-1500.0));
        for bad in [
            "y",
            "y abc",
            "y 1 2 3",
            "9y 1",
            "y{a=\"1\" 2",
            "y{a=1} 2",
            "y{=\"1\"} 2",
            "y{a=\"1\"b=\"2\"} 3",
            "y infinity",
            "y 1 1.5",
        ] {
            assert_eq!(sample(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn families_group_and_merge() {
        let text = "# HELP h a histogram\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n\
            loose 1\n# TYPE c counter\nc_total 4\nc_created 1.7e9\ngarbage line here\n# TYPE h histogram\nloose 2\n\n# a comment\n# TYPE bad\n";
        let e = parse(text).expect("ok");
        let names: Vec<_> = e.families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["h", "loose", "c"]);
        assert_eq!(e.families[0].samples.len(), 4);
        assert_eq!(e.families[1].samples.len(), 2, "merged");
        assert_eq!(e.families[2].samples.len(), 2, "_created with its counter");
        assert_eq!(e.skipped, 2, "garbage and the TYPE line without a type");
        let again = parse(&render(&e.families)).expect("ok");
        assert_eq!(again.families, e.families);
        assert_eq!(again.skipped, 0);
    }

    #[test]
    fn size_is_bounded() {
        let big = "x 1\n".repeat(MAX_EXPOSITION_BYTES / 4 + 1);
        assert!(matches!(parse(&big), Err(ExpositionError::TooLarge { .. })));
    }

    #[test]
    fn values_render_parseably() {
        for v in [
            0.0,
            27.0,
            1.7960755326573858e9,
            1e300,
            -2.5e-9,
            f64::INFINITY,
        ] {
            let mut out = String::new();
            push_value(&mut out, v);
            assert_eq!(value(&out), Some(v), "{out}");
        }
    }
}
