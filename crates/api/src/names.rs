//! Name syntax: model names (used in URLs, file names and commands) and Kubernetes object names.

/// Longest model name; long enough for Hugging Face style names, short enough for a label.
const MAX_MODEL_NAME: usize = 128;

/// Why `name` is not a usable model name, or `None` when it is.
///
/// A model name ends up in request bodies, metric labels, log file names and, through
/// `{model}`, in a shell command, so it is kept to a charset that needs no quoting anywhere.
pub(crate) fn model_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > MAX_MODEL_NAME {
        return Some(format!(
            "is {} bytes long; at most {MAX_MODEL_NAME}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Some(format!(
            "'{name}' contains {c:?}; use letters, digits, '-', '_' and '.' only"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some(format!("'{name}' must start with a letter or digit"));
    }
    None
}

/// Why `name` is not a Kubernetes DNS-1123 subdomain (object names), or `None`.
pub(crate) fn dns_subdomain_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > 253 {
        return Some("must be at most 253 characters".into());
    }
    let ok = name
        .split('.')
        .all(|part| dns_label_problem(part).is_none());
    (!ok).then(|| {
        format!(
            "'{name}' is not a valid Kubernetes name: lowercase letters, digits, '-' and '.', \
             starting and ending with a letter or digit"
        )
    })
}

/// Why `name` is not a Kubernetes DNS-1123 label (namespaces, schedule names), or `None`.
pub(crate) fn dns_label_problem(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum);
    (!ok).then(|| {
        format!(
            "'{name}' is not a valid DNS label: 1-63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names() {
        for good in ["llama-3-8b", "Qwen2.5-7B-Instruct", "a", "m_1.v2"] {
            assert_eq!(model_name_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "meta-llama/Llama-3",
            "has space",
            "-flag",
            ".hidden",
            "tab\t",
            "x:y",
        ] {
            assert!(model_name_problem(bad).is_some(), "{bad}");
        }
        assert!(model_name_problem(&"a".repeat(129)).is_some());
    }

    #[test]
    fn kubernetes_names() {
        for good in ["a", "qwen-code-lora", "a.b-c", "x1"] {
            assert_eq!(dns_subdomain_problem(good), None, "{good}");
        }
        for bad in ["", "Upper", "a_b", "-a", "a-", "a..b", "a/b"] {
            assert!(dns_subdomain_problem(bad).is_some(), "{bad}");
        }
        assert!(dns_label_problem("a.b").is_some());
        assert!(dns_label_problem(&"a".repeat(64)).is_some());
        assert_eq!(dns_label_problem("peak-hours"), None);
    }
}
