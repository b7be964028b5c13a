//! One `Deny` of `keysmith-revocations` as a value ([`Entry`]): its statement, how it is read
//! back, and when every credential it can match has expired.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, DurationRound, SecondsFormat, TimeZone, Utc};
use serde_json::{json, Value};

const LEASE_KEY: &str = "aws:PrincipalTag/keysmith:lease";
const PROFILE_KEY: &str = "aws:PrincipalTag/keysmith:profile";
const ISSUE_TIME_KEY: &str = "aws:TokenIssueTime";
const SOURCE_KEY: &str = "aws:SourceIdentity";
const SID_PREFIX: &str = "KeysmithLeasesUntil";
const SID_TIME: &str = "%Y%m%dT%H%M%SZ";
const SID_TIME_LEN: usize = 16;

/// FNV-1a: a short, stable tag of a profile name for a `Sid` (which allows only letters and
/// digits). The profile itself is in the condition; this only keeps `Sid`s unique.
fn sid_tag(profile: &str) -> String {
    let hash = profile.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// What the policy is attached to, which sets its size limit and the longest session it can
/// meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// `assumed_role` sessions (at most 12 hours).
    Role,
    /// A base IAM user: `federation_token` and `session_token` sessions (at most 36 hours).
    User,
}

impl TargetKind {
    /// IAM's quota on all inline policies of one role / user together, in characters without
    /// whitespace (IAM and STS quotas, "IAM object quotas").
    pub fn inline_limit(self) -> usize {
        match self {
            Self::Role => 10_240,
            Self::User => 2_048,
        }
    }

    /// The longest session that can be issued through this target: a cut-off is useless once
    /// every credential issued before it has expired.
    pub fn max_session(self) -> Duration {
        match self {
            Self::Role => Duration::seconds(43_200),
            Self::User => Duration::seconds(129_600),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Role => "role",
            Self::User => "user",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// Leases of `profile` whose credentials have all expired by `until`.
    Leases {
        profile: String,
        until: DateTime<Utc>,
        ids: BTreeSet<String>,
    },
    /// Sessions of `profile` issued before `before`.
    Profile {
        profile: String,
        before: DateTime<Utc>,
    },
    /// Every session token of the user issued before `before`.
    AllTokens { before: DateTime<Utc> },
    /// Untagged sessions whose `aws:SourceIdentity` is one of `sources`, issued before `before`.
    Sources {
        before: DateTime<Utc>,
        sources: BTreeSet<String>,
    },
}

pub(super) fn ceil_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    let floor = t.duration_trunc(Duration::hours(1)).unwrap_or(t);
    if floor < t {
        floor + Duration::hours(1)
    } else {
        floor
    }
}

pub(super) fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => a.iter().map(|s| s.as_str().map(str::to_owned)).collect(),
        _ => None,
    }
}

fn deny_all(statement: &Value) -> bool {
    statement["Effect"] == "Deny" && statement["Action"] == "*" && statement["Resource"] == "*"
}

pub(super) fn entry_of(statement: &Value) -> Option<Entry> {
    if !deny_all(statement) {
        return None;
    }
    let cond = statement["Condition"].as_object()?;
    let equals = cond.get("StringEquals").and_then(Value::as_object);
    let less = cond.get("DateLessThan").and_then(Value::as_object);
    let n_ops = cond.len();
    if let Some(sid) = statement["Sid"].as_str() {
        let rest = sid.strip_prefix(SID_PREFIX)?;
        let until =
            chrono::NaiveDateTime::parse_from_str(rest.get(..SID_TIME_LEN)?, SID_TIME).ok()?;
        let ids = strings(equals?.get(LEASE_KEY)?)?;
        let profile = equals?.get(PROFILE_KEY)?.as_str()?.to_owned();
        return (n_ops == 1 && equals?.len() == 2).then(|| Entry::Leases {
            profile,
            until: Utc.from_utc_datetime(&until),
            ids: ids.into_iter().collect(),
        });
    }
    let before = parse_time(less?.get(ISSUE_TIME_KEY)?)?;
    if less?.len() != 1 {
        return None;
    }
    if let Some(null) = cond.get("Null").and_then(Value::as_object) {
        let untagged = null.len() == 1 && null.get(PROFILE_KEY)? == "true";
        let sources = strings(equals?.get(SOURCE_KEY)?)?;
        return (untagged && n_ops == 3 && equals?.len() == 1).then(|| Entry::Sources {
            before,
            sources: sources.into_iter().collect(),
        });
    }
    match equals {
        None if n_ops == 1 => Some(Entry::AllTokens { before }),
        Some(eq) if n_ops == 2 && eq.len() == 1 => Some(Entry::Profile {
            profile: eq.get(PROFILE_KEY)?.as_str()?.to_owned(),
            before,
        }),
        _ => None,
    }
}

impl Entry {
    pub(super) fn to_statement(&self) -> Value {
        let mut s = json!({"Effect": "Deny", "Action": "*", "Resource": "*"});
        match self {
            Self::Leases {
                profile,
                until,
                ids,
            } => {
                s["Sid"] = json!(format!(
                    "{SID_PREFIX}{}{}",
                    until.format(SID_TIME),
                    sid_tag(profile)
                ));
                s["Condition"] = json!({"StringEquals": {LEASE_KEY: ids, PROFILE_KEY: profile}});
            }
            Self::Profile { profile, before } => {
                s["Condition"] = json!({"StringEquals": {PROFILE_KEY: profile},
                    "DateLessThan": {ISSUE_TIME_KEY: iso(*before)}});
            }
            Self::AllTokens { before } => {
                s["Condition"] = json!({"DateLessThan": {ISSUE_TIME_KEY: iso(*before)}});
            }
            Self::Sources { before, sources } => {
                s["Condition"] = json!({"StringEquals": {SOURCE_KEY: sources},
                    "DateLessThan": {ISSUE_TIME_KEY: iso(*before)},
                    "Null": {PROFILE_KEY: "true"}});
            }
        }
        s
    }

    /// When every credential this entry can match has expired.
    pub(super) fn obsolete_at(&self, kind: TargetKind) -> DateTime<Utc> {
        match self {
            Self::Leases { until, .. } => *until,
            Self::Profile { before, .. }
            | Self::AllTokens { before }
            | Self::Sources { before, .. } => *before + kind.max_session(),
        }
    }
}
