//! Process configuration, read once at start-up (SPEC §2).

use crate::names::{Invalid, PolicyArn, PrincipalPattern};

#[derive(Debug, Clone)]
pub struct Config {
    pub state_table: String,
    pub audit_table: String,
    pub admins: Vec<PrincipalPattern>,
    pub sts: StsTarget,
    /// `KEYSMITH_MAX_KEY_AGE_DAYS`: report IAM keys older than this (optional).
    pub max_key_age_days: Option<u32>,
    /// `KEYSMITH_UNUSED_KEY_DAYS` (SPEC §15): also report IAM keys unused this long (optional).
    pub unused_key_days: Option<u32>,
    /// `KEYSMITH_SECRET_ROTATION_FUNCTION_ARN` (optional): secrets whose rotation Lambda is this
    /// are Keysmith's, and the key report never touches their keys.
    pub secret_rotation_function_arn: Option<String>,
    /// `KEYSMITH_CANARY_PROFILE` (optional, SPEC §15): the profile the hourly canary issues from.
    pub canary_profile: Option<crate::names::ProfileName>,
    /// `KEYSMITH_KEY_AGE_DRY_RUN` (default `true`): only report old keys; `false` deactivates them.
    pub key_age_dry_run: bool,
    /// `KEYSMITH_LEASE_BOUNDARY_ARNS`: the permissions boundaries an `iam_user` profile may name
    /// (SPEC §5). Empty (unset) means no `iam_user` profile can be saved or used.
    pub lease_boundary_arns: Vec<PolicyArn>,
    /// `KEYSMITH_ROTATOR_ROLE_ARN` (optional): the role rotations change a user's keys through,
    /// assumed with the rotated secret as session tags (SPEC §18). Unset (local runs), rotations
    /// act with the function's own identity.
    pub rotator_role_arn: Option<String>,
    /// `KEYSMITH_LEASE_GROUP_PATH` (default `/keysmith/`): the IAM path of the groups `iam_user`
    /// profiles may name (the template's `LeaseGroupPath`), checked at `PUT`.
    pub lease_group_path: String,
    /// `KEYSMITH_REVOKER_ROLE_NAME` (optional, SPEC §10a): the role (`[path/]name`) Keysmith
    /// assumes in another account to write a revocation there. Unset, such revocations are
    /// refused with `409` naming the account.
    pub revoker_role_name: Option<String>,
    /// `KEYSMITH_ROTATION_QUEUE_URL` (optional, SPEC §14): RotationQueue. Set, the scheduled run
    /// and rotate-now enqueue rotations for the queue's workers; unset, the run rotates inline and
    /// rotate-now leaves the request to the next run.
    pub rotation_queue_url: Option<String>,
    /// SPEC §13: sealing the audit trail.
    pub seal: SealConfig,
}

/// SPEC §13: `KEYSMITH_AUDIT_SIGNING_KEY` (optional: unset, sealing is off and says so),
/// `KEYSMITH_AUDIT_ARCHIVE_BUCKET` (optional: unset, checkpoints stay in the state table only),
/// `KEYSMITH_AUDIT_PERIOD_SECONDS` (default 300) and `KEYSMITH_AUDIT_SEAL_LAG_SECONDS` (120).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealConfig {
    pub signing_key: Option<String>,
    pub archive_bucket: Option<String>,
    pub period_seconds: u32,
    pub lag_seconds: u32,
}

