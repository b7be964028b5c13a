//! Process configuration, read once at start-up (SPEC §2).

use crate::names::{Invalid, PrincipalPattern};

#[derive(Debug, Clone)]
pub struct Config {
    pub state_table: String,
    pub audit_table: String,
    pub admins: Vec<PrincipalPattern>,
    pub sts: StsTarget,
    /// `KEYSMITH_MAX_KEY_AGE_DAYS`: report IAM keys older than this (optional).
    pub max_key_age_days: Option<u32>,
    /// `KEYSMITH_KEY_AGE_DRY_RUN` (default `true`): only report old keys; `false` deactivates them.
    pub key_age_dry_run: bool,
    /// `KEYSMITH_ROTATION_FUNCTION` (optional): the scheduled-rotation function rotate-now invokes
    /// at once; unset, the next scheduled run picks the request up.
    pub rotation_function: Option<String>,
}

/// Where STS calls go. Empty means the SDK's own resolution (region's endpoint, `AWS_ENDPOINT_URL`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StsTarget {
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

impl StsTarget {
    /// A profile's target falls back, field by field, to the global one.
    pub fn or(&self, fallback: &StsTarget) -> StsTarget {
        StsTarget {
            endpoint: self.endpoint.clone().or_else(|| fallback.endpoint.clone()),
            region: self.region.clone().or_else(|| fallback.region.clone()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        // CloudFormation parameters cannot be "absent", so an empty value means unset.
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let required = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));
        let malformed = |name: &'static str| {
            move |e: Invalid| ConfigError::Malformed {
                name,
                reason: e.message,
            }
        };

        let admins = required("KEYSMITH_ADMINS")?
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| PrincipalPattern::parse("KEYSMITH_ADMINS", p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(malformed("KEYSMITH_ADMINS"))?;
        let sts = StsTarget {
            endpoint: get("KEYSMITH_STS_ENDPOINT")
                .map(|e| parse_endpoint("KEYSMITH_STS_ENDPOINT", &e))
                .transpose()
                .map_err(malformed("KEYSMITH_STS_ENDPOINT"))?,
            region: get("KEYSMITH_STS_REGION")
                .map(|r| parse_region("KEYSMITH_STS_REGION", &r))
                .transpose()
                .map_err(malformed("KEYSMITH_STS_REGION"))?,
        };
        let max_key_age_days = get("KEYSMITH_MAX_KEY_AGE_DAYS")
            .map(|v| match v.parse::<u32>() {
                Ok(d) if (1..=3650).contains(&d) => Ok(d),
                _ => Err(ConfigError::Malformed {
                    name: "KEYSMITH_MAX_KEY_AGE_DAYS",
                    reason: "must be a number of days from 1 to 3650".into(),
                }),
            })
            .transpose()?;
        let key_age_dry_run = match get("KEYSMITH_KEY_AGE_DRY_RUN").as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(_) => {
                return Err(ConfigError::Malformed {
                    name: "KEYSMITH_KEY_AGE_DRY_RUN",
                    reason: "must be true or false".into(),
                })
            }
        };
        Ok(Self {
            rotation_function: get("KEYSMITH_ROTATION_FUNCTION"),
            max_key_age_days,
            key_age_dry_run,
            state_table: required("KEYSMITH_STATE_TABLE")?,
            audit_table: required("KEYSMITH_AUDIT_TABLE")?,
            admins,
            sts,
        })
    }

    pub fn is_admin(&self, principals: &[String]) -> bool {
        self.admins
            .iter()
            .any(|a| principals.iter().any(|p| a.matches(p)))
    }
}

/// An STS endpoint URL. Plain `http` is accepted only for loopback (the local emulator): anything
/// else would send signed requests and issued secrets in clear text.
pub fn parse_endpoint(field: &str, s: &str) -> Result<String, Invalid> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| Invalid::new(field, "must be an https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_only = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if host.is_empty() || s.len() > 512 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Invalid::new(field, "must be an https:// URL"));
    }
    let loopback = matches!(host_only, "127.0.0.1" | "localhost" | "[::1]");
    if s.starts_with("http://") && !loopback {
        return Err(Invalid::new(
            field,
            "must use https:// (http is allowed only for loopback)",
        ));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

/// An AWS region name such as `eu-west-1` or `us-gov-west-1`.
pub fn parse_region(field: &str, s: &str) -> Result<String, Invalid> {
    let parts: Vec<&str> = s.split('-').collect();
    let ok = s.len() <= 32
        && parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(Invalid::new(
            field,
            "must be an AWS region such as eu-west-1",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: [(&str, &str); 3] = [
        ("KEYSMITH_STATE_TABLE", "state"),
        ("KEYSMITH_AUDIT_TABLE", "audit"),
        ("KEYSMITH_ADMINS", "arn:aws:iam::1:user/admin, group:ops*"),
    ];

    #[test]
    fn reads_required_and_optional() {
        let c = Config::from_lookup(env(&BASE)).unwrap();
        assert_eq!(c.state_table, "state");
        assert_eq!(c.admins.len(), 2);
        assert!(c.is_admin(&["group:ops-eu".into()]));
        assert!(!c.is_admin(&["arn:aws:iam::1:user/bob".into()]));
        assert_eq!(c.sts, StsTarget::default());
    }

    #[test]
    fn names_the_missing_or_malformed_variable() {
        let err = Config::from_lookup(env(&BASE[..2])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable KEYSMITH_ADMINS is required but not set"
        );
        let mut vars = BASE.to_vec();
        vars.push(("KEYSMITH_STS_ENDPOINT", "ftp://x"));
        let err = Config::from_lookup(env(&vars)).unwrap_err();
        assert!(err.to_string().contains("KEYSMITH_STS_ENDPOINT"), "{err}");
        vars.pop();
        vars.push(("KEYSMITH_MAX_KEY_AGE_DAYS", "0"));
        assert!(Config::from_lookup(env(&vars))
            .unwrap_err()
            .to_string()
            .contains("KEYSMITH_MAX_KEY_AGE_DAYS"));
        vars.pop();
        vars.push(("KEYSMITH_STS_REGION", "mars"));
        assert!(Config::from_lookup(env(&vars))
            .unwrap_err()
            .to_string()
            .contains("KEYSMITH_STS_REGION"));
    }

    #[test]
    fn endpoints_and_regions() {
        assert!(parse_endpoint("e", "https://sts.eu-west-1.amazonaws.com").is_ok());
        assert!(parse_endpoint("e", "http://127.0.0.1:5000").is_ok());
        assert!(parse_endpoint("e", "http://sts.example.com").is_err());
        assert!(parse_endpoint("e", "https://").is_err());
        assert!(parse_region("r", "eu-west-1").is_ok());
        assert!(parse_region("r", "us-gov-west-1").is_ok());
        assert!(parse_region("r", "EU-west-1").is_err());
        assert!(parse_region("r", "eu-west").is_err());
    }
}
