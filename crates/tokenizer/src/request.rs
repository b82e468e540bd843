//! A request's prompt as the engine will tokenize it: a completions `prompt` (text encoded
//! with the tokenizer's special tokens, or token ids as sent), or chat `messages` rendered by
//! the model's chat template and encoded without special tokens — vLLM's rules, which
//! `brix sim` follows too. The gateway routes on the result (its exact KV index).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::Tokenizer;

/// Which OpenAI API a request body is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `/v1/chat/completions`: `messages`, rendered with the chat template.
    Chat,
    /// `/v1/completions`: `prompt`, text or token ids.
    Completions,
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    messages: Option<Vec<Message<'a>>>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(default)]
    add_generation_prompt: Option<bool>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Parts(#[serde(borrow)] Vec<Part<'a>>),
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

/// A completions `prompt` in any OpenAI form, read once here for the engine's tokens and by
/// the gateway for its routing key.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Prompt<'a> {
    /// One prompt.
    Text(#[serde(borrow)] Cow<'a, str>),
    /// A batch of prompts (the first one keys routing).
    Texts(#[serde(borrow)] Vec<Cow<'a, str>>),
    /// One prompt as token ids.
    Tokens(Vec<u32>),
    /// A batch of prompts as token ids.
    TokenLists(Vec<Vec<u32>>),
}

impl Tokenizer {
    /// The token ids the engine will compute for this request body's (first) prompt, or None
    /// for a body it cannot read (not JSON, no `messages` or `prompt` of a known shape).
    pub fn request_tokens(&self, api: Api, body: &[u8]) -> Option<Vec<u32>> {
        engine_tokens(self, api, body)
    }
}

fn engine_tokens(tok: &Tokenizer, api: Api, body: &[u8]) -> Option<Vec<u32>> {
    let b: Body<'_> = serde_json::from_slice(body).ok()?;
    match api {
        Api::Chat => {
            let messages = b.messages?;
            let rendered: Vec<(&str, String)> = messages
                .iter()
                .map(|m| (m.role.as_deref().unwrap_or(""), content_text(m.content)))
                .collect();
            let add = b.add_generation_prompt.unwrap_or(true);
            Some(tok.encode_chat(&tok.render_chat(rendered, add)))
        }
        Api::Completions => match serde_json::from_str::<Prompt<'_>>(b.prompt?.get()).ok()? {
            Prompt::Text(t) => Some(tok.encode(&t)),
            Prompt::Texts(ts) => ts.first().map(|t| tok.encode(t)),
            Prompt::Tokens(t) => Some(t),
            Prompt::TokenLists(mut ts) => (!ts.is_empty()).then(|| ts.swap_remove(0)),
        },
    }
}

/// A message's text as vLLM's chat renderer sees it: a string, or its text parts joined by
/// newlines (other parts contribute nothing).
fn content_text(raw: Option<&RawValue>) -> String {
    match raw.map(|r| serde_json::from_str::<Content<'_>>(r.get())) {
        Some(Ok(Content::Text(t))) => t.into_owned(),
        Some(Ok(Content::Parts(parts))) => {
            let texts: Vec<&str> = parts.iter().filter_map(|p| p.text.as_deref()).collect();
            texts.join("\n")
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> Tokenizer {
        Tokenizer::cl100k().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn prompts_tokenize_as_the_engine_does() {
        let t = tok();
        let chat = br#"{"model":"m","messages":[{"role":"system","content":"Be brief."},
            {"role":"user","content":[{"type":"text","text":"Hi"},{"type":"image_url"},
            {"type":"text","text":"there"}]}]}"#;
        let want = t.encode_chat("<|system|>\nBe brief.\n<|user|>\nHi\nthere\n<|assistant|>\n");
        assert_eq!(engine_tokens(&t, Api::Chat, chat), Some(want));
        let no_gen =
            br#"{"messages":[{"role":"user","content":"x"}],"add_generation_prompt":false}"#;
        assert_eq!(
            engine_tokens(&t, Api::Chat, no_gen),
            Some(t.encode_chat("<|user|>\nx\n"))
        );
        // (body, tokens) for completions.
        let cases: [(&[u8], Option<Vec<u32>>); 6] = [
            (
                br#"{"prompt":"hello world"}"#,
                Some(t.encode("hello world")),
            ),
            (br#"{"prompt":["a b","c"]}"#, Some(t.encode("a b"))),
            (br#"{"prompt":[1,2,3]}"#, Some(vec![1, 2, 3])),
            (br#"{"prompt":[[4,5],[6]]}"#, Some(vec![4, 5])),
            (br#"{"prompt":[]}"#, None),
            (br#"{"prompt":{"x":1}}"#, None),
        ];
        for (body, want) in cases {
            let got = engine_tokens(&t, Api::Completions, body);
            assert_eq!(got, want, "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(
            engine_tokens(&t, Api::Completions, br#"{"input":"x"}"#),
            None
        );
        assert_eq!(engine_tokens(&t, Api::Chat, b"not json"), None);
    }
}
