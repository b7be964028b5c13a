//! The admin commands (one module each) and what they share: reading a JSON body from a file or
//! standard input, following pages, printing.

pub mod audit;
pub mod keys;
pub mod leases;
pub mod profiles;
pub mod requests;
pub mod revoke;
pub mod rotations;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::client::{encode, Api, ClientError};
use crate::output::Format;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not JSON: {reason}")]
    NotJson { path: PathBuf, reason: String },
    #[error(transparent)]
    Verify(#[from] audit::verify::VerifyError),
}

/// A JSON document from `path` (`-`: standard input).
pub fn read_body(path: &Path) -> Result<Value, AdminError> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|source| AdminError::Read {
        path: path.to_owned(),
        source,
    })?;
    // serde_json's message names the line and column, never the document.
    serde_json::from_str(&text).map_err(|e| AdminError::NotJson {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Every item of a paginated list (`?next=` until `next` is null).
pub async fn all_pages(api: &Api, path: &str, key: &str) -> Result<Vec<Value>, ClientError> {
    let mut items = Vec::new();
    let mut next: Option<String> = None;
    let join = if path.contains('?') { '&' } else { '?' };
    // Bounded: a misbehaving API cannot keep us here forever.
    for _ in 0..10_000 {
        let url = match &next {
            Some(n) => format!("{path}{join}next={}", encode(n)),
            None => path.to_owned(),
        };
        let page = api.call("GET", &url, None).await?;
        if let Some(list) = page[key].as_array() {
            items.extend(list.iter().cloned());
        }
        match page["next"].as_str() {
            Some(n) if next.as_deref() != Some(n) => next = Some(n.to_owned()),
            _ => break,
        }
    }
    Ok(items)
}

/// Prints one object (or, for an empty answer, `done` in a table and `{}` as JSON).
pub fn print_object(value: &Value, format: Format, done: &str) {
    match (value, format) {
        (Value::Null, Format::Table) => println!("{done}"),
        (Value::Null, Format::Json) => println!("{{}}"),
        _ => print!("{}", crate::output::object(value, format)),
    }
}
