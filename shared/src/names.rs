//! Typed values parsed at the edge. Each constructor enforces AWS's (or SPEC's) rules once, so the
//! core never sees an invalid name, ARN or duration.

use std::fmt;

/// A value was refused; `field` names the JSON field or parameter the caller sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

fn char_ok(c: char, extra: &str) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || extra.contains(c)
}

fn chars_ok(s: &str, extra: &str) -> bool {
    s.chars().all(|c| char_ok(c, extra))
}

fn check_len(field: &str, s: &str, min: usize, max: usize) -> Result<(), Invalid> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(Invalid::new(
            field,
            format!("must be {min} to {max} characters long (got {n})"),
        ));
    }
    Ok(())
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$` (SPEC §4).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileName(String);
string_newtype!(ProfileName);

impl ProfileName {
    pub fn parse(field: &str, s: &str) -> Result<Self, Invalid> {
        let first_ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        if !first_ok || s.len() > 64 || !chars_ok(s, ".-") {
            return Err(Invalid::new(
                field,
                "must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

/// Lifetime of issued credentials, in seconds, already checked against the bounds that apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DurationSeconds(u32);

impl DurationSeconds {
    pub const MIN: u32 = 900;
    pub const MAX: u32 = 129_600;

    pub fn parse(field: &str, value: i64, min: u32, max: u32) -> Result<Self, Invalid> {
        if value < i64::from(min) || value > i64::from(max) {
            return Err(Invalid::new(
                field,
                format!("must be between {min} and {max} seconds (got {value})"),
            ));
        }
        // Fits: bounded by `max` above.
        Ok(Self(u32::try_from(value).unwrap_or(max)))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn as_i32(self) -> i32 {
        i32::try_from(self.0).unwrap_or(i32::MAX)
    }
}

/// `arn:<partition>:iam::<account>:role/<path/name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleArn(String);
string_newtype!(RoleArn);

impl RoleArn {
    pub fn parse(field: &str, s: &str) -> Result<Self, Invalid> {
        iam_arn(field, s, "role/", false).map(|_| Self(s.to_owned()))
    }
}

/// `arn:<partition>:iam::<account|aws>:policy/<path/name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyArn(String);
string_newtype!(PolicyArn);

impl PolicyArn {
    pub fn parse(field: &str, s: &str) -> Result<Self, Invalid> {
        iam_arn(field, s, "policy/", true).map(|_| Self(s.to_owned()))
    }
}

fn iam_arn(field: &str, s: &str, resource: &str, aws_owned: bool) -> Result<(), Invalid> {
    let bad = || {
        Invalid::new(
            field,
            format!("must be an IAM ARN like arn:aws:iam::123456789012:{resource}name"),
        )
    };
    if s.len() > 2048 {
        return Err(bad());
    }
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    let [arn, partition, service, region, account, rest] = parts.as_slice() else {
        return Err(bad());
    };
    let account_ok = (account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()))
        || (aws_owned && *account == "aws");
    let name = rest.strip_prefix(resource).unwrap_or_default();
    let ok = *arn == "arn"
        && partition.starts_with("aws")
        && *service == "iam"
        && region.is_empty()
        && account_ok
        && !name.is_empty()
        && !name.ends_with('/')
        && chars_ok(name, "+=,.@-/");
    if ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// A principal pattern from `allowed_principals` or `KEYSMITH_ADMINS` (SPEC §3): `arn:…`, `jwt:…` or
/// `group:…`. Matched component by component like IAM's `ArnLike`: an ARN has six colon-separated
/// components (the sixth, the resource, is everything after the fifth colon), `jwt:`/`group:` two;
/// `*` (any run) and `?` (one character) match within one component and never across one.
/// The account of an ARN pattern is a literal 12-digit id and the kind (`arn`, `jwt`, `group`) is
/// literal too, so no pattern can reach into another account or from one kind of identity into
/// another; a bare `*` is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalPattern(String);
string_newtype!(PrincipalPattern);

