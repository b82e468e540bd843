//! Rename / passthrough / drop rules, read from TOML: the embedded per-engine files under
//! `rules/` and a user's file share one format, so a user extends or overrides a builtin rule
//! by naming the same `from`.
//!
//! ```toml
//! [[rule]]
//! from = "vllm:num_requests_waiting"   # the engine's family name, as in its TYPE line
//! to = "aibrix:queue_size"             # or a list: the first is the standard name
//!
//! [[rule]]
//! from = "vllm:num_requests_running"
//! to = "aibrix:num_requests_running"
//! keep_source = true                   # also keep the engine's name when originals are dropped
//! labels = { model_name = "model" }    # label renames on the standard copy (optional)
//!
//! [[rule]]
//! from = "vllm:request_prompt_tokens"
//! action = "passthrough"               # kept as is in every mode
//!
//! [[rule]]
//! from = "vllm:cache_config_info"
//! action = "drop"                      # never re-exported
//! ```

use std::collections::HashMap;

use serde::Deserialize;

use crate::expo::{valid_label, valid_name};

/// What a rule does with its family.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Re-export under the standard name(s); the first is the canonical one.
    Rename {
        /// Target family names (at least one).
        to: Vec<String>,
        /// Keep the source family too when originals are dropped.
        keep_source: bool,
        /// Label renames applied to the renamed copies.
        labels: Vec<(String, String)>,
    },
    /// Keep the family as is, whatever the mode.
    Passthrough,
    /// Never re-export the family.
    Drop,
}

/// One rule: the source family it applies to and what it does.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Source family name (as in the engine's `TYPE` line, e.g. `vllm:prompt_tokens_total`).
    pub from: String,
    /// What happens to it.
    pub action: Action,
}

/// Why a rules file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// Not TOML, or not the rules schema.
    #[error("metric rules: {0}")]
    Syntax(String),
    /// A rule that parses but cannot be applied.
    #[error("metric rules: rule {index} ({from}): {reason}")]
    Invalid {
        /// 0-based position in the file.
        index: usize,
        /// Its `from`.
        from: String,
        /// What is wrong.
        reason: String,
    },
}

/// Rules for one or more engines, indexed by source name.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    rules: Vec<Rule>,
    by_from: HashMap<String, usize>,
    /// Standard name -> the rule that first names it as a target.
    by_target: HashMap<String, usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    from: String,
    #[serde(default)]
    to: Option<OneOrMany>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    keep_source: bool,
    #[serde(default)]
    labels: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

const VLLM: &str = include_str!("../rules/vllm.toml");
const SGLANG: &str = include_str!("../rules/sglang.toml");
const TRTLLM: &str = include_str!("../rules/trtllm.toml");

/// The engines with embedded rules.
pub const ENGINES: [&str; 3] = ["vllm", "sglang", "trtllm"];

impl Rules {
    /// The embedded rules for `engine` (`vllm`, `sglang`, `trtllm`; case-insensitive).
    pub fn builtin(engine: &str) -> Option<Rules> {
        let text = match engine.to_ascii_lowercase().as_str() {
            "vllm" => VLLM,
            "sglang" => SGLANG,
            "trtllm" | "trt-llm" => TRTLLM,
            _ => return None,
        };
        // The embedded files are checked by this crate's tests.
        Some(Self::from_toml_str(text).unwrap_or_default())
    }

    /// Every engine's embedded rules: what a reader uses when it does not know the engine.
    pub fn all_builtin() -> Rules {
        let mut all = Rules::default();
        for engine in ENGINES {
            if let Some(r) = Self::builtin(engine) {
                all.extend(r);
            }
        }
        all
    }

