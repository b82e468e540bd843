//! The Kubernetes API verbs each Brix component uses, in one table per module (`RULES`), joined
//! here per component. The Helm chart's roles are checked against [`component`] (a test renders
//! the chart and compares), and the mocked-API tests fail on any call outside it, so the chart
//! grants exactly what the code uses.

use std::collections::BTreeMap;

/// One RBAC rule: verbs on resources of one API group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// API group (`""` for core).
    pub group: &'static str,
    /// Resources, with `/status` or `/scale` for subresources.
    pub resources: &'static [&'static str],
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`.
    pub verbs: &'static [&'static str],
}

/// The deployable components, as the Helm chart names them.
pub const COMPONENTS: [&str; 2] = ["controllers", "gateway"];

/// The rules a component needs, merged: group → resource → sorted verbs.
pub fn component(name: &str) -> Option<BTreeMap<String, BTreeMap<String, Vec<String>>>> {
    let parts: &[&[Rule]] = match name {
        "controllers" => &[
            crate::podautoscaler::RULES,
            crate::modeladapter::RULES,
            crate::fleet::RULES,
            crate::lease::RULES,
            crate::manager::RULES,
        ],
        "gateway" => &[crate::discovery::RULES],
        _ => return None,
    };
    Some(merge(parts.iter().flat_map(|r| r.iter())))
}

/// Whether `rules` allow `verb` on `group`/`resource`.
pub fn allows(rules: &[Rule], group: &str, resource: &str, verb: &str) -> bool {
    rules
        .iter()
        .any(|r| r.group == group && r.resources.contains(&resource) && r.verbs.contains(&verb))
}

fn merge<'a>(
    rules: impl Iterator<Item = &'a Rule>,
) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for r in rules {
        for res in r.resources {
            let verbs = out
                .entry(r.group.to_string())
                .or_default()
                .entry(res.to_string())
                .or_default();
            verbs.extend(r.verbs.iter().map(|v| v.to_string()));
            verbs.sort();
            verbs.dedup();
        }
    }
    out
}