/// How many components a principal of each kind has.
fn components_of(kind: &str) -> Option<usize> {
    match kind {
        "arn" => Some(6),
        "jwt" | "group" => Some(2),
        _ => None,
    }
}

impl PrincipalPattern {
    pub fn parse(field: &str, s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        check_len(field, s, 1, 512)?;
        if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(Invalid::new(
                field,
                "must not contain spaces or control characters",
            ));
        }
        let bad = |why: &str| Invalid::new(field, format!("{why} (pattern {s:?})"));
        let kind = s.split(':').next().unwrap_or_default();
        let n = components_of(kind).ok_or_else(|| {
            bad("must start with arn:, jwt: or group: (a bare * or a wildcard kind is not a pattern)")
        })?;
        let parts: Vec<&str> = s.splitn(n, ':').collect();
        if parts.len() != n {
            return Err(bad(
                "an ARN pattern has six colon-separated components: arn:partition:service:region:account:resource",
            ));
        }
        if kind == "arn" {
            let account = parts[4];
            if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
                return Err(bad(
                    "the account component must be a literal 12-digit account id, without wildcards",
                ));
            }
            if [parts[1], parts[2], parts[5]].iter().any(|p| p.is_empty()) {
                return Err(bad("partition, service and resource must not be empty"));
            }
            // Sessions are reported under `sts`, never `iam`: saved, such a pattern would be
            // accepted and then silently match nobody (issue 31).
            let session = ["assumed-role/", "federated-user/"]
                .iter()
                .any(|r| parts[5].starts_with(r));
            if parts[2] == "iam" && session {
                let sts = format!("arn:{}:sts::{}:{}", parts[1], parts[4], parts[5]);
                return Err(Invalid::new(
                    field,
                    format!(
                        "{s} can never match: a session's ARN is an sts ARN, write {sts} (or the role's arn:{}:iam::{}:role/… to allow all its sessions)",
                        parts[1], parts[4]
                    ),
                ));
            }
        }
        if parts[n - 1].is_empty() {
            return Err(bad("must name something after the colon"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn matches(&self, principal: &str) -> bool {
        let kind = self.0.split(':').next().unwrap_or_default();
        let Some(n) = components_of(kind) else {
            return false;
        };
        let pattern: Vec<&str> = self.0.splitn(n, ':').collect();
        let text: Vec<&str> = principal.splitn(n, ':').collect();
        pattern.len() == text.len()
            && pattern.iter().zip(&text).all(|(p, t)| {
                let (p, t): (Vec<char>, Vec<char>) = (p.chars().collect(), t.chars().collect());
                glob(&p, &t)
            })
    }
}

/// Wildcard match of one component (`*` any run, `?` one character), iterative with
/// back-tracking to the last `*`: linear in practice, no recursion.
fn glob(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Characters IAM and STS accept in session names, source identities and user names.
pub(crate) fn sanitize_iam_name(s: &str) -> String {
    s.chars()
        .map(|c| if char_ok(c, "+=,.@-") { c } else { '-' })
        .collect()
}

/// An STS role session name (`[\w+=,.@-]{2,64}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionName(String);
string_newtype!(SessionName);

impl SessionName {
    pub fn parse(field: &str, s: &str) -> Result<Self, Invalid> {
        check_len(field, s, 2, 64)?;
        if !chars_ok(s, "+=,.@-") {
            return Err(Invalid::new(
                field,
                "may contain only letters, digits and +=,.@_-",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// A name that tells CloudTrail who asked: the last segment of the caller's ARN (the person's
    /// session or user name), or the JWT subject.
    pub fn for_caller(principal: &str) -> Self {
        let tail = principal.rsplit(['/', ':']).next().unwrap_or(principal);
        let mut name = sanitize_iam_name(tail);
        if name.len() < 2 {
            name = format!("keysmith-{name}");
        }
        name.truncate(64);
        Self(name)
    }

    /// The name a session of `principal` gets (SPEC §3): always the caller's own name first, a
    /// requested name only after a `.`, the whole at most `max` characters, cut from the requested
    /// end, so no caller can obtain a session named like somebody else. (`for_caller` is ASCII.)
    pub fn owned_by(principal: &str, requested: Option<&SessionName>, max: usize) -> Self {
        let mut name = Self::for_caller(principal).0;
        name.truncate(max);
        if let Some(requested) = requested {
            let room = max.saturating_sub(name.len() + 1);
            if room > 0 {
                name.push('.');
                name.extend(requested.0.chars().take(room));
            }
        }
        Self(name)
    }
}

/// An MFA token code: six digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCode(String);
string_newtype!(TokenCode);

impl TokenCode {
    pub fn parse(field: &str, s: &str) -> Result<Self, Invalid> {
        if s.len() == 6 && s.chars().all(|c| c.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(Invalid::new(
                field,
                "must be the 6-digit code of the MFA device",
            ))
        }
    }
}

/// Checks a free-form AWS identifier against a length range and an allowed character set.
pub(crate) fn aws_id(
    field: &str,
    s: &str,
    min: usize,
    max: usize,
    extra: &str,
) -> Result<String, Invalid> {
    check_len(field, s, min, max)?;
    if !chars_ok(s, extra) {
        return Err(Invalid::new(
            field,
            format!("may contain only letters, digits and _{extra}"),
        ));
    }
    Ok(s.to_owned())
}

/// Session policies: an inline document (kept compact, as STS counts its characters) and managed
/// policy ARNs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policies {
    pub document: Option<String>,
    pub arns: Vec<PolicyArn>,
}

impl Policies {
    pub fn is_empty(&self) -> bool {
        self.document.is_none() && self.arns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names() {
        for ok in ["deploy", "a", "A1_b.c-d", &"x".repeat(64)] {
            assert!(ProfileName::parse("name", ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".x", "a b", "a/b", "é", &"x".repeat(65)] {
            assert_eq!(
                ProfileName::parse("name", bad).unwrap_err().field,
                "name",
                "{bad}"
            );
        }
    }

    #[test]
    fn durations_are_bounded() {
        assert!(DurationSeconds::parse("d", 899, 900, 129_600).is_err());
        assert!(DurationSeconds::parse("d", 129_601, 900, 129_600).is_err());
        assert_eq!(
            DurationSeconds::parse("d", 900, 900, 129_600)
                .unwrap()
                .get(),
            900
        );
        assert_eq!(
            DurationSeconds::parse("d", -1, 900, 43_200)
                .unwrap_err()
                .field,
            "d"
        );
    }

    #[test]
    fn arns() {
        assert!(RoleArn::parse("r", "arn:aws:iam::123456789012:role/keysmith/deploy").is_ok());
        assert!(RoleArn::parse("r", "arn:aws-cn:iam::123456789012:role/x").is_ok());
        for bad in [
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam::12345:role/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:sts::123456789012:role/x",
            "role/x",
        ] {
            assert!(RoleArn::parse("r", bad).is_err(), "{bad}");
        }
        assert!(PolicyArn::parse("p", "arn:aws:iam::aws:policy/ReadOnlyAccess").is_ok());
        assert!(RoleArn::parse("r", "arn:aws:iam::aws:role/x").is_err());
    }

    #[test]
    fn wildcard_patterns() {
        let p = PrincipalPattern::parse("p", "arn:aws:iam::123456789012:role/Deployers*").unwrap();
        assert!(p.matches("arn:aws:iam::123456789012:role/Deployers"));
        assert!(p.matches("arn:aws:iam::123456789012:role/Deployers-ci/x"));
        assert!(!p.matches("arn:aws:iam::123456789012:role/Admins"));
        assert!(!p.matches("arn:aws:iam::999999999999:role/Deployers"));
        let p =
            PrincipalPattern::parse("p", "arn:aws:sts::123456789012:assumed-role/*/alice").unwrap();
        assert!(p.matches("arn:aws:sts::123456789012:assumed-role/Dev/alice"));
        assert!(!p.matches("arn:aws:sts::123456789012:assumed-role/Dev/alice2"));
        let q = PrincipalPattern::parse("p", "arn:aws:iam::123456789012:user/b?b").unwrap();
        assert!(q.matches("arn:aws:iam::123456789012:user/bob"));
        assert!(!q.matches("arn:aws:iam::123456789012:user/bb"));
        let exact = PrincipalPattern::parse("p", "group:admins").unwrap();
        assert!(exact.matches("group:admins") && !exact.matches("group:admins2"));
        // `*` never crosses a component: the service, region and account stay where they are.
        let p = PrincipalPattern::parse("p", "arn:a*:iam::123456789012:user/alice").unwrap();
        assert!(p.matches("arn:aws:iam::123456789012:user/alice"));
        assert!(!p.matches("arn:aws:sts:x:iam::123456789012:user/alice"));
        let g = PrincipalPattern::parse("p", "group:ops*").unwrap();
        assert!(g.matches("group:ops-eu") && !g.matches("jwt:ops"));
    }

    #[test]
    fn patterns_that_reach_too_far_are_refused() {
        for bad in [
            "*",
            "**",
            "*:alice",
            "arn:aws:iam::*:user/alice",
            "arn:aws:iam::12345678901*:user/alice",
            "arn:aws:iam::1:user/alice",
            "arn:*:user/alice",
            "arn:aws:iam:::user/alice",
            "arn:aws:iam::123456789012:",
            "jwt:",
            "user/alice",
            "group:a b",
            "arn:aws:iam::123456789012:assumed-role/Role/alice",
            "arn:aws:iam::123456789012:federated-user/alice",
        ] {
            let err = PrincipalPattern::parse("allowed_principals[0]", bad).unwrap_err();
            assert_eq!(err.field, "allowed_principals[0]", "{bad}");
        }
    }

    #[test]
    fn a_session_pattern_under_iam_names_its_sts_form() {
        let err = PrincipalPattern::parse(
            "allowed_principals[0]",
            "arn:aws:iam::123456789012:assumed-role/Role/alice",
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("arn:aws:sts::123456789012:assumed-role/Role/alice"),
            "{err:?}"
        );
        assert!(
            PrincipalPattern::parse("p", "arn:aws:sts::123456789012:assumed-role/Role/alice")
                .is_ok()
        );
    }

    #[test]
    fn session_names_for_callers() {
        let n =
            SessionName::for_caller("arn:aws:sts::123456789012:assumed-role/Deployers-ci/alice");
        assert_eq!(n.as_str(), "alice");
        assert_eq!(SessionName::for_caller("jwt:a b").as_str(), "a-b");
        assert_eq!(SessionName::for_caller("x").as_str(), "keysmith-x");
        assert!(SessionName::parse("session_name", "a").is_err());
        assert!(SessionName::parse("session_name", "alice/deploy").is_err());
    }

    #[test]
    fn requested_session_names_follow_the_callers() {
        let alice = "arn:aws:sts::123456789012:assumed-role/Deployers-ci/alice";
        let bob = SessionName::parse("s", "bob").unwrap();
        assert_eq!(
            SessionName::owned_by(alice, Some(&bob), 64).as_str(),
            "alice.bob"
        );
        assert_eq!(SessionName::owned_by(alice, None, 64).as_str(), "alice");
        let long = SessionName::parse("s", &"x".repeat(64)).unwrap();
        let n = SessionName::owned_by(alice, Some(&long), 64);
        assert_eq!(n.as_str().len(), 64);
        assert!(n.as_str().starts_with("alice.xxx"));
        assert_eq!(
            SessionName::owned_by(alice, Some(&long), 32).as_str().len(),
            32
        );
        let caller = format!("jwt:{}", "c".repeat(70));
        let n = SessionName::owned_by(&caller, Some(&bob), 64);
        assert_eq!(
            n.as_str(),
            "c".repeat(64),
            "the caller's part is kept whole"
        );
    }

    #[test]
    fn token_codes() {
        assert!(TokenCode::parse("token_code", "123456").is_ok());
        assert!(TokenCode::parse("token_code", "12345a").is_err());
        assert!(TokenCode::parse("token_code", "1234567").is_err());
    }
}