    /// Reads a rules file (the format of the embedded ones).
    pub fn from_toml_str(text: &str) -> Result<Rules, RulesError> {
        let file: File = toml::from_str(text).map_err(|e| RulesError::Syntax(e.to_string()))?;
        let mut out = Rules::default();
        for (index, raw) in file.rule.into_iter().enumerate() {
            let invalid = |reason: String| RulesError::Invalid {
                index,
                from: raw.from.clone(),
                reason,
            };
            if !valid_name(&raw.from) {
                return Err(invalid("`from` is not a metric name".into()));
            }
            if out.by_from.contains_key(&raw.from) {
                return Err(invalid("a second rule for the same `from`".into()));
            }
            let to = match raw.to {
                None => Vec::new(),
                Some(OneOrMany::One(t)) => vec![t],
                Some(OneOrMany::Many(t)) => t,
            };
            let action = match (raw.action.as_deref().unwrap_or("rename"), to.is_empty()) {
                ("rename", false) => {
                    if let Some(bad) = to.iter().find(|t| !valid_name(t)) {
                        return Err(invalid(format!("`to` {bad:?} is not a metric name")));
                    }
                    let mut labels = Vec::new();
                    for (k, v) in raw.labels.unwrap_or_default() {
                        let v = v.as_str().map(str::to_string).unwrap_or_default();
                        if !valid_label(&k) || !valid_label(&v) {
                            return Err(invalid(format!("label rename {k:?} -> {v:?}")));
                        }
                        if labels.iter().any(|(_, seen)| *seen == v) {
                            return Err(invalid(format!(
                                "two labels renamed onto {v:?} (a series would carry it twice)"
                            )));
                        }
                        labels.push((k, v));
                    }
                    Action::Rename {
                        to,
                        keep_source: raw.keep_source,
                        labels,
                    }
                }
                ("rename", true) => return Err(invalid("a rename needs `to`".into())),
                ("passthrough", true) => Action::Passthrough,
                ("drop", true) => Action::Drop,
                (a @ ("passthrough" | "drop"), false) => {
                    return Err(invalid(format!("`to` makes no sense with action {a}")));
                }
                (other, _) => {
                    return Err(invalid(format!(
                        "action {other:?} is not rename, passthrough or drop"
                    )));
                }
            };
            out.push(Rule {
                from: raw.from,
                action,
            });
        }
        Ok(out)
    }

    /// Adds `other`'s rules; one with the same `from` as an existing rule replaces it.
    pub fn extend(&mut self, other: Rules) {
        for rule in other.rules {
            match self.by_from.get(&rule.from) {
                Some(&i) => self.rules[i] = rule,
                None => self.push(rule),
            }
        }
        self.reindex_targets();
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    fn push(&mut self, rule: Rule) {
        self.by_from.insert(rule.from.clone(), self.rules.len());
        self.rules.push(rule);
        self.reindex_targets();
    }

    fn reindex_targets(&mut self) {
        self.by_target.clear();
        for (i, r) in self.rules.iter().enumerate() {
            if let Action::Rename { to, .. } = &r.action {
                for t in to {
                    self.by_target.entry(t.clone()).or_insert(i);
                }
            }
        }
    }

    /// The standard name of family `series`: for an engine name its rename target, for a
    /// standard (or AIBrix compatibility) name the canonical one; `None` for anything else.
    pub fn canonical<'a>(&'a self, series: &str) -> Option<&'a str> {
        let i = self
            .by_from
            .get(series)
            .or_else(|| self.by_target.get(series))?;
        match &self.rules[*i].action {
            Action::Rename { to, .. } => to.first().map(String::as_str),
            _ => None,
        }
    }

    /// Whether `name` is the target of some rename (a standard or compatibility name).
    pub fn is_target(&self, name: &str) -> bool {
        self.by_target.contains_key(name)
    }

    /// The engine families whose canonical name is `standard`, in rule order.
    pub fn sources_of<'a>(&'a self, standard: &str) -> impl Iterator<Item = &'a str> + 'a {
        let standard = standard.to_string();
        self.rules.iter().filter_map(move |r| match &r.action {
            Action::Rename { to, .. } if to.first() == Some(&standard) => Some(r.from.as_str()),
            _ => None,
        })
    }

    /// The rule for family `family` and the suffix it adds to the rule's name: an exact match,
    /// or a counter's separate `_created` family (vLLM exposes `x_created` as its own gauge).
    pub fn rule_for_family(&self, family: &str) -> Option<&Rule> {
        if let Some(&i) = self.by_from.get(family) {
            return Some(&self.rules[i]);
        }
        let base = family.strip_suffix("_created")?;
        let i = self.by_from.get(&format!("{base}_total"))?;
        Some(&self.rules[*i])
    }
}

