//! What IAM and STS would refuse, refused at `PUT` instead (issue 23): a profile that AWS turns
//! down at every issuance is a `400` naming its field now, not a `201` and then a `502` for each
//! caller. Checked here: the policy grammar of `policy_document` (IAM's `MalformedPolicyDocument`),
//! its size beside Keysmith's own inline policy on lease users (IAM's 2,048 characters per user),
//! and STS's session-tag rules. Pure: nothing here calls AWS.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use crate::names::Invalid;

const FIELD: &str = "policy_document";
/// STS's packed session policy, and IAM's quota on all inline policies of one user together:
/// 2,048 characters, whitespace not counted.
pub const POLICY_LIMIT: usize = 2048;
/// STS takes 50 session tags; Keysmith adds `keysmith:lease` and `keysmith:profile` (SPEC §10).
const TAG_LIMIT: usize = 50 - super::RESERVED_SESSION_TAGS.len();

/// The condition operators IAM knows (IAM JSON policy reference, "Condition operators"), before
/// an `IfExists` suffix or a `ForAllValues:` / `ForAnyValue:` qualifier.
const OPERATORS: &[&str] = &[
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "DateEquals",
    "DateNotEquals",
    "DateLessThan",
    "DateLessThanEquals",
    "DateGreaterThan",
    "DateGreaterThanEquals",
    "Bool",
    "BinaryEquals",
    "IpAddress",
    "NotIpAddress",
    "ArnEquals",
    "ArnLike",
    "ArnNotEquals",
    "ArnNotLike",
    "Null",
];

fn bad(message: impl Into<String>) -> Invalid {
    Invalid::new(FIELD, message)
}

/// Characters IAM counts (whitespace is not).
pub fn policy_size(compact: &str) -> usize {
    compact.chars().filter(|c| !c.is_whitespace()).count()
}

/// `policy_document`: a valid identity / session policy of at most 2,048 characters. Returns its
/// compact JSON.
pub fn policy_document(doc: &Value) -> Result<String, Invalid> {
    let Some(top) = doc.as_object() else {
        return Err(bad(
            "must be an IAM policy document object with a Statement",
        ));
    };
    for key in top.keys() {
        if !["Version", "Id", "Statement"].contains(&key.as_str()) {
            return Err(bad(format!(
                "has an unknown element {key}: a policy has Version, Id and Statement"
            )));
        }
    }
    match top.get("Version") {
        None => {}
        Some(Value::String(v)) if v == "2012-10-17" || v == "2008-10-17" => {}
        Some(_) => return Err(bad("Version must be \"2012-10-17\" (or \"2008-10-17\")")),
    }
    let statements = match top.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect::<Vec<_>>(),
        Some(s @ Value::Object(_)) => vec![s],
        Some(_) => {
            return Err(bad(
                "Statement must be a statement object or a list of them",
            ))
        }
        None => {
            return Err(bad(
                "must be an IAM policy document object with a Statement",
            ))
        }
    };
    let mut sids = HashSet::new();
    for (i, s) in statements.into_iter().enumerate() {
        statement(&format!("Statement[{i}]"), s, &mut sids)?;
    }
    let compact = doc.to_string();
    if policy_size(&compact) > POLICY_LIMIT {
        return Err(bad(format!(
            "must be at most {POLICY_LIMIT} characters without whitespace (the STS and IAM limit)"
        )));
    }
    Ok(compact)
}

