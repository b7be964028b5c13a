//! The functions' log lines: what `lambda_runtime::tracing::init_default_subscriber` writes (JSON
//! when Lambda's `AWS_LAMBDA_LOG_FORMAT` is `JSON`, no target, no timestamp: Lambda adds one), at
//! the level `AWS_LAMBDA_LOG_LEVEL` (or `RUST_LOG`) names, default `INFO`.
//!
//! Not the runtime's own initialiser: that one parses `RUST_LOG` as per-target directives with
//! `EnvFilter`, whose regex engine alone was a tenth of the API's binary and page faults on every
//! cold start (docs/decisions.md, "Where the last of the cold start goes"). Lambda's logging
//! controls only ever set a level.

use std::str::FromStr;

use tracing_subscriber::filter::LevelFilter;

/// The level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`; anything that is not a level (a
/// directive such as `keysmith=debug`) falls back to `INFO`.
pub fn level(lookup: impl Fn(&str) -> Option<String>) -> LevelFilter {
    lookup("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|| lookup("RUST_LOG"))
        .and_then(|v| LevelFilter::from_str(v.trim()).ok())
        .unwrap_or(LevelFilter::INFO)
}

/// Installs the process's subscriber (once, at the top of `main`).
pub fn init() {
    let env = |k: &str| std::env::var(k).ok();
    let json = env("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let fmt = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .with_max_level(level(env));
    if json {
        fmt.json().init()
    } else {
        fmt.init()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> LevelFilter {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        level(|k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn lambdas_level_wins_then_rust_log_then_info() {
        assert_eq!(from(&[]), LevelFilter::INFO);
        assert_eq!(
            from(&[("AWS_LAMBDA_LOG_LEVEL", "DEBUG")]),
            LevelFilter::DEBUG
        );
        assert_eq!(
            from(&[("AWS_LAMBDA_LOG_LEVEL", "warn"), ("RUST_LOG", "trace")]),
            LevelFilter::WARN
        );
        assert_eq!(from(&[("RUST_LOG", "error")]), LevelFilter::ERROR);
        assert_eq!(from(&[("RUST_LOG", "keysmith=debug")]), LevelFilter::INFO);
    }
}
