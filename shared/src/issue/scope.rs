//! Scope-down (SPEC §16): a request's `session_policy` and `policy_arns`, checked against its
//! profile before anything reaches STS or IAM, so a caller can only narrow what the profile gives.
//!
//! Session policies of one session are evaluated together: a second one could allow what the
//! first did not. So a request's own `session_policy` is taken only by an STS profile that sets no
//! session policy itself (no `policy_document`, no `policy_arns`), where STS intersects it with the
//! role's or base user's permissions: it can only narrow. A lease user's policies add up the same
//! way, so for `iam_user` the request's policy is not attached as written: it becomes an inline
//! `Deny` of everything outside it ([`ScopeDown::user_scope_down`]), under the boundary and beside
//! the profile's own policies — which needs it to be one `Allow` statement of actions and
//! resources, without conditions. `policy_arns` in a request choose a subset of the profile's,
//! for every type but `session_token`.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::names::{Invalid, Policies, PolicyArn};
use crate::profile::{Kind, Profile};

/// STS's limit on an inline session policy, counted without whitespace.
pub const MAX_SESSION_POLICY: usize = 2048;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeDown {
    /// The request's inline policy, compact.
    pub document: Option<String>,
    /// The request's choice among the profile's `policy_arns`.
    pub arns: Option<Vec<PolicyArn>>,
}

impl ScopeDown {
    pub fn parse(
        profile: &Profile,
        session_policy: Option<Value>,
        policy_arns: Option<Vec<String>>,
    ) -> Result<Self, Invalid> {
        if session_policy.is_none() && policy_arns.is_none() {
            return Ok(Self::default());
        }
        let (own, user) = match &profile.kind {
            Kind::SessionToken { .. } => {
                let field = if session_policy.is_some() {
                    "session_policy"
                } else {
                    "policy_arns"
                };
                return Err(Invalid::new(
                    field,
                    "is not used by session_token profiles (GetSessionToken takes no session policy)",
                ));
            }
            Kind::FederationToken { policies, .. } | Kind::AssumedRole { policies, .. } => {
                (policies, false)
            }
            Kind::IamUser { policies, .. } => (policies, true),
        };
        let document = session_policy
            .map(|v| compact("session_policy", v))
            .transpose()?;
        if let (Some(d), true) = (&document, user) {
            // Checked before IAM: a user's inline policies share 2,048 characters.
            let written = deny_outside(d)?;
            let room = profile.scope_down_room();
            if written.chars().count() > room {
                return Err(Invalid::new(
                    "session_policy",
                    format!(
                        "is too large for a lease user: as keysmith-scope-down it takes {} characters, and the user has {room} left of IAM's 2,048 for inline policies (beside keysmith-lease-expiry and the profile's policy_document)",
                        written.chars().count()
                    ),
                ));
            }
        } else if document.is_some() && !own.is_empty() {
            return Err(Invalid::new(
                "session_policy",
                format!(
                    "cannot be used with profile {}: it limits its sessions with its own policy_document or policy_arns, and a second policy could allow more; choose among its policy_arns instead",
                    profile.name
                ),
            ));
        }
        let arns = policy_arns
            .map(|list| {
                let mut chosen: Vec<PolicyArn> = Vec::with_capacity(list.len());
                for a in &list {
                    let arn = PolicyArn::parse("policy_arns", a)?;
                    if !own.arns.contains(&arn) {
                        return Err(Invalid::new(
                            "policy_arns",
                            format!("{a} is not one of the profile's policy_arns"),
                        ));
                    }
                    if chosen.contains(&arn) {
                        return Err(Invalid::new("policy_arns", format!("lists {a} twice")));
                    }
                    chosen.push(arn);
                }
                Ok(chosen)
            })
            .transpose()?;
        Ok(Self { document, arns })
    }

    /// `iam_user`: the inline policy that narrows the lease user to the request's policy — a
    /// `Deny` of every action outside its actions, and of every resource outside its resources.
    pub fn user_scope_down(&self) -> Option<String> {
        self.document.as_deref().and_then(|d| deny_outside(d).ok())
    }

    /// The profile's policies with the request's choice of `policy_arns` (and, for STS types,
    /// its inline policy).
    pub fn policies(&self, profile: &Policies) -> Policies {
        Policies {
            document: self.document.clone().or_else(|| profile.document.clone()),
            arns: self.arns.clone().unwrap_or_else(|| profile.arns.clone()),
        }
    }

