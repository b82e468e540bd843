//! The one Prometheus text (0.0.4) sample reader: the gateway's scrapes read engine gauges
//! with it, the test kit checks expositions with it. Pure; lenient (a line it cannot read is
//! None, never a panic).

use crate::pod::LoraState;

/// Most adapter names kept from one `vllm:lora_requests_info` label (an engine listing more
/// is cut, so a broken engine cannot grow the router's state).
pub const MAX_LORA_NAMES: usize = 1024;

/// vLLM's LoRA batch state from an exposition: `vllm:lora_requests_info{max_lora,
/// running_lora_adapters, waiting_lora_adapters}`, comma-separated names. vLLM sets one series
/// per distinct label set to the time it was last updated (`set_to_current_time`) and never
/// removes old ones, so the sample with the largest value is the current state. None when the
/// engine exports no such series (LoRA off) or none with a readable `max_lora`.
pub fn lora_requests_info(text: &str) -> Option<LoraState> {
    let mut best: Option<(f64, &str)> = None;
    for line in text.lines() {
        let Some(s) = sample(line) else { continue };
        if s.name != "vllm:lora_requests_info" || !s.value.is_finite() {
            continue;
        }
        if best.is_none_or(|(v, _)| s.value >= v) {
            best = Some((s.value, s.labels));
        }
    }
    let pairs = labels(best?.1)?;
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let names = |k: &str| -> Vec<String> {
        get(k)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .take(MAX_LORA_NAMES)
            .map(str::to_string)
            .collect()
    };
    Some(LoraState {
        max_lora: get("max_lora")?.trim().parse().ok()?,
        running: names("running_lora_adapters"),
        waiting: names("waiting_lora_adapters"),
    })
}

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

    #[test]
    fn lora_info_takes_the_newest_series() {
        // As vLLM leaves them: one series per state it was in, valued with the time it was set.
        let text = "# TYPE vllm:lora_requests_info gauge\n\
            vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"sql\",waiting_lora_adapters=\"\"} 1.7000000005e+09\n\
            vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"sql,chat\",waiting_lora_adapters=\"code\"} 1.7000000009e+09\n\
            vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"\",waiting_lora_adapters=\"\"} 1.7000000001e+09\n";
        let want = LoraState {
            max_lora: 2,
            running: vec!["sql".into(), "chat".into()],
            waiting: vec!["code".into()],
        };
        assert_eq!(lora_requests_info(text), Some(want));
        let idle = "vllm:lora_requests_info{max_lora=\"4\",running_lora_adapters=\"\",waiting_lora_adapters=\"\"} 5\n";
        assert_eq!(
            lora_requests_info(idle),
            Some(LoraState {
                max_lora: 4,
                ..LoraState::default()
            })
        );
        for none in [
            "",
            "vllm:num_requests_running 1\n",
            "vllm:lora_requests_info{running_lora_adapters=\"a\"} 5\n",
            "vllm:lora_requests_info{max_lora=\"x\"} 5\n",
        ] {
            assert_eq!(lora_requests_info(none), None, "{none:?}");
        }
        let many = (0..5000)
            .map(|i| format!("a{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let line = format!(
            "vllm:lora_requests_info{{max_lora=\"1\",running_lora_adapters=\"{many}\"}} 1\n"
        );
        let got = lora_requests_info(&line).map(|s| s.running.len());
        assert_eq!(got, Some(MAX_LORA_NAMES));
    }
}