fn statement(at: &str, s: &Value, sids: &mut HashSet<String>) -> Result<(), Invalid> {
    let Some(s) = s.as_object() else {
        return Err(bad(format!("{at} must be an object")));
    };
    for key in s.keys() {
        match key.as_str() {
            "Sid" | "Effect" | "Action" | "NotAction" | "Resource" | "NotResource"
            | "Condition" => {}
            "Principal" | "NotPrincipal" => {
                return Err(bad(format!(
                    "{at}.{key}: an identity or session policy names no principal"
                )))
            }
            other => return Err(bad(format!("{at} has an unknown element {other}"))),
        }
    }
    if let Some(sid) = s.get("Sid") {
        let ok = sid
            .as_str()
            .is_some_and(|v| v.chars().all(|c| c.is_ascii_alphanumeric()));
        if !ok {
            return Err(bad(format!("{at}.Sid must be letters and digits only")));
        }
        if !sids.insert(sid.to_string()) {
            return Err(bad(format!("{at}.Sid repeats another statement's Sid")));
        }
    }
    match s.get("Effect").and_then(Value::as_str) {
        Some("Allow" | "Deny") => {}
        _ => return Err(bad(format!("{at}.Effect must be Allow or Deny"))),
    }
    let action = exactly_one(at, s, "Action", "NotAction")?;
    for a in strings(at, action.0, action.1)? {
        let ok = a == "*"
            || a.split_once(':').is_some_and(|(service, name)| {
                !service.is_empty()
                    && !name.is_empty()
                    && service
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
            });
        if !ok {
            return Err(bad(format!(
                "{at}.{}: {a:?} is not an action (service:Name, wildcards allowed, or *)",
                action.0
            )));
        }
    }
    let resource = exactly_one(at, s, "Resource", "NotResource")?;
    for r in strings(at, resource.0, resource.1)? {
        if r != "*" && !r.starts_with("arn:") {
            return Err(bad(format!(
                "{at}.{}: {r:?} is not an ARN or *",
                resource.0
            )));
        }
    }
    if let Some(c) = s.get("Condition") {
        condition(&format!("{at}.Condition"), c)?;
    }
    Ok(())
}

/// The element that must be present, exactly one of `yes` / `no`.
fn exactly_one<'a>(
    at: &str,
    s: &'a serde_json::Map<String, Value>,
    yes: &'static str,
    no: &'static str,
) -> Result<(&'static str, &'a Value), Invalid> {
    match (s.get(yes), s.get(no)) {
        (Some(v), None) => Ok((yes, v)),
        (None, Some(v)) => Ok((no, v)),
        (Some(_), Some(_)) => Err(bad(format!("{at} has both {yes} and {no}"))),
        (None, None) => Err(bad(format!("{at} needs {yes} or {no}"))),
    }
}

fn strings<'a>(at: &str, name: &str, v: &'a Value) -> Result<Vec<&'a str>, Invalid> {
    match v {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad(format!("{at}.{name} must hold strings"))),
        _ => Err(bad(format!(
            "{at}.{name} must be a string or a non-empty list"
        ))),
    }
}

fn condition(at: &str, c: &Value) -> Result<(), Invalid> {
    let Some(ops) = c.as_object() else {
        return Err(bad(format!("{at} must be an object of operators")));
    };
    for (op, keys) in ops {
        let base = op
            .strip_prefix("ForAllValues:")
            .or_else(|| op.strip_prefix("ForAnyValue:"))
            .unwrap_or(op);
        let base = match base.strip_suffix("IfExists") {
            Some(b) if b != "Null" => b,
            _ => base,
        };
        if !OPERATORS.contains(&base) {
            return Err(bad(format!("{at}: {op} is not an IAM condition operator")));
        }
        let Some(keys) = keys.as_object().filter(|k| !k.is_empty()) else {
            return Err(bad(format!("{at}.{op} must map condition keys to values")));
        };
        for (key, values) in keys {
            let scalar = |v: &Value| v.is_string() || v.is_boolean() || v.is_number();
            let ok = !key.is_empty()
                && (scalar(values)
                    || values
                        .as_array()
                        .is_some_and(|a| !a.is_empty() && a.iter().all(scalar)));
            if !ok {
                return Err(bad(format!(
                    "{at}.{op}.{key} must be a value or a non-empty list of values"
                )));
            }
        }
    }
    Ok(())
}

