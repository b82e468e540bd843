//! `http(s)://base/`: a directory URL holding `adapter_config.json` and the weights
//! (`adapter_model.safetensors`, else `adapter_model.bin`), as a plain web server or a
//! presigned bucket listing serves them.

use reqwest::Url;

use crate::error::ArtifactError;
use crate::remote::{Listing, RemoteFile};
use crate::verify::{BIN, CONFIG, SAFETENSORS};

/// One `http(s)://` artifact.
pub(crate) struct Http {
    shown: String,
    base: Url,
}

impl Http {
    /// `url` is the whole artifact URL (a query string, such as a signature, is kept on every
    /// file's URL).
    pub(crate) fn new(shown: &str, url: &str) -> Result<Self, ArtifactError> {
        let base = Url::parse(url).map_err(|e| ArtifactError::BadUrl {
            url: shown.to_owned(),
            why: e.to_string(),
        })?;
        crate::net::check_scheme(shown, &base)?;
        Ok(Self {
            shown: shown.to_owned(),
            base,
        })
    }

    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// What the cache remembers this artifact by: the URL itself.
    pub(crate) fn identity(&self) -> String {
        format!("http {}", self.base)
    }

    /// `name` in the base directory.
    pub(crate) fn file_url(&self, name: &str) -> Url {
        let mut url = self.base.clone();
        let path = format!("{}/{name}", self.base.path().trim_end_matches('/'));
        url.set_path(&path);
        url
    }

    /// The config, then the weights (`.safetensors`, falling back to `.bin` on 404).
    pub(crate) fn list(&self) -> Listing {
        let files = vec![
            RemoteFile {
                name: CONFIG.to_owned(),
                url: self.file_url(CONFIG),
                fallback: None,
                size: None,
            },
            RemoteFile {
                name: SAFETENSORS.to_owned(),
                url: self.file_url(SAFETENSORS),
                fallback: Some((BIN.to_owned(), self.file_url(BIN))),
                size: None,
            },
        ];
        Listing {
            files,
            version: None,
        }
    }
}
