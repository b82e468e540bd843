//! `brix adapter apply FILE` and `brix adapter delete NAME`: change a running `brix up`'s
//! ModelAdapters through its admin API (`PUT`/`DELETE /brix/adapters/{name}`).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Deserialize;

use crate::up::{Endpoint, UpError, request, runtime, send};

/// Flags of `brix adapter`.
#[derive(Debug, Args)]
pub(crate) struct AdapterArgs {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    endpoint: Endpoint,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Add or replace the ModelAdapter documents of a YAML file (a list, or `---`-separated).
    Apply {
        /// The file.
        file: PathBuf,
    },
    /// Delete a ModelAdapter: it is drained and unloaded from every replica.
    Delete {
        /// Its name.
        name: String,
    },
}

/// Runs `brix adapter`.
pub(crate) fn run(args: AdapterArgs) -> Result<(), UpError> {
    runtime()?.block_on(async {
        let client = reqwest::Client::new();
        match &args.action {
            Action::Apply { file } => {
                let text = std::fs::read_to_string(file).map_err(|e| UpError::Remote {
                    endpoint: file.display().to_string(),
                    why: e.to_string(),
                })?;
                for doc in documents(&text).map_err(|why| UpError::Remote {
                    endpoint: file.display().to_string(),
                    why,
                })? {
                    let name = doc
                        .get("metadata")
                        .and_then(|m| m.get("name"))
                        .and_then(|n| n.as_str())
                        .unwrap_or_default()
                        .to_string();
                    let body = serde_yaml_ng::to_string(&doc).unwrap_or_default();
                    let path = format!("/brix/adapters/{name}");
                    let r = request(&client, &args.endpoint, reqwest::Method::PUT, &path)
                        .header("content-type", "application/yaml")
                        .body(body);
                    let _: serde_json::Value = send(&args.endpoint, r).await?;
                    println!("modeladapter/{name} applied");
                }
            }
            Action::Delete { name } => {
                let path = format!("/brix/adapters/{name}");
                let r = request(&client, &args.endpoint, reqwest::Method::DELETE, &path);
                let _: serde_json::Value = send(&args.endpoint, r).await?;
                println!("modeladapter/{name} deleted (unloading from every replica)");
            }
        }
        Ok(())
    })
}

/// The documents of a YAML text: a top-level list, or `---`-separated documents.
fn documents(text: &str) -> Result<Vec<serde_yaml_ng::Value>, String> {
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = serde_yaml_ng::Value::deserialize(doc).map_err(|e| e.to_string())?;
        match v {
            serde_yaml_ng::Value::Sequence(items) => out.extend(items),
            serde_yaml_ng::Value::Null => {}
            other => out.push(other),
        }
    }
    Ok(out)
}