impl Default for SealConfig {
    fn default() -> Self {
        Self {
            signing_key: None,
            archive_bucket: None,
            period_seconds: 300,
            lag_seconds: 120,
        }
    }
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
        // "," or " , " would start with nobody able to administer Keysmith.
        if admins.is_empty() {
            return Err(ConfigError::Malformed {
                name: "KEYSMITH_ADMINS",
                reason: "names no admin principal pattern".into(),
            });
        }
        let rotator_role_arn = get("KEYSMITH_ROTATOR_ROLE_ARN")
            .map(|arn| {
                let role = arn.split(':').nth(5).unwrap_or_default();
                if arn.starts_with("arn:")
                    && arn.split(':').count() == 6
                    && role.starts_with("role/")
                {
                    Ok(arn)
                } else {
                    Err(ConfigError::Malformed {
                        name: "KEYSMITH_ROTATOR_ROLE_ARN",
                        reason: "must be an IAM role ARN".into(),
                    })
                }
            })
            .transpose()?;
        let lease_group_path =
            get("KEYSMITH_LEASE_GROUP_PATH").unwrap_or_else(|| "/keysmith/".to_owned());
        if !(lease_group_path.starts_with('/') && lease_group_path.ends_with('/')) {
            return Err(ConfigError::Malformed {
                name: "KEYSMITH_LEASE_GROUP_PATH",
                reason: "must be an IAM path that starts and ends with /".into(),
            });
        }
        let sts = parse_sts_target(
            (
                "KEYSMITH_STS_ENDPOINT",
                get("KEYSMITH_STS_ENDPOINT").as_deref(),
            ),
            ("KEYSMITH_STS_REGION", get("KEYSMITH_STS_REGION").as_deref()),
        )
        .map_err(|e| ConfigError::Malformed {
            name: if e.field == "KEYSMITH_STS_REGION" {
                "KEYSMITH_STS_REGION"
            } else {
                "KEYSMITH_STS_ENDPOINT"
            },
            reason: e.message,
        })?;
        // An optional whole number within the rule (`ok`), or the variable named as malformed.
        let number = |name: &'static str, ok: fn(u32) -> bool, rule: &str| {
            get(name)
                .map(|v| match v.parse::<u32>() {
                    Ok(n) if ok(n) => Ok(n),
                    _ => Err(ConfigError::Malformed {
                        name,
                        reason: rule.to_owned(),
                    }),
                })
                .transpose()
        };
        let days = |d: u32| (1..=3650).contains(&d);
        let days_rule = "must be a number of days from 1 to 3650";
        let max_key_age_days = number("KEYSMITH_MAX_KEY_AGE_DAYS", days, days_rule)?;
        let unused_key_days = number("KEYSMITH_UNUSED_KEY_DAYS", days, days_rule)?;
        let canary_profile = get("KEYSMITH_CANARY_PROFILE")
            .map(|p| crate::names::ProfileName::parse("KEYSMITH_CANARY_PROFILE", &p))
            .transpose()
            .map_err(malformed("KEYSMITH_CANARY_PROFILE"))?;
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
        let lease_boundary_arns = get("KEYSMITH_LEASE_BOUNDARY_ARNS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| PolicyArn::parse("KEYSMITH_LEASE_BOUNDARY_ARNS", a))
            .collect::<Result<Vec<_>, _>>()
            .map_err(malformed("KEYSMITH_LEASE_BOUNDARY_ARNS"))?;
        let revoker_role_name = get("KEYSMITH_REVOKER_ROLE_NAME")
            .map(|r| parse_role_path_name(&r))
            .transpose()
            .map_err(|reason| ConfigError::Malformed {
                name: "KEYSMITH_REVOKER_ROLE_NAME",
                reason,
            })?;
        let rotation_queue_url = get("KEYSMITH_ROTATION_QUEUE_URL")
            .map(|u| match url::Url::parse(&u) {
                Ok(p) if matches!(p.scheme(), "https" | "http") && p.host().is_some() => Ok(u),
                _ => Err(ConfigError::Malformed {
                    name: "KEYSMITH_ROTATION_QUEUE_URL",
                    reason: "must be an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)".into(),
                }),
            })
            .transpose()?;
        let defaults = SealConfig::default();
        let seal = SealConfig {
            signing_key: get("KEYSMITH_AUDIT_SIGNING_KEY"),
            archive_bucket: get("KEYSMITH_AUDIT_ARCHIVE_BUCKET"),
            // Periods never straddle midnight, so a period's items sit in one day's partitions.
            period_seconds: number(
                "KEYSMITH_AUDIT_PERIOD_SECONDS",
                |n| n > 0 && 86_400 % n == 0,
                "must be a number of seconds from 1 to 86400 that divides a day (300 is five minutes)",
            )?
            .unwrap_or(defaults.period_seconds),
            lag_seconds: number(
                "KEYSMITH_AUDIT_SEAL_LAG_SECONDS",
                |n| n <= 3_600,
                "must be a number of seconds from 0 to 3600",
            )?
            .unwrap_or(defaults.lag_seconds),
        };
        Ok(Self {
            unused_key_days,
            canary_profile,
            secret_rotation_function_arn: get("KEYSMITH_SECRET_ROTATION_FUNCTION_ARN"),
            seal,
            rotation_queue_url,
            revoker_role_name,
            lease_boundary_arns,
            rotator_role_arn,
            lease_group_path,
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

/// A role's `[path/]name` as it follows `:role/` in its ARN: IAM's characters, a name of at most
/// 64 and a whole of at most 512.
fn parse_role_path_name(s: &str) -> Result<String, String> {
    let s = s.trim_matches('/');
    let name = s.rsplit('/').next().unwrap_or_default();
    let ok = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c);
    if name.is_empty()
        || name.len() > 64
        || s.len() > 512
        || !s.split('/').all(|p| !p.is_empty() && p.chars().all(ok))
    {
        return Err(
            "must be a role name, optionally with its path (keysmith/keysmith-revoker)".into(),
        );
    }
    Ok(s.to_owned())
}

/// An STS endpoint URL (SPEC §5), parsed with a real URL parser: `https`, or plain `http` only for
/// a literal loopback host (the local emulator) — anything else would send the signed request and
/// the issued secrets in clear text; no user-info (`http://localhost:80@evil.example` is a request
/// to `evil.example`), query or fragment.
pub fn parse_endpoint(field: &str, s: &str) -> Result<String, Invalid> {
    let bad = |why: &str| Invalid::new(field, why.to_owned());
    if s.len() > 512 {
        return Err(bad("must be at most 512 characters"));
    }
    let url = url::Url::parse(s).map_err(|_| bad("must be an https:// URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain user information (user@host)"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or a fragment"));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        Some(url::Host::Domain(d)) => d == "localhost",
        None => return Err(bad("must be an https:// URL with a host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(bad(
                "must use https:// (http is allowed only for 127.0.0.1, [::1] and localhost)",
            ))
        }
        _ => return Err(bad("must be an https:// URL")),
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Whether `endpoint` is one of STS's own names, `sts.amazonaws.com` or
/// `sts.<region>.amazonaws.com[.cn]`, from which the SDK knows the signing region. Any other host
/// (a VPC endpoint, a proxy, the emulator) needs an explicit region.
pub fn is_sts_host(endpoint: &str) -> bool {
    let Ok(url) = url::Url::parse(endpoint) else {
        return false;
    };
    let Some(url::Host::Domain(host)) = url.host() else {
        return false;
    };
    if host == "sts.amazonaws.com" {
        return true;
    }
    host.strip_prefix("sts.")
        .and_then(|h| {
            h.strip_suffix(".amazonaws.com")
                .or_else(|| h.strip_suffix(".amazonaws.com.cn"))
        })
        .is_some_and(|region| parse_region("", region).is_ok())
}

/// An endpoint and its region, checked together: a host that is not STS's own needs the region.
pub fn parse_sts_target(
    (endpoint_field, endpoint): (&str, Option<&str>),
    (region_field, region): (&str, Option<&str>),
) -> Result<StsTarget, Invalid> {
    let endpoint = endpoint
        .map(|e| parse_endpoint(endpoint_field, e))
        .transpose()?;
    let region = region.map(|r| parse_region(region_field, r)).transpose()?;
    if let (Some(e), None) = (&endpoint, &region) {
        if !is_sts_host(e) {
            return Err(Invalid::new(
                region_field,
                format!(
                    "is required with {endpoint_field} {e}: only sts.amazonaws.com and sts.<region>.amazonaws.com name their signing region"
                ),
            ));
        }
    }
    Ok(StsTarget { endpoint, region })
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
        (
            "KEYSMITH_ADMINS",
            "arn:aws:iam::123456789012:user/admin, group:ops*",
        ),
    ];

    #[test]
    fn reads_required_and_optional() {
        let c = Config::from_lookup(env(&BASE)).unwrap();
        assert_eq!(c.state_table, "state");
        assert_eq!(c.admins.len(), 2);
        assert!(c.is_admin(&["group:ops-eu".into()]));
        assert!(!c.is_admin(&["arn:aws:iam::123456789012:user/bob".into()]));
        assert_eq!(c.sts, StsTarget::default());
        assert!(c.lease_boundary_arns.is_empty());
    }

    #[test]
    fn lease_boundaries_are_policy_arns() {
        let mut vars = BASE.to_vec();
        vars.push((
            "KEYSMITH_LEASE_BOUNDARY_ARNS",
            "arn:aws:iam::123456789012:policy/keysmith/lease-boundary, arn:aws:iam::123456789012:policy/b",
        ));
        let c = Config::from_lookup(env(&vars)).unwrap();
        let arns: Vec<&str> = c
            .lease_boundary_arns
            .iter()
            .map(PolicyArn::as_str)
            .collect();
        assert_eq!(
            arns,
            [
                "arn:aws:iam::123456789012:policy/keysmith/lease-boundary",
                "arn:aws:iam::123456789012:policy/b"
            ]
        );
        vars.pop();
        vars.push((
            "KEYSMITH_LEASE_BOUNDARY_ARNS",
            "arn:aws:iam::123456789012:role/x",
        ));
        let err = Config::from_lookup(env(&vars)).unwrap_err().to_string();
        assert!(err.contains("KEYSMITH_LEASE_BOUNDARY_ARNS"), "{err}");
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
    fn a_rotator_role_is_an_iam_role_arn() {
        let mut vars = BASE.to_vec();
        vars.push((
            "KEYSMITH_ROTATOR_ROLE_ARN",
            "arn:aws:iam::123456789012:role/keysmith-rotator/r",
        ));
        let c = Config::from_lookup(env(&vars)).unwrap();
        assert_eq!(
            c.rotator_role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/keysmith-rotator/r")
        );
        vars.pop();
        vars.push((
            "KEYSMITH_ROTATOR_ROLE_ARN",
            "arn:aws:iam::123456789012:user/x",
        ));
        let err = Config::from_lookup(env(&vars)).unwrap_err().to_string();
        assert!(err.contains("KEYSMITH_ROTATOR_ROLE_ARN"), "{err}");
        assert_eq!(
            Config::from_lookup(env(&BASE)).unwrap().rotator_role_arn,
            None
        );
    }

    #[test]
    fn admins_that_name_nobody_stop_the_start() {
        for admins in [",", " , ", ",,"] {
            let mut vars = BASE.to_vec();
            vars[2] = ("KEYSMITH_ADMINS", admins);
            let err = Config::from_lookup(env(&vars)).unwrap_err().to_string();
            assert_eq!(
                err, "environment variable KEYSMITH_ADMINS is malformed: names no admin principal pattern",
                "{admins:?}"
            );
        }
    }

    #[test]
    fn admins_that_reach_too_far_stop_the_start() {
        for admins in [
            "*",
            "arn:aws:iam::*:user/admin",
            "arn:*:user/admin",
            "arn:aws:iam::123456789012:user/admin,*",
        ] {
            let mut vars = BASE.to_vec();
            vars[2] = ("KEYSMITH_ADMINS", admins);
            let err = Config::from_lookup(env(&vars)).unwrap_err().to_string();
            assert!(
                err.starts_with("environment variable KEYSMITH_ADMINS is malformed"),
                "{admins}: {err}"
            );
        }
    }

    #[test]
    fn endpoints_that_leave_loopback_or_hide_their_host_are_refused() {
        for bad in [
            "http://localhost:80@evil.example",
            "http://127.0.0.1:80@evil.example",
            "https://user@sts.amazonaws.com",
            "https://user:pw@sts.amazonaws.com",
            "http://127.0.0.1.evil.example",
            "http://localhost.evil.example:5000",
            "http://sts.example.com",
            "https://sts.amazonaws.com/?x=1",
            "https://sts.amazonaws.com/#f",
            "ftp://127.0.0.1",
            "https://",
            "sts.amazonaws.com",
        ] {
            assert_eq!(
                parse_endpoint("sts_endpoint", bad).unwrap_err().field,
                "sts_endpoint",
                "{bad}"
            );
        }
        for ok in [
            "https://sts.eu-west-1.amazonaws.com",
            "http://127.0.0.1:5000",
            "http://[::1]:5000",
            "http://localhost:5000",
            "https://vpce-1.sts.eu-west-1.vpce.amazonaws.com",
        ] {
            assert!(parse_endpoint("sts_endpoint", ok).is_ok(), "{ok}");
        }
        assert!(is_sts_host("https://sts.amazonaws.com"));
        assert!(is_sts_host("https://sts.cn-north-1.amazonaws.com.cn"));
        assert!(!is_sts_host("https://sts.evil.com"));
        assert!(!is_sts_host("http://127.0.0.1:5000"));
        let region_needed = parse_sts_target(
            ("sts_endpoint", Some("http://127.0.0.1:5000")),
            ("sts_region", None),
        )
        .unwrap_err();
        assert_eq!(region_needed.field, "sts_region");
        let mut vars = BASE.to_vec();
        vars.push(("KEYSMITH_STS_ENDPOINT", "http://127.0.0.1:5000"));
        let err = Config::from_lookup(env(&vars)).unwrap_err().to_string();
        assert!(err.contains("KEYSMITH_STS_REGION"), "{err}");
    }

    #[test]
    fn endpoints_and_regions() {
        assert!(parse_endpoint("e", "https://").is_err());
        assert!(parse_region("r", "eu-west-1").is_ok());
        assert!(parse_region("r", "us-gov-west-1").is_ok());
        assert!(parse_region("r", "EU-west-1").is_err());
        assert!(parse_region("r", "eu-west").is_err());
    }
}
