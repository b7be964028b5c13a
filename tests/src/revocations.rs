//! Helpers of the revocation tests: the `keysmith-revocations` policy as IAM holds it.

use aws_sdk_iam::Client as Iam;
use serde_json::Value;

pub const POLICY: &str = "keysmith-revocations";

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub fn decode(text: &str) -> Value {
    let text = if text.starts_with('{') {
        text.to_owned()
    } else {
        crate::proxy::percent_decode(text)
    };
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

pub async fn role_policy(iam: &Iam, role: &str) -> Option<Value> {
    match iam
        .get_role_policy()
        .role_name(role)
        .policy_name(POLICY)
        .send()
        .await
    {
        Ok(out) => Some(decode(&out.policy_document)),
        Err(e) => {
            let code = e.as_service_error().and_then(|s| s.meta().code());
            assert_eq!(code, Some("NoSuchEntity"), "{e:?}");
            None
        }
    }
}

/// The lease ids a policy denies by `aws:PrincipalTag/keysmith:lease`.
pub fn denied_leases(policy: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    for s in policy["Statement"].as_array().unwrap() {
        assert_eq!(s["Effect"], "Deny");
        assert_eq!(s["Action"], "*");
        assert_eq!(s["Resource"], "*");
        match &s["Condition"]["StringEquals"]["aws:PrincipalTag/keysmith:lease"] {
            Value::Array(a) => ids.extend(a.iter().map(|v| v.as_str().unwrap().to_owned())),
            Value::String(v) => ids.push(v.clone()),
            _ => {}
        }
    }
    ids
}
