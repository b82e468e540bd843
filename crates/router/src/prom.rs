//! The one Prometheus text (0.0.4) sample reader: the gateway's scrapes read engine gauges
//! with it, the test kit checks expositions with it. Pure; lenient (a line it cannot read is
//! None, never a panic).

/// One sample line, borrowed from the text.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<'a> {
    /// Series name.
    pub name: &'a str,
    /// The label set between the braces, unparsed (`""` without labels); see [`labels`].
    pub labels: &'a str,
    /// The value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

/// Reads a sample line; None for comments, blank and malformed lines.
pub fn sample(line: &str) -> Option<Sample<'_>> {
    let line = line.trim_end();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let series = series.trim_end();
    match series.split_once('{') {
        None => Some(Sample {
            name: series,
            labels: "",
            value,
        }),
        Some((name, rest)) => Some(Sample {
            name,
            labels: rest.strip_suffix('}')?,
            value,
        }),
    }
}

/// Parses `k="v",k2="v2"` with `\"`, `\\` and `\n` escapes; None if malformed.
pub fn labels(raw: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = raw.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let key = key.trim_start_matches(',').trim();
        if key.is_empty() {
            return Some(out);
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((key.to_string(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_and_labels() {
        let s = sample("vllm:num_requests_running{model_name=\"m\",engine=\"0\"} 3")
            .unwrap_or_else(|| panic!("sample"));
        assert_eq!((s.name, s.value), ("vllm:num_requests_running", 3.0));
        assert_eq!(
            labels(s.labels),
            Some(vec![
                ("model_name".into(), "m".into()),
                ("engine".into(), "0".into())
            ])
        );
        let s = sample("up 1").unwrap_or_else(|| panic!("sample"));
        assert_eq!((s.name, s.labels, s.value), ("up", "", 1.0));
        assert_eq!(
            sample("x_bucket{le=\"+Inf\"} +Inf").map(|s| s.value),
            Some(f64::INFINITY)
        );
        assert_eq!(
            labels(r#"a="q\"uote\\back\nline""#),
            Some(vec![("a".into(), "q\"uote\\back\nline".into())])
        );
        for bad in ["# HELP x y", "", "x", "x{a=\"1\" 2", "x one"] {
            assert_eq!(sample(bad), None, "{bad:?}");
        }
        assert_eq!(labels("a=1"), None);
        assert_eq!(labels("a=\"open"), None);
    }
}
