//! The tokenizer lives in `brix-tokenizer`, shared with the gateway (which must tokenize a
//! request exactly as this engine does); this module adapts its errors to [`SimError`].

use std::path::Path;

pub(crate) use brix_tokenizer::Tokenizer;

use crate::config::SimError;

impl From<brix_tokenizer::Error> for SimError {
    fn from(e: brix_tokenizer::Error) -> Self {
        SimError::Tokenizer(e.0)
    }
}

/// Writes the built-in tokenizer as a Hugging Face tokenizer folder (see
/// [`brix_tokenizer::export_tokenizer`]), for benchmark tools that tokenize client-side.
pub fn export_tokenizer(dir: &Path, max_model_len: u32) -> Result<(), SimError> {
    Ok(brix_tokenizer::export_tokenizer(dir, max_model_len)?)
}