/// An `iam_user` lease's inline policy shares IAM's 2,048 characters per user with Keysmith's
/// own `keysmith-lease-expiry`.
pub fn fits_beside_lease_expiry(compact: &str) -> Result<(), Invalid> {
    let expiry = policy_size(&crate::users::expiry_policy(chrono::Utc::now()));
    let room = POLICY_LIMIT.saturating_sub(expiry);
    if policy_size(compact) > room {
        return Err(bad(format!(
            "must be at most {room} characters without whitespace for iam_user profiles: IAM allows {POLICY_LIMIT} across a user's inline policies, and Keysmith's keysmith-lease-expiry takes {expiry}"
        )));
    }
    Ok(())
}

/// Session tags as STS takes them (STS `Tag`: key 1-128, value 0-256 characters of letters,
/// digits, space separators and `_.:/=+-@`; at most 50 per session, keys unique regardless of
/// case, none starting with `aws:`), less Keysmith's own two and prefix.
pub fn session_tags(
    tags: Option<&BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>, Invalid> {
    let tags = tags.cloned().unwrap_or_default();
    if tags.len() > TAG_LIMIT {
        return Err(Invalid::new(
            "session_tags",
            format!("may hold at most {TAG_LIMIT} tags (STS takes 50; Keysmith adds two)"),
        ));
    }
    // Space separators, not line breaks or tabs (which are control characters).
    let allowed = |c: char| {
        c.is_alphanumeric() || (c.is_whitespace() && !c.is_control()) || "_.:/=+-@".contains(c)
    };
    let mut seen = HashSet::new();
    for (k, v) in &tags {
        let field = format!("session_tags.{k}");
        let lower = k.to_lowercase();
        // Keysmith's own tags name the lease and profile that revocations deny: a profile setting
        // them could make its sessions escape (or fall under) another lease's revocation. Tag keys
        // are case-insensitive in IAM, so the prefix is too.
        if lower.starts_with(super::RESERVED_TAG_PREFIX) {
            return Err(Invalid::new(
                field,
                "keysmith: tag keys are reserved: Keysmith sets keysmith:lease and keysmith:profile itself",
            ));
        }
        if lower.starts_with("aws:") {
            return Err(Invalid::new(field, "the aws: prefix is reserved for AWS"));
        }
        if k.is_empty() || k.chars().count() > 128 || !k.chars().all(allowed) {
            return Err(Invalid::new(
                field,
                "tag keys are 1-128 letters, digits, spaces or _.:/=+-@",
            ));
        }
        if v.chars().count() > 256 || !v.chars().all(allowed) {
            return Err(Invalid::new(
                field,
                "tag values are 0-256 letters, digits, spaces or _.:/=+-@",
            ));
        }
        if !seen.insert(lower) {
            return Err(Invalid::new(
                field,
                "repeats another tag's key: STS compares tag keys regardless of case",
            ));
        }
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(doc: Value) -> String {
        policy_document(&doc).unwrap_err().message
    }

    #[test]
    fn a_valid_policy_passes_compacted() {
        let doc = json!({"Version": "2012-10-17", "Statement": [{"Sid": "Read1", "Effect": "Allow",
            "Action": ["s3:Get*", "s3:List?ucket"], "Resource": "arn:aws:s3:::b/*",
            "Condition": {"ForAnyValue:StringLikeIfExists": {"aws:TagKeys": ["a*"]},
                          "Bool": {"aws:SecureTransport": true}, "Null": {"aws:TokenIssueTime": "false"}}},
            {"Effect": "Deny", "NotAction": "iam:*", "NotResource": ["*"]}]});
        assert_eq!(policy_document(&doc).unwrap(), doc.to_string());
        assert!(policy_document(
            &json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}})
        )
        .is_ok());
    }

    #[test]
    fn what_iam_calls_malformed_is_refused_with_the_place() {
        for (doc, says) in [
            (json!({"Statement": "nonsense"}), "Statement must be"),
            (json!({"Version": "2012-10-18", "Statement": []}), "Version"),
            (
                json!({"Statement": [], "Extra": 1}),
                "unknown element Extra",
            ),
            (
                json!({"Statement": ["x"]}),
                "Statement[0] must be an object",
            ),
            (
                json!({"Statement": [{"Effect": "allow", "Action": "*", "Resource": "*"}]}),
                "Statement[0].Effect",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Resource": "*"}]}),
                "needs Action or NotAction",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "*", "NotAction": "s3:*", "Resource": "*"}]}),
                "both Action and NotAction",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "s3 GetObject", "Resource": "*"}]}),
                "is not an action",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": [], "Resource": "*"}]}),
                "non-empty list",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "*"}]}),
                "needs Resource or NotResource",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "bucket"}]}),
                "is not an ARN",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Principal": "*"}]}),
                "names no principal",
            ),
            (
                json!({"Statement": [{"Sid": "a-b", "Effect": "Allow", "Action": "*", "Resource": "*"}]}),
                "Sid",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringEqual": {"a:b": "c"}}}]}),
                "StringEqual is not an IAM condition operator",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"NullIfExists": {"a:b": "true"}}}]}),
                "not an IAM condition operator",
            ),
            (
                json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"a:b": {}}}}]}),
                "must be a value",
            ),
        ] {
            let message = refused(doc.clone());
            assert!(message.contains(says), "{doc}: {message}");
        }
    }

    #[test]
    fn sizes_count_without_whitespace_and_keysmiths_share() {
        let resource = |n: usize| format!("arn:aws:s3:::{}", "b".repeat(n));
        let doc = |n: usize| json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": resource(n)}]});
        let base = policy_size(&doc(0).to_string());
        assert!(policy_document(&doc(POLICY_LIMIT - base)).is_ok());
        assert!(refused(doc(POLICY_LIMIT - base + 1)).contains("at most 2048"));
        let expiry = policy_size(&crate::users::expiry_policy(chrono::Utc::now()));
        let fits = doc(POLICY_LIMIT - expiry - base).to_string();
        assert!(fits_beside_lease_expiry(&fits).is_ok());
        let over = doc(POLICY_LIMIT - expiry - base + 1).to_string();
        let e = fits_beside_lease_expiry(&over).unwrap_err();
        assert_eq!(e.field, "policy_document");
        assert!(e.message.contains("keysmith-lease-expiry"), "{}", e.message);
    }

    #[test]
    fn session_tags_follow_sts() {
        let tags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(session_tags(Some(&tags(&[
            ("team", "payments"),
            ("cost center", "a:b/c=d+e-f@g")
        ])))
        .is_ok());
        for (pairs, field) in [
            (vec![("aws:team", "x")], "session_tags.aws:team"),
            (vec![("AWS:team", "x")], "session_tags.AWS:team"),
            (vec![("Keysmith:lease", "x")], "session_tags.Keysmith:lease"),
            (vec![("Team", "a"), ("team", "b")], "session_tags.team"),
            (vec![("team", "a\nb")], "session_tags.team"),
            (vec![("te\tam", "a")], "session_tags.te\tam"),
            (vec![("team", "a;b")], "session_tags.team"),
        ] {
            assert_eq!(
                session_tags(Some(&tags(&pairs))).unwrap_err().field,
                field,
                "{pairs:?}"
            );
        }
        let long_key = "k".repeat(129);
        assert!(session_tags(Some(&tags(&[(&long_key, "v")]))).is_err());
        let long_value = "v".repeat(257);
        assert!(session_tags(Some(&tags(&[("k", &long_value)]))).is_err());
        let many: BTreeMap<String, String> =
            (0..49).map(|i| (format!("t{i}"), String::new())).collect();
        assert_eq!(session_tags(Some(&many)).unwrap_err().field, "session_tags");
    }
}
