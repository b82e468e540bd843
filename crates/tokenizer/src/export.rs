//! Writes the sim's built-in tokenizer (`cl100k_base` + its fixed chat template) as a Hugging
//! Face tokenizer folder, so benchmark tools that count tokens client-side (aiperf, guidellm,
//! `vllm bench serve`, ...) count exactly what `brix sim` counts.
//!
//! tiktoken ranks become a byte-level BPE: the vocabulary is every rank's bytes through GPT-2's
//! byte-to-unicode table, and each token's merge is the split a BPE limited to lower ranks
//! reaches (the conversion transformers uses), so both encoders agree on ordinary text.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;

use serde_json::{Value, json};
use tiktoken_rs::CoreBPE;

/// cl100k's pre-tokenizer regex in the form every HF backend (onig, fancy-regex) accepts.
const CL100K_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Ordinary ranks of cl100k (0..NUM_RANKS); the special tokens follow.
const NUM_RANKS: u32 = 100_256;

/// cl100k's special tokens and their ids.
const SPECIALS: [(&str, u32); 5] = [
    ("<|endoftext|>", 100_257),
    ("<|fim_prefix|>", 100_258),
    ("<|fim_middle|>", 100_259),
    ("<|fim_suffix|>", 100_260),
    ("<|endofprompt|>", 100_276),
];

/// The sim's fixed chat template (see `Tokenizer::render_chat`) in Jinja.
pub(crate) const CHAT_TEMPLATE: &str = "{% for message in messages %}<|{{ message['role'] }}|>\n\
    {{ message['content'] }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

/// GPT-2's reversible map from bytes to printable characters.
fn byte_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut n = 0;
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            n += 1;
            255 + n
        };
        table[b as usize] = char::from_u32(c).unwrap_or('?');
    }
    table
}

/// The two parts BPE merges into `token` when only ranks below `rank` may be used.
fn merge_of<'a>(
    token: &'a [u8],
    rank: u32,
    ranks: &HashMap<&[u8], u32>,
) -> Option<(&'a [u8], &'a [u8])> {
    let mut parts: Vec<&[u8]> = token.chunks(1).collect();
    while parts.len() > 2 {
        let best = (0..parts.len() - 1)
            .filter_map(|i| {
                let joined = &token
                    [offset(token, parts[i])..offset(token, parts[i + 1]) + parts[i + 1].len()];
                ranks
                    .get(joined)
                    .filter(|&&r| r < rank)
                    .map(|&r| (r, i, joined))
            })
            .min();
        let (_, i, joined) = best?;
        parts[i] = joined;
        parts.remove(i + 1);
    }
    (parts.len() == 2).then(|| (parts[0], parts[1]))
}

/// Where `part` (a subslice of `whole`) starts.
fn offset(whole: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

/// `tokenizer.json` for `bpe` (the cl100k tables).
pub(crate) fn tokenizer_json(bpe: &CoreBPE) -> Value {
    let table = byte_to_unicode();
    let show = |b: &[u8]| b.iter().map(|&x| table[x as usize]).collect::<String>();
    let tokens: Vec<Vec<u8>> = (0..NUM_RANKS)
        .map(|r| bpe.decode_bytes(&[r]).unwrap_or_default())
        .collect();
    let ranks: HashMap<&[u8], u32> = tokens
        .iter()
        .zip(0..)
        .map(|(t, r)| (t.as_slice(), r))
        .collect();
    let mut vocab = serde_json::Map::new();
    let mut merges = Vec::new();
    for (rank, token) in (0..).zip(&tokens) {
        vocab.insert(show(token), json!(rank));
        if token.len() > 1
            && let Some((a, b)) = merge_of(token, rank, &ranks)
        {
            merges.push(json!(format!("{} {}", show(a), show(b))));
        }
    }
    let added: Vec<Value> = SPECIALS
        .iter()
        .map(|(content, id)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": CL100K_PATTERN}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
        ]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": true, "vocab": vocab, "merges": merges}
    })
}

/// Writes `tokenizer.json`, `tokenizer_config.json` (with the chat template), `special_tokens_map.json`
/// and a minimal `config.json` into `dir` (created if missing); `max_model_len` becomes `model_max_length`.
pub(crate) fn write(bpe: &CoreBPE, dir: &Path, max_model_len: u32) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let added: serde_json::Map<String, Value> = SPECIALS
        .iter()
        .map(|(content, id)| {
            (
                id.to_string(),
                json!({"content": content, "single_word": false, "lstrip": false,
                                    "rstrip": false, "normalized": false, "special": true}),
            )
        })
        .collect();
    let config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        "bos_token": null,
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "add_bos_token": false,
        "add_eos_token": false,
        "clean_up_tokenization_spaces": false,
        "model_max_length": max_model_len,
        "chat_template": CHAT_TEMPLATE,
    });
    let model = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 100_277,
        "max_position_embeddings": max_model_len,
        "eos_token_id": 100_257,
        // Without a version, transformers 5 suspects a Mistral tokenizer and warns.
        "transformers_version": "4.57.1",
    });
    let put = |name: &str, v: &Value| fs::write(dir.join(name), serde_json::to_vec_pretty(v)?);
    put("tokenizer.json", &tokenizer_json(bpe))?;
    put("tokenizer_config.json", &config)?;
    put("config.json", &model)?;
    put(
        "special_tokens_map.json",
        &json!({"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}),
    )
}

#[cfg(all(test, feature = "hf-tokenizer"))]
mod tests {
    use super::super::Tokenizer;

    /// Texts that exercise the pre-tokenizer: contractions, digits, punctuation runs,
    /// newlines, runs of spaces, non-Latin scripts and emoji.
    const TEXTS: [&str; 6] = [
        "Hello, world! It's 2026; we'll count 1234567 tokens.",
        "  leading spaces\n\n\ttabs and\r\nCRLF   trailing   ",
        "naïve café — Grüße, 東京タワー, Привет мир, emoji 🚀🔥",
        "fn main() { println!(\"{}\", x[0] + 42); } // code?!",
        "<|user|>\nWhat is the capital of France?\n<|assistant|>\n",
        "",
    ];

    #[test]
    fn exported_folder_counts_what_the_sim_counts() {
        let dir = std::env::temp_dir().join(format!("brix-tok-export-{}", std::process::id()));
        super::super::export_tokenizer(&dir, 4096).unwrap_or_else(|e| panic!("{e}"));
        let builtin = Tokenizer::cl100k().unwrap_or_else(|e| panic!("{e}"));
        let hf = Tokenizer::load(Some(&dir)).unwrap_or_else(|e| panic!("{e}"));
        for text in TEXTS {
            assert_eq!(hf.encode(text), builtin.encode(text), "{text:?}");
            assert_eq!(hf.decode(&builtin.encode(text)), Ok(text.to_string()));
        }
        // The exported chat template renders exactly the built-in fixed one.
        let msgs = || {
            vec![
                ("system", "Be brief.".to_string()),
                ("user", "Hi".to_string()),
            ]
        };
        for add in [true, false] {
            assert_eq!(
                hf.render_chat(msgs(), add),
                builtin.render_chat(msgs(), add)
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
