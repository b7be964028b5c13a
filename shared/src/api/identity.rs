//! The caller, taken from the API Gateway request context only (SPEC §3): nothing in headers,
//! query or body can set it.

use aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The identity recorded in the audit trail: an IAM ARN or `jwt:<sub>`.
    pub principal: String,
    /// Every string `allowed_principals` and `KEYSMITH_ADMINS` patterns are matched against.
    pub principals: Vec<String>,
}

impl Caller {
    pub fn from_context(ctx: &ApiGatewayV2httpRequestContext) -> Option<Self> {
        let authorizer = ctx.authorizer.as_ref()?;
        if let Some(arn) = authorizer
            .iam
            .as_ref()
            .and_then(|iam| iam.user_arn.as_deref())
            .filter(|a| !a.is_empty())
        {
            let mut principals = vec![arn.to_owned()];
            principals.extend(role_of_session(arn));
            return Some(Self {
                principal: arn.to_owned(),
                principals,
            });
        }
        let claims = &authorizer.jwt.as_ref()?.claims;
        let sub = claims.get("sub").filter(|s| !s.is_empty())?;
        let principal = format!("jwt:{sub}");
        let mut principals = vec![principal.clone()];
        for claim in ["cognito:groups", "groups"] {
            if let Some(groups) = claims.get(claim) {
                principals.extend(parse_groups(groups).map(|g| format!("group:{g}")));
            }
        }
        Some(Self {
            principal,
            principals,
        })
    }
}

/// Callers through a role arrive as `arn:aws:sts::<acct>:assumed-role/<role>/<session>`; admins
/// write patterns over the role's ARN, `arn:aws:iam::<acct>:role/<role>`, so both are matched.
/// (The role's path is not in the session ARN: patterns over pathed roles should use `*`.)
fn role_of_session(arn: &str) -> Option<String> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("sts::")?;
    let (account, resource) = rest.split_once(':')?;
    let role = resource.strip_prefix("assumed-role/")?.split('/').next()?;
    Some(format!("arn:{partition}:iam::{account}:role/{role}"))
}

/// HTTP APIs flatten array claims into a string: `[a b]`, `["a","b"]` or `a,b` depending on the
/// issuer; all three are read.
fn parse_groups(raw: &str) -> impl Iterator<Item = &str> {
    raw.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split([',', ' '])
        .map(|g| g.trim().trim_matches('"'))
        .filter(|g| !g.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(authorizer: serde_json::Value) -> ApiGatewayV2httpRequestContext {
        serde_json::from_value(json!({"http": {"method": "GET"}, "authorizer": authorizer}))
            .unwrap()
    }

    #[test]
    fn iam_caller_and_role_form() {
        let c = Caller::from_context(&ctx(json!({"iam": {
            "userArn": "arn:aws:sts::123456789012:assumed-role/Deployers-ci/alice"}})))
        .unwrap();
        assert_eq!(
            c.principal,
            "arn:aws:sts::123456789012:assumed-role/Deployers-ci/alice"
        );
        assert_eq!(
            c.principals[1],
            "arn:aws:iam::123456789012:role/Deployers-ci"
        );
        let u = Caller::from_context(&ctx(json!({"iam": {"userArn": "arn:aws:iam::1:user/bob"}})))
            .unwrap();
        assert_eq!(u.principals, vec!["arn:aws:iam::1:user/bob"]);
    }

    #[test]
    fn jwt_caller_with_groups() {
        let c = Caller::from_context(&ctx(json!({"jwt": {"claims": {
            "sub": "abc", "cognito:groups": "[admins deployers]"}, "scopes": null}})))
        .unwrap();
        assert_eq!(
            c.principals,
            vec!["jwt:abc", "group:admins", "group:deployers"]
        );
        let c = Caller::from_context(&ctx(
            json!({"jwt": {"claims": {"sub": "x", "groups": "[\"a\",\"b\"]"}}}),
        ))
        .unwrap();
        assert_eq!(c.principals, vec!["jwt:x", "group:a", "group:b"]);
    }

    #[test]
    fn no_identity() {
        let none: ApiGatewayV2httpRequestContext =
            serde_json::from_value(json!({"http": {"method": "GET"}})).unwrap();
        assert_eq!(Caller::from_context(&none), None);
        assert_eq!(
            Caller::from_context(&ctx(json!({"iam": {"userArn": ""}}))),
            None
        );
        assert_eq!(
            Caller::from_context(&ctx(json!({"jwt": {"claims": {}}}))),
            None
        );
    }
}
