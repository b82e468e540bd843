//! vLLM 0.32's `sanitize_message`: every error message it answers has file paths replaced by
//! `<path>` (`vllm/entrypoints/serve/exception_handling/utils.py`), so a missing LoRA path under
//! `/tmp` or `/home` reads `No adapter found for <path>`. The same two rules, without a regex
//! engine: a path under a system root (`/home`, `/usr`, `/opt`, `/var`, `/tmp`, `/root`, `/lib`,
//! `/mnt`, `/srv`), then any path of two or more segments ending in `name.ext`.

/// Python's `\w` (Unicode letters, digits, underscore).
fn word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

const ROOTS: [&str; 9] = [
    "home", "usr", "opt", "var", "tmp", "root", "lib", "mnt", "srv",
];

/// End of `/(?:home|...)(?:/[\w.\-]+)+` matched at byte `i`, if it matches there.
fn rooted_path(s: &str, i: usize) -> Option<usize> {
    let rest = s.get(i + 1..)?;
    let root = ROOTS.iter().find(|r| rest.starts_with(*r))?;
    let mut end = i + 1 + root.len();
    let mut segments = 0;
    while let Some(seg) = segment(s, end, |c| word(c) || c == '.' || c == '-') {
        end = seg;
        segments += 1;
    }
    (segments > 0).then_some(end)
}

/// End of `(?:/[\w\-]+)+/[\w\-]+\.\w+` matched at byte `i`, if it matches there.
fn file_path(s: &str, i: usize) -> Option<usize> {
    let mut end = i;
    let mut segments = 0;
    while let Some(seg) = segment(s, end, |c| word(c) || c == '-') {
        end = seg;
        segments += 1;
    }
    let ext = s.get(end..)?.strip_prefix('.')?;
    let n: usize = ext
        .chars()
        .take_while(|&c| word(c))
        .map(char::len_utf8)
        .sum();
    (segments >= 2 && n > 0).then_some(end + 1 + n)
}

/// End of one `/` + at least one `allowed` character starting at byte `at`.
fn segment(s: &str, at: usize, allowed: impl Fn(char) -> bool) -> Option<usize> {
    let rest = s.get(at..)?.strip_prefix('/')?;
    let n: usize = rest
        .chars()
        .take_while(|&c| allowed(c))
        .map(char::len_utf8)
        .sum();
    (n > 0).then_some(at + 1 + n)
}

/// One pass of `re.sub(pattern, "<path>", s)` for a matcher of the pattern at a position.
fn replace(s: &str, matcher: fn(&str, usize) -> Option<usize>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(c) = s[i..].chars().next() {
        match (c == '/').then(|| matcher(s, i)).flatten() {
            Some(end) => {
                out.push_str("<path>");
                i = end;
            }
            None => {
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

/// The message as vLLM's error responses carry it.
pub(crate) fn sanitize_message(message: &str) -> String {
    replace(&replace(message, rooted_path), file_path)
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::sanitize_message as s;

    #[test]
    fn paths_read_as_vllms_sanitizer_writes_them() {
        // Each case checked against vLLM 0.32's `sanitize_message` in Python.
        let cases = [
            (
                "Loading lora g failed: No adapter found for /tmp/clean/.vllm-tiny/no-such",
                "Loading lora g failed: No adapter found for <path>",
            ),
            (
                "No adapter found for /work/x/adapter",
                "No adapter found for /work/x/adapter",
            ),
            ("at /work/tmp/a.b end", "at /work<path> end"),
            ("see /a/b/c.json, then", "see <path>, then"),
            ("one /c.json segment", "one /c.json segment"),
            ("/tmpfoo/x stays", "/tmpfoo/x stays"),
            ("/lib64/x stays", "/lib64/x stays"),
            ("/tmp alone", "/tmp alone"),
            (
                "max_tokens=600 cannot be greater than max_model_len=512.",
                "max_tokens=600 cannot be greater than max_model_len=512.",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(s(input), want, "{input}");
        }
    }
}