    /// Lowercase hex SHA-256 of the request's inline policy, for the lease and the audit item.
    pub fn sha256(&self) -> Option<String> {
        self.document.as_ref().map(|d| {
            Sha256::digest(d.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
    }
}

/// The `Deny` complement of a one-statement `Allow` of actions and resources: together with any
/// policy that allows more, the user can do only what both allow.
fn deny_outside(document: &str) -> Result<String, Invalid> {
    let bad = || {
        Invalid::new(
            "session_policy",
            "for iam_user profiles must be one Allow statement of Action and Resource, without conditions: it narrows the lease user by denying everything outside it",
        )
    };
    let v: Value = serde_json::from_str(document).map_err(|_| bad())?;
    let statement = match &v["Statement"] {
        Value::Array(list) if list.len() == 1 => &list[0],
        s @ Value::Object(_) => s,
        _ => return Err(bad()),
    };
    let Some(fields) = statement.as_object() else {
        return Err(bad());
    };
    let allowed = ["Sid", "Effect", "Action", "Resource"];
    if statement["Effect"] != "Allow" || fields.keys().any(|k| !allowed.contains(&k.as_str())) {
        return Err(bad());
    }
    let list = |v: &Value| match v {
        Value::String(_) => Some(Value::Array(vec![v.clone()])),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
            Some(v.clone())
        }
        _ => None,
    };
    let actions = list(&statement["Action"]).ok_or_else(bad)?;
    let resources = list(&statement["Resource"]).ok_or_else(bad)?;
    let mut statements = vec![serde_json::json!({"Sid": "KeysmithScopeDownActions",
        "Effect": "Deny", "NotAction": actions, "Resource": "*"})];
    if resources != serde_json::json!(["*"]) {
        statements.push(serde_json::json!({"Sid": "KeysmithScopeDownResources",
            "Effect": "Deny", "Action": "*", "NotResource": resources}));
    }
    Ok(serde_json::json!({"Version": "2012-10-17", "Statement": statements}).to_string())
}

/// A policy document (a JSON object, or a string holding one) without whitespace, as STS counts it.
fn compact(field: &str, v: Value) -> Result<String, Invalid> {
    let v = match v {
        Value::String(s) => serde_json::from_str::<Value>(&s)
            .map_err(|e| Invalid::new(field, format!("is not valid JSON: {e}")))?,
        v => v,
    };
    if !v.is_object() || v.get("Statement").is_none() {
        return Err(Invalid::new(
            field,
            "must be an IAM policy document (a JSON object with a Statement)",
        ));
    }
    let text = v.to_string();
    let n = text.chars().count();
    if n > MAX_SESSION_POLICY {
        return Err(Invalid::new(
            field,
            format!("must be at most {MAX_SESSION_POLICY} characters without whitespace (is {n})"),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::ProfileName;
    use serde_json::json;

    fn profile(body: Value) -> Profile {
        Profile::parse(
            ProfileName::parse("n", "p").unwrap(),
            body.to_string().as_bytes(),
        )
        .unwrap()
    }

    fn doc(pad: usize) -> Value {
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
            "Resource": format!("arn:aws:s3:::{}", "b".repeat(pad))}]})
    }

    #[test]
    fn a_session_policy_is_counted_without_whitespace() {
        let open = profile(json!({"credential_type": "assumed_role",
            "role_arn": "arn:aws:iam::123456789012:role/r"}));
        let base = doc(0).to_string().len();
        let fits = ScopeDown::parse(&open, Some(doc(2048 - base)), None).unwrap();
        assert_eq!(fits.document.as_ref().unwrap().len(), 2048);
        assert_eq!(fits.sha256().unwrap().len(), 64);
        let e = ScopeDown::parse(&open, Some(doc(2049 - base)), None).unwrap_err();
        assert_eq!(e.field, "session_policy");
        // Whitespace is not counted; a string holding the document is the same document.
        let spaced = serde_json::to_string_pretty(&doc(2048 - base)).unwrap();
        assert!(spaced.len() > 2048);
        assert_eq!(
            ScopeDown::parse(&open, Some(Value::String(spaced)), None).unwrap(),
            fits
        );
        for bad in [json!("{"), json!([1]), json!({"Version": "2012-10-17"})] {
            assert_eq!(
                ScopeDown::parse(&open, Some(bad), None).unwrap_err().field,
                "session_policy"
            );
        }
    }

    #[test]
    fn a_request_only_narrows_what_its_profile_gives() {
        let listed = "arn:aws:iam::aws:policy/ReadOnlyAccess";
        let limited = profile(json!({"credential_type": "assumed_role",
            "role_arn": "arn:aws:iam::123456789012:role/r",
            "policy_arns": [listed, "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]}));
        // A second inline policy could allow more than the profile's: refused.
        let e = ScopeDown::parse(&limited, Some(doc(0)), None).unwrap_err();
        assert_eq!(e.field, "session_policy");
        let chosen = ScopeDown::parse(&limited, None, Some(vec![listed.into()])).unwrap();
        let Kind::AssumedRole { policies, .. } = &limited.kind else {
            panic!()
        };
        assert_eq!(chosen.policies(policies).arns.len(), 1);
        for bad in [
            vec!["arn:aws:iam::aws:policy/AdministratorAccess".to_owned()],
            vec![listed.to_owned(), listed.to_owned()],
            vec!["nope".to_owned()],
        ] {
            assert_eq!(
                ScopeDown::parse(&limited, None, Some(bad))
                    .unwrap_err()
                    .field,
                "policy_arns"
            );
        }
        // A lease user's scope-down must fit IAM's 2,048 characters of inline policy per user.
        let user = profile(json!({"credential_type": "iam_user",
            "permissions_boundary_arn": "arn:aws:iam::123456789012:policy/b",
            "policy_document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}}));
        let small = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]});
        assert!(ScopeDown::parse(&user, Some(small), None).is_ok());
        let many: Vec<String> = (0..60)
            .map(|i| format!("arn:aws:s3:::bucket-{i:03}/*"))
            .collect();
        let big = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "s3:GetObject", "Resource": many}]});
        assert!(big.to_string().len() <= MAX_SESSION_POLICY);
        let e = ScopeDown::parse(&user, Some(big), None).unwrap_err();
        assert!(e.message.contains("left of IAM's 2,048"), "{}", e.message);
        let token = profile(json!({"credential_type": "session_token", "source_secret_id": "s"}));
        assert_eq!(
            ScopeDown::parse(&token, Some(doc(0)), None)
                .unwrap_err()
                .field,
            "session_policy"
        );
    }
}
