//! Text to token ids and back, the chat template, and the filler text `brix sim`'s answers are
//! made of; shared by `brix sim` and the gateway, so the gateway tokenizes a request exactly as
//! the engine will (the exact KV index matches token blocks). Built in: tiktoken's
//! `cl100k_base` (works offline) with a fixed chat template; with the `hf-tokenizer` feature,
//! [`Tokenizer::load`] reads a real Hugging Face `tokenizer.json` and its chat template
//! instead, so prompt token counts match the model.
//!
//! For the sim, token ids only need to be stable, not the simulated model's own: equal prompts
//! give equal ids, so the engine's prefix cache hits exactly where vLLM's would.

mod export;
#[cfg(feature = "hf-tokenizer")]
mod hf;
mod request;

use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use tiktoken_rs::CoreBPE;

pub use request::{Api, Prompt};

/// A tokenizer that could not be loaded or exported.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

/// What simulated answers say, cycled token by token from a seeded offset.
const FILLER: &str = "The simulated engine answers every request with this paragraph, one token at a \
    time, at the speed a real GPU would. It schedules requests the way vLLM does, keeps their \
    key-value blocks in a paged cache with prefix sharing, and charges each step what the \
    roofline model says it costs. Nothing here is a real model; the words only make the \
    stream look like text while the timing, the batching and the metrics stay faithful. ";

/// The tables are large and immutable; every server in a process shares one copy.
static CL100K: OnceLock<Arc<CoreBPE>> = OnceLock::new();

fn cl100k_tables() -> Result<Arc<CoreBPE>, Error> {
    if let Some(bpe) = CL100K.get() {
        return Ok(bpe.clone());
    }
    let bpe = Arc::new(tiktoken_rs::cl100k_base().map_err(|e| Error(e.to_string()))?);
    Ok(CL100K.get_or_init(|| bpe).clone())
}

#[derive(Clone)]
enum Inner {
    Cl100k(Arc<CoreBPE>),
    #[cfg(feature = "hf-tokenizer")]
    Hf(Arc<hf::HfTokenizer>),
}

/// A cheap handle to the shared tokenizer tables.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Inner,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Cl100k(_) => f.write_str("Tokenizer(cl100k_base)"),
            #[cfg(feature = "hf-tokenizer")]
            Inner::Hf(t) => write!(f, "Tokenizer({})", t.source.display()),
        }
    }
}

impl Tokenizer {
    /// Loads (once per process) the `cl100k_base` tables.
    pub fn cl100k() -> Result<Self, Error> {
        Ok(Self {
            inner: Inner::Cl100k(cl100k_tables()?),
        })
    }

