//! Test harness: moto in server mode, a Lambda Runtime API emulator that drives the built function
//! binaries, and a capturing proxy for outgoing AWS requests. Everything binds to 127.0.0.1.
//!
//! A harness that cannot start what a test needs panics: tests fail, they never skip.

pub mod api;
pub mod aws;
pub mod browser;
pub mod cli;
pub mod dev;
pub mod events;
pub mod front;
pub mod gateway;
pub mod keyring;
pub mod leaks;
pub mod moto;
pub mod proxy;
pub mod queue;
pub mod revocations;
pub mod rotation;
pub mod runtime;
pub mod sigv4;
pub mod stub;
pub mod tls;

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The project's Python environment (moto, awscli, cfn-lint), made by `make venv`.
pub fn venv() -> PathBuf {
    let venv = std::env::var_os("KEYSMITH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv"));
    assert!(
        venv.join("bin/moto_server").exists(),
        "{} has no moto_server: run `make venv` (or `make test`, which does it) first",
        venv.display()
    );
    venv
}

/// A function binary built by `cargo build --workspace --bins` (as `make test` does first).
pub fn function_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins` (make test does)",
        path.display()
    );
    path
}

/// Reads an event file from `events/`.
pub fn event(name: &str) -> serde_json::Value {
    let path = repo_root().join("events").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Writes `count` rotation policies that are not due at `now` (due two hours on) straight into
/// the state table with `BatchWriteItem` (25 a call), in the layout `PolicyStore` writes: large
/// test and benchmark data sets. Their secret need not exist.
pub async fn seed_not_due_policies(
    sdk: &aws_config::SdkConfig,
    table: &str,
    count: usize,
    now: chrono::DateTime<chrono::Utc>,
) {
    use chrono::Timelike;
    let later_hour = u8::try_from((now.hour() + 2) % 24).unwrap();
    let names = (0..count).map(|i| (format!("later-{i:04}"), "keysmith/unused".to_owned()));
    seed_policies(sdk, table, names, Some(later_hour), now).await;
}

/// As [`seed_not_due_policies`], for policies `(name, secret_id)` due at `now` unless
/// `rotation_hour_utc` says otherwise.
pub async fn seed_policies(
    sdk: &aws_config::SdkConfig,
    table: &str,
    policies: impl Iterator<Item = (String, String)>,
    rotation_hour_utc: Option<u8>,
    now: chrono::DateTime<chrono::Utc>,
) {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    use keysmith::rotation::policy::Policy;
    let policies: Vec<Policy> = policies
        .map(|(name, secret)| {
            let name = keysmith::names::ProfileName::parse("name", &name).unwrap();
            let body = serde_json::json!({"secret_id": secret, "interval_days": 30});
            let mut p = Policy::parse(name, body.to_string().as_bytes()).unwrap();
            p.rotation_hour_utc = rotation_hour_utc;
            p
        })
        .collect();
    let db = aws_sdk_dynamodb::Client::new(sdk);
    for chunk in policies.chunks(25) {
        let writes = chunk
            .iter()
            .map(|p| {
                let put = PutRequest::builder()
                    .set_item(Some(p.to_item(now)))
                    .build()
                    .unwrap();
                WriteRequest::builder().put_request(put).build()
            })
            .collect();
        let out = db
            .batch_write_item()
            .request_items(table, writes)
            .send()
            .await
            .unwrap();
        assert!(out
            .unprocessed_items
            .unwrap_or_default()
            .values()
            .all(Vec::is_empty));
    }
}
