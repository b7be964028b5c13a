//! A profile's `approval` (SPEC §12): who must say yes before it issues anything, how many of
//! them, how long a request waits and how long a yes lasts, and who may break glass.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::names::{Invalid, PrincipalPattern};

pub const MIN_APPROVALS: (u32, u32) = (1, 5);
pub const REQUEST_TTL: (u32, u32) = (300, 604_800);
pub const GRANT_TTL: (u32, u32) = (60, 86_400);
const DEFAULT_REQUEST_TTL: u32 = 86_400;
const DEFAULT_GRANT_TTL: u32 = 3_600;
const MAX_PATTERNS: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub approvers: Vec<PrincipalPattern>,
    pub min_approvals: u32,
    pub request_ttl_seconds: u32,
    pub grant_ttl_seconds: u32,
    pub break_glass_principals: Vec<PrincipalPattern>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApproval {
    approvers: Option<Vec<String>>,
    min_approvals: Option<i64>,
    request_ttl_seconds: Option<i64>,
    grant_ttl_seconds: Option<i64>,
    break_glass_principals: Option<Vec<String>>,
}

fn patterns(field: &str, list: Option<&[String]>) -> Result<Vec<PrincipalPattern>, Invalid> {
    let list = list.unwrap_or_default();
    if list.len() > MAX_PATTERNS {
        return Err(Invalid::new(
            field,
            format!("may hold at most {MAX_PATTERNS} entries"),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, p)| PrincipalPattern::parse(&format!("{field}[{i}]"), p))
        .collect()
}

fn bounded(
    field: &str,
    v: Option<i64>,
    default: u32,
    (min, max): (u32, u32),
) -> Result<u32, Invalid> {
    let v = v.unwrap_or(i64::from(default));
    u32::try_from(v)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| Invalid::new(field, format!("must be an integer from {min} to {max}")))
}

impl Approval {
    pub(super) fn from_raw(raw: RawApproval) -> Result<Self, Invalid> {
        let approvers = patterns("approval.approvers", raw.approvers.as_deref())?;
        if approvers.is_empty() {
            return Err(Invalid::new(
                "approval.approvers",
                "must name at least one principal pattern: without approvers nothing could ever be approved",
            ));
        }
        Ok(Self {
            approvers,
            min_approvals: bounded(
                "approval.min_approvals",
                raw.min_approvals,
                1,
                MIN_APPROVALS,
            )?,
            request_ttl_seconds: bounded(
                "approval.request_ttl_seconds",
                raw.request_ttl_seconds,
                DEFAULT_REQUEST_TTL,
                REQUEST_TTL,
            )?,
            grant_ttl_seconds: bounded(
                "approval.grant_ttl_seconds",
                raw.grant_ttl_seconds,
                DEFAULT_GRANT_TTL,
                GRANT_TTL,
            )?,
            break_glass_principals: patterns(
                "approval.break_glass_principals",
                raw.break_glass_principals.as_deref(),
            )?,
        })
    }

    /// Whether one of `principals` (a caller's strings) matches an approver pattern.
    pub fn is_approver(&self, principals: &[String]) -> bool {
        any_match(&self.approvers, principals)
    }

    pub fn may_break_glass(&self, principals: &[String]) -> bool {
        any_match(&self.break_glass_principals, principals)
    }

    pub fn to_json(&self) -> Value {
        let strs =
            |p: &[PrincipalPattern]| p.iter().map(|p| p.as_str().to_owned()).collect::<Vec<_>>();
        json!({
            "approvers": strs(&self.approvers),
            "min_approvals": self.min_approvals,
            "request_ttl_seconds": self.request_ttl_seconds,
            "grant_ttl_seconds": self.grant_ttl_seconds,
            "break_glass_principals": strs(&self.break_glass_principals),
        })
    }
}

fn any_match(patterns: &[PrincipalPattern], principals: &[String]) -> bool {
    patterns
        .iter()
        .any(|p| principals.iter().any(|c| p.matches(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Approval, Invalid> {
        Approval::from_raw(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn defaults_and_bounds() {
        let a = parse(json!({"approvers": ["group:ops"]})).unwrap();
        assert_eq!(
            (a.min_approvals, a.request_ttl_seconds, a.grant_ttl_seconds),
            (1, 86_400, 3_600)
        );
        for (field, bad) in [
            (
                "approval.min_approvals",
                json!({"approvers": ["group:a"], "min_approvals": 0}),
            ),
            (
                "approval.min_approvals",
                json!({"approvers": ["group:a"], "min_approvals": 6}),
            ),
            (
                "approval.request_ttl_seconds",
                json!({"approvers": ["group:a"], "request_ttl_seconds": 299}),
            ),
            (
                "approval.request_ttl_seconds",
                json!({"approvers": ["group:a"], "request_ttl_seconds": 604_801}),
            ),
            (
                "approval.grant_ttl_seconds",
                json!({"approvers": ["group:a"], "grant_ttl_seconds": 59}),
            ),
            (
                "approval.grant_ttl_seconds",
                json!({"approvers": ["group:a"], "grant_ttl_seconds": 86_401}),
            ),
            ("approval.approvers", json!({"approvers": []})),
            ("approval.approvers[0]", json!({"approvers": ["*"]})),
            (
                "approval.approvers[0]",
                json!({"approvers": ["arn:aws:iam::*:user/a"]}),
            ),
            (
                "approval.break_glass_principals[0]",
                json!({"approvers": ["group:a"], "break_glass_principals": ["x"]}),
            ),
        ] {
            assert_eq!(parse(bad.clone()).unwrap_err().field, field, "{bad}");
        }
        let a = parse(json!({"approvers": ["group:a"], "min_approvals": 5,
            "request_ttl_seconds": 300, "grant_ttl_seconds": 60}))
        .unwrap();
        assert_eq!(parse(a.to_json()).unwrap(), a);
    }
}
