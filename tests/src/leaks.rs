//! The secret-leak scan: every secret a test sees issued or rotated is recorded here, and every
//! captured function log and every error body is checked against all of them (per test binary).

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde_json::Value;

static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

const SECRET_FIELDS: [&str; 4] = [
    "secret_access_key",
    "session_token",
    "SecretAccessKey",
    "SessionToken",
];

/// Records the secrets in a response or secret value (any depth; JSON strings holding JSON too).
pub fn record_from(value: &Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v.as_str() {
                    // Short values are test placeholders, not issued secrets.
                    Some(s) if SECRET_FIELDS.contains(&k.as_str()) && s.len() >= 16 => {
                        seen().insert(s.to_owned());
                    }
                    Some(s) if s.starts_with('{') => {
                        if let Ok(inner) = serde_json::from_str::<Value>(s) {
                            record_from(&inner);
                        }
                    }
                    _ => record_from(v),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(record_from),
        _ => {}
    }
}

/// Fails if any recorded secret appears in `text`.
pub fn check(text: &str, what: &str) {
    let found = seen().iter().find(|s| text.contains(s.as_str())).cloned();
    if let Some(secret) = found {
        panic!(
            "an issued or rotated secret ({}…) appears in {what}",
            &secret[..4]
        );
    }
}

/// The registry, still usable after a test that failed while holding it.
fn seen() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    SEEN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "appears in a function's logs")]
    fn a_recorded_secret_in_a_log_fails_the_scan() {
        record_from(
            &serde_json::json!({"body": "{\"secret_access_key\": \"wJalrXUtnFEMIK7MDENGbPxRfiCYzz\"}"}),
        );
        check(
            "INFO issued wJalrXUtnFEMIK7MDENGbPxRfiCYzz",
            "a function's logs",
        );
    }

    #[test]
    fn placeholders_and_clean_text_pass() {
        record_from(&serde_json::json!({"secret_access_key": "test"}));
        check("a log line with test in it", "a function's logs");
    }
}