    /// The tokenizer `--tokenizer` names (a folder with `tokenizer.json`, or the file), or the
    /// built-in one when `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, Error> {
        match path {
            None => Self::cl100k(),
            #[cfg(feature = "hf-tokenizer")]
            Some(p) => Ok(Self {
                inner: Inner::Hf(Arc::new(hf::HfTokenizer::load(p)?)),
            }),
            #[cfg(not(feature = "hf-tokenizer"))]
            Some(p) => Err(Error(format!(
                "{}: this build has no Hugging Face tokenizer support (feature hf-tokenizer)",
                p.display()
            ))),
        }
    }

    /// Token ids of a completions prompt, as vLLM encodes it: with the special tokens the
    /// tokenizer adds (a BOS for most models; none for `cl100k_base`, whose special-token
    /// spellings are treated as plain text).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match &self.inner {
            Inner::Cl100k(bpe) => bpe.encode_ordinary(text),
            #[cfg(feature = "hf-tokenizer")]
            Inner::Hf(t) => t.encode(text, true),
        }
    }

    /// Token ids of a chat rendered by [`Tokenizer::render_chat`]: no special tokens added, as
    /// vLLM does for chat (the template writes its own BOS).
    pub fn encode_chat(&self, rendered: &str) -> Vec<u32> {
        match &self.inner {
            Inner::Cl100k(bpe) => bpe.encode_ordinary(rendered),
            #[cfg(feature = "hf-tokenizer")]
            Inner::Hf(t) => t.encode(rendered, false),
        }
    }

    /// The text of `tokens` (invalid UTF-8 replaced), or the first id the vocabulary lacks.
    pub fn decode(&self, tokens: &[u32]) -> Result<String, u32> {
        match &self.inner {
            Inner::Cl100k(bpe) => match bpe.decode_bytes(tokens) {
                Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
                Err(e) => Err(e.token),
            },
            #[cfg(feature = "hf-tokenizer")]
            Inner::Hf(t) => t.decode(tokens),
        }
    }

    /// The text of one generated token (the filler only holds known ids).
    pub fn decode_one(&self, token: u32) -> String {
        self.decode(&[token]).unwrap_or_default()
    }

    /// Token ids of the filler paragraph, for [`brix_sim::Engine::with_filler`].
    pub fn filler(&self) -> Vec<u32> {
        self.encode_chat(FILLER)
    }

    /// Renders a conversation with the loaded chat template, or else the fixed one:
    /// `<|role|>\ncontent\n` per message, then the assistant header when a reply is wanted.
    /// Equal conversations render equally. A template that fails on this conversation (its
    /// `raise_exception`) falls back to the fixed rendering.
    pub fn render_chat<'a>(
        &self,
        messages: impl IntoIterator<Item = (&'a str, String)>,
        add_generation_prompt: bool,
    ) -> String {
        let messages: Vec<(&str, String)> = messages.into_iter().collect();
        #[cfg(feature = "hf-tokenizer")]
        if let Inner::Hf(t) = &self.inner {
            match t.render_chat(&messages, add_generation_prompt) {
                Ok(Some(text)) => return text,
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "chat template failed; fixed template used"),
            }
        }
        let mut out = String::new();
        for (role, content) in messages {
            out.push_str("<|");
            out.push_str(role);
            out.push_str("|>\n");
            out.push_str(&content);
            out.push('\n');
        }
        if add_generation_prompt {
            out.push_str("<|assistant|>\n");
        }
        out
    }
}

/// Writes the built-in tokenizer (`cl100k_base` and the fixed chat template) as a Hugging Face
/// tokenizer folder (`tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`,
/// `config.json`) that `AutoTokenizer.from_pretrained(dir)` loads and that counts tokens as
/// `brix sim` does; for benchmark tools that tokenize client-side.
pub fn export_tokenizer(dir: &Path, max_model_len: u32) -> Result<(), Error> {
    let bpe = cl100k_tables()?;
    export::write(&bpe, dir, max_model_len)
        .map_err(|e| Error(format!("writing {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> Tokenizer {
        Tokenizer::cl100k().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn text_round_trips_and_filler_decodes_to_words() {
        let t = tok();
        let ids = t.encode("Hello, world! <|endoftext|>");
        assert_eq!(
            t.decode(&ids),
            Ok("Hello, world! <|endoftext|>".to_string())
        );
        let filler = t.filler();
        assert!(filler.len() > 50);
        let words: String = filler.iter().map(|&id| t.decode_one(id)).collect();
        assert_eq!(words, FILLER);
        assert_eq!(t.decode(&[u32::MAX]), Err(u32::MAX));
    }

    #[test]
    fn chat_template_is_fixed() {
        let t = tok();
        let msgs = || {
            vec![
                ("system", "Be brief.".to_string()),
                ("user", "Hi".to_string()),
            ]
        };
        let text = t.render_chat(msgs(), true);
        assert_eq!(text, "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n");
        assert_eq!(t.encode(&text), t.encode(&t.render_chat(msgs(), true)));
        assert!(!t.render_chat(msgs(), false).ends_with("<|assistant|>\n"));
    }
}
