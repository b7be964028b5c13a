//! The caller, taken from the API Gateway request context only (SPEC §3): nothing in headers,
//! query or body can set it.

use aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The identity recorded in the audit trail: an IAM ARN or `jwt:<sub>`.
    pub principal: String,
    /// Every string `allowed_principals` and `KEYSMITH_ADMINS` patterns are matched against.
    pub principals: Vec<String>,
}

impl Caller {
    /// `claims` are the JWT authorizer's claims as API Gateway sent them (see `HttpEvent`).
    pub fn from_context(
        ctx: &ApiGatewayV2httpRequestContext,
        claims: &Map<String, Value>,
    ) -> Option<Self> {
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
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())?;
        let principal = format!("jwt:{sub}");
        let mut principals = vec![principal.clone()];
        for claim in ["cognito:groups", "groups"] {
            if let Some(groups) = claims.get(claim) {
                principals.extend(groups_of(groups).into_iter().map(|g| format!("group:{g}")));
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

/// Groups exactly as API Gateway sends them (SPEC §3): a native JSON array element by element;
/// the HTTP API's serialization of an array claim, `[a b c]`, split on whitespace; any other
/// string as one group. Never split on commas: `"a,b"` is one group, not two nobody is in.
fn groups_of(claim: &Value) -> Vec<String> {
    let groups = match claim {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Value::String(s) => match s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            Some(inner) => inner.split_whitespace().map(str::to_owned).collect(),
            None => vec![s.clone()],
        },
        _ => Vec::new(),
    };
    groups.into_iter().filter(|g| !g.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(authorizer: Value) -> ApiGatewayV2httpRequestContext {
        serde_json::from_value(json!({"http": {"method": "GET"}, "authorizer": authorizer}))
            .unwrap()
    }

    fn jwt(claims: Value) -> Option<Caller> {
        let Value::Object(claims) = claims else {
            panic!("claims must be an object")
        };
        Caller::from_context(&ctx(json!({"jwt": {"claims": {}}})), &claims)
    }

    #[test]
    fn iam_caller_and_role_form() {
        let none = Map::new();
        let c = Caller::from_context(
            &ctx(json!({"iam": {
            "userArn": "arn:aws:sts::123456789012:assumed-role/Deployers-ci/alice"}})),
            &none,
        )
        .unwrap();
        assert_eq!(
            c.principal,
            "arn:aws:sts::123456789012:assumed-role/Deployers-ci/alice"
        );
        assert_eq!(
            c.principals[1],
            "arn:aws:iam::123456789012:role/Deployers-ci"
        );
        let u = Caller::from_context(
            &ctx(json!({"iam": {"userArn": "arn:aws:iam::1:user/bob"}})),
            &none,
        )
        .unwrap();
        assert_eq!(u.principals, vec!["arn:aws:iam::1:user/bob"]);
    }

    #[test]
    fn jwt_groups_in_the_three_forms_api_gateway_sends() {
        let c = jwt(json!({"sub": "abc", "cognito:groups": "[admins deployers]"})).unwrap();
        assert_eq!(
            c.principals,
            vec!["jwt:abc", "group:admins", "group:deployers"]
        );
        let c = jwt(json!({"sub": "x", "groups": ["a b", "c"]})).unwrap();
        assert_eq!(c.principals, vec!["jwt:x", "group:a b", "group:c"]);
        let c = jwt(json!({"sub": "x", "groups": "a,b"})).unwrap();
        assert_eq!(c.principals, vec!["jwt:x", "group:a,b"]);
        let c = jwt(json!({"sub": "x", "groups": "[a,b c]"})).unwrap();
        assert_eq!(c.principals, vec!["jwt:x", "group:a,b", "group:c"]);
        let c = jwt(json!({"sub": "x", "groups": 7})).unwrap();
        assert_eq!(c.principals, vec!["jwt:x"]);
    }

    #[test]
    fn no_identity() {
        let none: ApiGatewayV2httpRequestContext =
            serde_json::from_value(json!({"http": {"method": "GET"}})).unwrap();
        assert_eq!(Caller::from_context(&none, &Map::new()), None);
        assert_eq!(
            Caller::from_context(&ctx(json!({"iam": {"userArn": ""}})), &Map::new()),
            None
        );
        assert_eq!(jwt(json!({})), None);
        assert_eq!(jwt(json!({"sub": 5})), None);
    }
}
