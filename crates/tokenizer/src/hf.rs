//! A real Hugging Face tokenizer (`tokenizer.json`) with the BOS handling of its post-processor
//! and the chat template of its `tokenizer_config.json` (or `chat_template.jinja`), so prompt
//! token counts match the model the sim imitates, as vLLM counts them: completions prompts are
//! encoded with special tokens (BOS), rendered chats without (the template writes its own).

use std::fs;
use std::path::{Path, PathBuf};

use minijinja::{Environment, ErrorKind, Value, context};
use serde_json::Value as Json;

use crate::Error;

/// The name the chat template is registered under in its environment.
const TEMPLATE: &str = "chat";

/// A loaded `tokenizer.json` and, when the folder has one, its chat template.
pub(crate) struct HfTokenizer {
    tokenizer: tokenizers::Tokenizer,
    /// Jinja environment holding the chat template (absent: the sim's fixed template).
    chat: Option<Environment<'static>>,
    bos_token: String,
    eos_token: String,
    /// Where it was loaded from, for `/v1/models` and logs.
    pub(crate) source: PathBuf,
}

fn err(path: &Path, what: impl std::fmt::Display) -> Error {
    Error(format!("{}: {what}", path.display()))
}

/// A special token as `tokenizer_config.json` writes it: a string or `{"content": ...}`.
fn token_text(v: Option<&Json>) -> String {
    match v {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Object(o)) => o
            .get("content")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

/// The default template of a `chat_template` that is a string or a list of named templates.
fn template_text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
            .or_else(|| list.first())
            .and_then(|t| t.get("template"))
            .and_then(Json::as_str)
            .map(str::to_string),
        _ => None,
    }
}

/// Jinja's `raise_exception`, as transformers defines it for templates.
fn raise_exception(msg: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

impl HfTokenizer {
    /// Loads `path`: a folder with `tokenizer.json` (and optionally `tokenizer_config.json`,
    /// `chat_template.jinja`), or a `tokenizer.json` file (its folder is searched for the rest).
    pub(crate) fn load(path: &Path) -> Result<Self, Error> {
        let (dir, file) = if path.is_dir() {
            (path.to_path_buf(), path.join("tokenizer.json"))
        } else {
            let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            (dir, path.to_path_buf())
        };
        let tokenizer = tokenizers::Tokenizer::from_file(&file).map_err(|e| err(&file, e))?;
        let config: Json = match fs::read_to_string(dir.join("tokenizer_config.json")) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| err(&dir, e))?,
            Err(_) => Json::Null,
        };
        let template = fs::read_to_string(dir.join("chat_template.jinja"))
            .ok()
            .or_else(|| template_text(config.get("chat_template")));
        let chat = match template {
            Some(t) => {
                let mut env = Environment::new();
                env.set_unknown_method_callback(
                    minijinja_contrib::pycompat::unknown_method_callback,
                );
                env.add_function("raise_exception", raise_exception);
                env.add_template_owned(TEMPLATE, t)
                    .map_err(|e| err(&dir, format!("chat template: {e}")))?;
                Some(env)
            }
            None => None,
        };
        let t = Self {
            tokenizer,
            chat,
            bos_token: token_text(config.get("bos_token")),
            eos_token: token_text(config.get("eos_token")),
            source: path.to_path_buf(),
        };
        // A template that cannot render a plain exchange is refused at start, not per request.
        t.render_chat(&[("user", "hi".to_string())], true)
            .map_err(|e| err(&dir, format!("chat template: {e}")))?;
        Ok(t)
    }

    /// Ids of `text`, with the special tokens the post-processor adds when `special`.
    pub(crate) fn encode(&self, text: &str, special: bool) -> Vec<u32> {
        match self.tokenizer.encode_fast(text, special) {
            Ok(enc) => enc.get_ids().to_vec(),
            Err(e) => {
                tracing::debug!(error = %e, "tokenizer could not encode; counting nothing");
                Vec::new()
            }
        }
    }

    /// The text of `tokens` (special tokens kept), or the first id the vocabulary lacks.
    pub(crate) fn decode(&self, tokens: &[u32]) -> Result<String, u32> {
        if let Some(&bad) = tokens
            .iter()
            .find(|&&t| self.tokenizer.id_to_token(t).is_none())
        {
            return Err(bad);
        }
        self.tokenizer
            .decode(tokens, false)
            .map_err(|_| tokens.first().copied().unwrap_or(0))
    }

    /// The conversation rendered by the chat template, or `None` without one.
    pub(crate) fn render_chat(
        &self,
        messages: &[(&str, String)],
        add_generation_prompt: bool,
    ) -> Result<Option<String>, minijinja::Error> {
        let Some(env) = &self.chat else {
            return Ok(None);
        };
        let messages: Vec<Value> = messages
            .iter()
            .map(|(role, content)| context! { role => *role, content => content })
            .collect();
        let out = env.get_template(TEMPLATE)?.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })?;
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Tokenizer;

    /// A word-level tokenizer whose post-processor adds `<s>`, as Llama's does.
    const TOKENIZER: &str = r#"{"version": "1.0", "truncation": null, "padding": null,
      "added_tokens": [{"id": 0, "content": "<s>", "single_word": false, "lstrip": false,
                        "rstrip": false, "normalized": false, "special": true}],
      "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
      "post_processor": {"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}},
      "decoder": null,
      "model": {"type": "WordLevel", "unk_token": "<unk>",
                "vocab": {"<s>": 0, "hello": 1, "world": 2, "<unk>": 3, "user": 4, ":": 5}}}"#;

    fn folder(name: &str, template: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("brix-hf-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let write = |f: &str, text: &str| {
            std::fs::write(dir.join(f), text).unwrap_or_else(|e| panic!("{e}"));
        };
        write("tokenizer.json", TOKENIZER);
        let config = serde_json::json!({"bos_token": {"content": "<s>"}, "eos_token": "</s>",
                                        "chat_template": template});
        write("tokenizer_config.json", &config.to_string());
        dir
    }

    #[test]
    fn bos_is_added_to_prompts_and_written_once_by_the_template() {
        let template = "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: \
                        {{ m['content'].strip() }} {% endfor %}";
        let dir = folder("bos", template);
        let t = Tokenizer::load(Some(&dir)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.encode("hello world"), vec![0, 1, 2]);
        let chat = t.render_chat([("user", "  hello world ".to_string())], true);
        assert_eq!(chat, "<s>user: hello world ");
        assert_eq!(t.encode_chat(&chat), vec![0, 4, 5, 1, 2]);
        assert_eq!(t.decode(&[1, 2]), Ok("hello world".to_string()));
        assert_eq!(t.decode(&[99]), Err(99));
        // Also loadable from the file itself.
        assert!(Tokenizer::load(Some(&dir.join("tokenizer.json"))).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn template_errors_fall_back_or_refuse_at_start() {
        let picky = "{% if messages|length > 1 %}{{ raise_exception('one message only') }}\
                     {% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}";
        let dir = folder("picky", picky);
        let t = Tokenizer::load(Some(&dir)).unwrap_or_else(|e| panic!("{e}"));
        let two = [("user", "hello".to_string()), ("user", "world".to_string())];
        assert_eq!(
            t.render_chat(two, false),
            "<|user|>\nhello\n<|user|>\nworld\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
        let broken = folder("broken", "{{ raise_exception('never') }}");
        assert!(Tokenizer::load(Some(&broken)).is_err());
        let _ = std::fs::remove_dir_all(&broken);
        let missing = std::env::temp_dir().join("brix-hf-no-such-folder");
        assert!(Tokenizer::load(Some(&missing)).is_err());
    }
}