/// The name series `series` of a family matched by a rule from `from` gets under `to`:
/// the family's own name becomes `to`; `_bucket`/`_sum`/`_count`/`_created` (and a counter's
/// `_total`) suffixes move with it.
pub fn rename_series(series: &str, from: &str, to: &str) -> String {
    if series == from {
        return to.to_string();
    }
    let (fb, tb) = match (from.strip_suffix("_total"), to.strip_suffix("_total")) {
        (Some(f), Some(t)) => (f, t),
        (Some(f), None) => (f, to),
        _ => (from, to),
    };
    match series.strip_prefix(fb) {
        Some(rest) => format!("{tb}{rest}"),
        None => series.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_files_parse() {
        for engine in ENGINES {
            let text = match engine {
                "vllm" => VLLM,
                "sglang" => SGLANG,
                _ => TRTLLM,
            };
            let r = Rules::from_toml_str(text).unwrap_or_else(|e| panic!("{engine}: {e}"));
            assert!(r.rules().len() >= 5, "{engine}");
        }
        assert!(Rules::builtin("tgi").is_none());
    }

    #[test]
    fn series_follow_their_family() {
        let cases = [
            ("a_total", "a_total", "b_total", "b_total"),
            ("a_created", "a_total", "b_total", "b_created"),
            ("h_bucket", "h", "s", "s_bucket"),
            ("h_count", "h", "s", "s_count"),
            ("g", "g", "s", "s"),
        ];
        for (series, from, to, want) in cases {
            assert_eq!(rename_series(series, from, to), want, "{series}");
        }
    }

    #[test]
    fn bad_files_say_why() {
        let cases = [
            ("[[rule]]\nfrom = \"a\"\n", "needs `to`"),
            (
                "[[rule]]\nfrom = \"a b\"\nto = \"c\"\n",
                "not a metric name",
            ),
            (
                "[[rule]]\nfrom = \"a\"\nto = \"c\"\naction = \"drop\"\n",
                "no sense",
            ),
            ("[[rule]]\nfrom = \"a\"\naction = \"frob\"\n", "frob"),
            (
                "[[rule]]\nfrom = \"a\"\nto = \"b\"\n[[rule]]\nfrom = \"a\"\nto = \"c\"\n",
                "second rule",
            ),
            (
                "[[rule]]\nfrom = \"a\"\nto = \"b\"\nlabels = { x = \"1y\" }\n",
                "label",
            ),
            (
                "[[rule]]\nfrom = \"a\"\nto = \"b\"\nextra = 1\n",
                "unknown field",
            ),
            ("rule = 3", "metric rules"),
        ];
        for (text, needle) in cases {
            let e = Rules::from_toml_str(text).expect_err(text).to_string();
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        }
    }

    #[test]
    fn canonical_names_and_overrides() {
        let mut r = Rules::all_builtin();
        assert_eq!(
            r.canonical("sglang:num_running_reqs"),
            Some("aibrix:num_requests_running")
        );
        assert_eq!(
            r.canonical("aibrix:gpu_cache_usage_perc"),
            Some("aibrix:kv_cache_usage_perc")
        );
        assert_eq!(r.canonical("aibrix:queue_size"), Some("aibrix:queue_size"));
        assert_eq!(
            r.canonical("vllm:request_prompt_tokens"),
            None,
            "passthrough"
        );
        assert_eq!(r.canonical("up"), None);
        let user = "[[rule]]\nfrom = \"vllm:num_requests_waiting\"\nto = \"my:waiting\"\n";
        r.extend(Rules::from_toml_str(user).expect("ok"));
        assert_eq!(r.canonical("vllm:num_requests_waiting"), Some("my:waiting"));
        assert_eq!(
            r.canonical("sglang:num_queue_reqs"),
            Some("aibrix:queue_size"),
            "others kept"
        );
        let sources: Vec<_> = r.sources_of("aibrix:kv_cache_usage_perc").collect();
        assert!(sources.contains(&"sglang:token_usage"), "{sources:?}");
    }
}
