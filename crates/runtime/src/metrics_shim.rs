//! Stand-in for `brix-metrics` until it lands (same names and signatures as the design doc);
//! removed by the merge that brings the real crate.
#![allow(dead_code, missing_docs)]

#[derive(Clone, Debug, Default)]
pub struct Rules(Vec<(String, String)>);

#[derive(Debug)]
pub struct RulesError(String);

impl std::fmt::Display for RulesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Rules {
    pub fn builtin(engine: &str) -> Option<Rules> {
        let p = match engine {
            "vllm" => "vllm:",
            "sglang" => "sglang:",
            _ => return None,
        };
        Some(Rules(
            [
                ("num_requests_waiting", "aibrix:queue_size"),
                ("num_queue_reqs", "aibrix:queue_size"),
                ("num_requests_running", "aibrix:num_requests_running"),
                ("num_running_reqs", "aibrix:num_requests_running"),
                ("kv_cache_usage_perc", "aibrix:kv_cache_usage_perc"),
                ("gpu_cache_usage_perc", "aibrix:kv_cache_usage_perc"),
                ("token_usage", "aibrix:kv_cache_usage_perc"),
            ]
            .iter()
            .map(|(a, b)| (format!("{p}{a}"), (*b).to_owned()))
            .collect(),
        ))
    }
    pub fn all_builtin() -> Rules {
        let mut r = Self::builtin("vllm").unwrap_or_default();
        r.extend(Self::builtin("sglang").unwrap_or_default());
        r
    }
    pub fn from_toml_str(_text: &str) -> Result<Rules, RulesError> {
        Ok(Rules::default())
    }
    pub fn extend(&mut self, other: Rules) {
        self.0.extend(other.0);
    }
    pub fn canonical<'a>(&'a self, series: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(a, _)| a == series)
            .map(|(_, b)| b.as_str())
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Mode {
    Transform { keep_original: bool },
    Passthrough,
}

pub fn standardise(rules: &Rules, exposition: &str, mode: Mode) -> String {
    let keep = match mode {
        Mode::Passthrough => return exposition.to_owned(),
        Mode::Transform { keep_original } => keep_original,
    };
    let mut out = String::new();
    for line in exposition.lines() {
        let mut renamed = None;
        for (from, to) in &rules.0 {
            for (prefix, rest) in [
                ("# HELP ", line.strip_prefix("# HELP ")),
                ("# TYPE ", line.strip_prefix("# TYPE ")),
                ("", Some(line)),
            ] {
                if let Some(tail) = rest.and_then(|r| r.strip_prefix(from.as_str()))
                    && tail.starts_with([' ', '{'])
                {
                    renamed = Some(format!("{prefix}{to}{tail}"));
                }
            }
        }
        match renamed {
            Some(r) => {
                if keep {
                    out.push_str(line);
                    out.push('\n');
                }
                out.push_str(&r);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}
