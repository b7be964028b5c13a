//! A profile body parsed once into [`Profile`]: every field checked against its credential type.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::*;
use crate::json::parse_json;

/// The wire shape. Unknown fields are refused so that a typo is a `400`, not a silently ignored
/// setting.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Option<String>,
    credential_type: String,
    description: Option<String>,
    source_secret_id: Option<String>,
    role_arn: Option<String>,
    role_arns: Option<Vec<String>>,
    external_id: Option<String>,
    policy_document: Option<Value>,
    policy_arns: Option<Vec<String>>,
    session_tags: Option<BTreeMap<String, String>>,
    iam_groups: Option<Vec<String>>,
    permissions_boundary_arn: Option<String>,
    user_path: Option<String>,
    username_template: Option<String>,
    mfa_serial_number: Option<String>,
    default_duration_seconds: Option<i64>,
    max_duration_seconds: Option<i64>,
    sts_endpoint: Option<String>,
    sts_region: Option<String>,
    sts_fallback_endpoints: Option<Vec<String>>,
    sts_fallback_regions: Option<Vec<String>>,
    allowed_principals: Option<Vec<String>>,
    max_active_leases: Option<i64>,
    enabled: Option<bool>,
    approval: Option<super::approval::RawApproval>,
}

impl Profile {
    /// Parses a profile body for `name`. A `name` inside the body, if any, must agree with the path.
    pub fn parse(name: ProfileName, body: &[u8]) -> Result<Self, Invalid> {
        let raw: RawProfile = parse_json(body)?;
        Self::from_raw(name, raw)
    }

    fn from_raw(name: ProfileName, raw: RawProfile) -> Result<Self, Invalid> {
        if let Some(n) = &raw.name {
            if n != name.as_str() {
                return Err(Invalid::new(
                    "name",
                    "must match the profile name in the path",
                ));
            }
        }
        let ty = CredentialType::parse(&raw.credential_type)?;
        let forbid = |field: &str, present: bool| {
            if present {
                Err(Invalid::new(
                    field,
                    format!("is not used by {} profiles", ty.as_str()),
                ))
            } else {
                Ok(())
            }
        };
        let secret_id = |required: bool| -> Result<Option<String>, Invalid> {
            match raw.source_secret_id.as_deref() {
                Some(s) => aws_id("source_secret_id", s, 1, 2048, "/+=.@-:!").map(Some),
                None if required => Err(Invalid::new(
                    "source_secret_id",
                    format!(
                        "is required: AWS refuses {} with role credentials, so it needs an IAM user's key",
                        ty.as_str()
                    ),
                )),
                None => Ok(None),
            }
        };
        let policies = Policies {
            document: raw
                .policy_document
                .as_ref()
                .map(validate::policy_document)
                .transpose()?,
            arns: parse_list(
                "policy_arns",
                raw.policy_arns.as_deref(),
                10,
                PolicyArn::parse,
            )?,
        };
        let tags = validate::session_tags(raw.session_tags.as_ref())?;
        let mfa = raw
            .mfa_serial_number
            .as_deref()
            .map(|s| aws_id("mfa_serial_number", s, 9, 256, "+=/:,.@-"))
            .transpose()?;
        let groups_given = raw.iam_groups.as_ref().is_some_and(|g| !g.is_empty());

        let kind = match ty {
            CredentialType::SessionToken => {
                forbid("role_arn", raw.role_arn.is_some())?;
                forbid("role_arns", raw.role_arns.is_some())?;
                forbid("external_id", raw.external_id.is_some())?;
                forbid("policy_document", policies.document.is_some())?;
                forbid("policy_arns", !policies.arns.is_empty())?;
                forbid("session_tags", !tags.is_empty())?;
                forbid_iam_user_fields(&raw, ty)?;
                Kind::SessionToken {
                    source_secret_id: secret_id(true)?.unwrap_or_default(),
                    mfa_serial_number: mfa,
                }
            }
            CredentialType::FederationToken => {
                forbid("role_arn", raw.role_arn.is_some())?;
                forbid("role_arns", raw.role_arns.is_some())?;
                forbid("external_id", raw.external_id.is_some())?;
                forbid("mfa_serial_number", mfa.is_some())?;
                forbid_iam_user_fields(&raw, ty)?;
                let source_secret_id = secret_id(true)?.unwrap_or_default();
                if policies.is_empty() {
                    return Err(Invalid::new(
                        "policy_document",
                        "federation_token profiles need a policy_document or policy_arns: without one the token has no permissions",
                    ));
                }
                Kind::FederationToken {
                    source_secret_id,
                    policies,
                    session_tags: tags,
                }
            }
            CredentialType::AssumedRole => {
                forbid_iam_user_fields(&raw, ty)?;
                Kind::AssumedRole {
                    roles: roles(raw.role_arn.as_deref(), raw.role_arns.as_deref())?,
                    source_secret_id: secret_id(false)?,
                    external_id: raw
                        .external_id
                        .as_deref()
                        .map(|e| aws_id("external_id", e, 2, 1224, "+=,.@:/-"))
                        .transpose()?,
                    policies,
                    session_tags: tags,
                    mfa_serial_number: mfa,
                }
            }
            CredentialType::IamUser => {
                forbid("role_arn", raw.role_arn.is_some())?;
                forbid("role_arns", raw.role_arns.is_some())?;
                forbid("external_id", raw.external_id.is_some())?;
                forbid("session_tags", !tags.is_empty())?;
                forbid("mfa_serial_number", mfa.is_some())?;
                forbid("source_secret_id", raw.source_secret_id.is_some())?;
                if let Some(doc) = &policies.document {
                    validate::fits_beside_lease_expiry(doc)?;
                }
                // A boundary only caps permissions: without a policy or group the user has none.
                if policies.is_empty() && !groups_given {
                    return Err(Invalid::new(
                        "policy_document",
                        "iam_user profiles need a policy_document, policy_arns or iam_groups",
                    ));
                }
                Kind::IamUser {
                    policies,
                    iam_groups: parse_list("iam_groups", raw.iam_groups.as_deref(), 10, |f, g| {
                        aws_id(f, g, 1, 128, "+=,.@-")
                    })?,
                    permissions_boundary_arn: raw
                        .permissions_boundary_arn
                        .as_deref()
                        .ok_or_else(|| {
                            Invalid::new(
                                "permissions_boundary_arn",
                                "is required for iam_user profiles: one of the deployment's lease boundaries",
                            )
                        })
                        .and_then(|a| PolicyArn::parse("permissions_boundary_arn", a))?,
                    user_path: user_path(raw.user_path.as_deref())?,
                    username_template: raw
                        .username_template
                        .as_deref()
                        .map(UserNameTemplate::parse)
                        .transpose()?,
                }
            }
        };

        // Role chaining (assumed_role signed with the function's own role session) is capped by
        // AWS at one hour: refuse more here rather than let STS answer 502 at issuance.
        let type_max = match &kind {
            Kind::AssumedRole {
                source_secret_id: None,
                ..
            } => ROLE_CHAINING_MAX,
            _ => ty.max_seconds(),
        };
        let max_duration = DurationSeconds::parse(
            "max_duration_seconds",
            raw.max_duration_seconds.unwrap_or(i64::from(type_max)),
            DurationSeconds::MIN,
            type_max,
        )?;
        let default_duration = DurationSeconds::parse(
            "default_duration_seconds",
            raw.default_duration_seconds
                .unwrap_or(i64::from(DEFAULT_DURATION.min(max_duration.get()))),
            DurationSeconds::MIN,
            max_duration.get(),
        )?;
        let description = raw.description.filter(|d| !d.is_empty());
        let max_active_leases = match raw.max_active_leases {
            None => DEFAULT_MAX_ACTIVE_LEASES,
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_ACTIVE_LEASES_LIMIT).contains(n))
                .ok_or_else(|| {
                    Invalid::new(
                        "max_active_leases",
                        format!("must be an integer from 1 to {MAX_ACTIVE_LEASES_LIMIT}"),
                    )
                })?,
        };
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 1024)
        {
            return Err(Invalid::new(
                "description",
                "must be at most 1024 characters",
            ));
        }
        Ok(Self {
            name,
            kind,
            description,
            default_duration,
            max_duration,
            sts: parse_sts_target(
                ("sts_endpoint", raw.sts_endpoint.as_deref()),
                ("sts_region", raw.sts_region.as_deref()),
            )?,
            sts_fallbacks: fallbacks(
                raw.sts_fallback_endpoints.as_deref(),
                raw.sts_fallback_regions.as_deref(),
            )?,
            allowed_principals: parse_list(
                "allowed_principals",
                raw.allowed_principals.as_deref(),
                100,
                PrincipalPattern::parse,
            )?,
            enabled: raw.enabled.unwrap_or(true),
            max_active_leases,
            approval: raw.approval.map(Approval::from_raw).transpose()?,
        })
    }
}

fn forbid_iam_user_fields(raw: &RawProfile, ty: CredentialType) -> Result<(), Invalid> {
    let present = [
        ("iam_groups", raw.iam_groups.is_some()),
        (
            "permissions_boundary_arn",
            raw.permissions_boundary_arn.is_some(),
        ),
        ("user_path", raw.user_path.is_some()),
        ("username_template", raw.username_template.is_some()),
    ];
    match present.iter().find(|(_, p)| *p) {
        Some((field, _)) => Err(Invalid::new(
            *field,
            format!("is not used by {} profiles", ty.as_str()),
        )),
        None => Ok(()),
    }
}

fn parse_list<T>(
    field: &str,
    items: Option<&[String]>,
    max: usize,
    parse: impl Fn(&str, &str) -> Result<T, Invalid>,
) -> Result<Vec<T>, Invalid> {
    let items = items.unwrap_or_default();
    if items.len() > max {
        return Err(Invalid::new(
            field,
            format!("may hold at most {max} entries"),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, s)| parse(&format!("{field}[{i}]"), s))
        .collect()
}

fn user_path(path: Option<&str>) -> Result<String, Invalid> {
    let path = path.unwrap_or(DEFAULT_USER_PATH);
    // Keysmith's role may manage users under its own path only (least privilege in template.yaml).
    let ok = path.starts_with(DEFAULT_USER_PATH)
        && path.ends_with('/')
        && path.len() <= 512
        && path.chars().all(|c| ('!'..='~').contains(&c));
    if ok {
        Ok(path.to_owned())
    } else {
        Err(Invalid::new(
            "user_path",
            "must be /keysmith/ or a path under it ending with / (for example /keysmith/team-a/)",
        ))
    }
}

/// Up to this many fallback STS endpoints.
const MAX_STS_FALLBACKS: usize = 3;

/// `sts_fallback_endpoints` with the same rules as `sts_endpoint`, and `sts_fallback_regions` in
/// the same order when given (an endpoint that does not name its region needs one).
fn fallbacks(
    endpoints: Option<&[String]>,
    regions: Option<&[String]>,
) -> Result<Vec<StsTarget>, Invalid> {
    let endpoints = endpoints.unwrap_or_default();
    if endpoints.len() > MAX_STS_FALLBACKS {
        return Err(Invalid::new(
            "sts_fallback_endpoints",
            format!("must list at most {MAX_STS_FALLBACKS} endpoints"),
        ));
    }
    if let Some(r) = regions {
        if r.len() != endpoints.len() {
            return Err(Invalid::new(
                "sts_fallback_regions",
                "must list one region for each of sts_fallback_endpoints, in the same order",
            ));
        }
    }
    endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            parse_sts_target(
                ("sts_fallback_endpoints", Some(e)),
                (
                    "sts_fallback_regions",
                    regions.and_then(|r| r.get(i)).map(String::as_str),
                ),
            )
        })
        .collect()
}

/// `role_arn` (one role) or `role_arns` (1 to 50 distinct exact ARNs a request chooses from),
/// never both.
fn roles(one: Option<&str>, choice: Option<&[String]>) -> Result<Roles, Invalid> {
    match (one, choice) {
        (Some(_), Some(_)) => Err(Invalid::new(
            "role_arns",
            "is used instead of role_arn, not beside it",
        )),
        (Some(a), None) => Ok(Roles::Fixed(RoleArn::parse("role_arn", a)?)),
        (None, Some(list)) => {
            if list.is_empty() || list.len() > MAX_ROLE_CHOICES {
                return Err(Invalid::new(
                    "role_arns",
                    format!("must list 1 to {MAX_ROLE_CHOICES} role ARNs"),
                ));
            }
            let mut roles: Vec<RoleArn> = Vec::with_capacity(list.len());
            for a in list {
                let r = RoleArn::parse("role_arns", a)?;
                if roles.contains(&r) {
                    return Err(Invalid::new("role_arns", format!("lists {a} twice")));
                }
                roles.push(r);
            }
            Ok(Roles::Choice(roles))
        }
        (None, None) => Err(Invalid::new(
            "role_arn",
            "is required for assumed_role profiles (or role_arns, a list a request chooses from)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<Profile, Invalid> {
        let name = ProfileName::parse("name", "deploy").unwrap();
        Profile::parse(name, body.to_string().as_bytes())
    }

    fn field(body: Value) -> String {
        parse(body).unwrap_err().field
    }

    #[test]
    fn assumed_role_profile_round_trips() {
        let body = json!({
            "credential_type": "assumed_role",
            "role_arn": "arn:aws:iam::123456789012:role/keysmith/deploy",
            "external_id": "ext-123",
            "policy_document": {"Version": "2012-10-17", "Statement": []},
            "policy_arns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
            "session_tags": {"team": "payments"},
            "allowed_principals": ["arn:aws:iam::123456789012:role/Deployers*"],
            "sts_region": "eu-west-1"
        });
        let p = parse(body).unwrap();
        assert_eq!(p.credential_type(), CredentialType::AssumedRole);
        assert_eq!(p.default_duration.get(), 3600);
        assert_eq!(
            p.max_duration.get(),
            3600,
            "role chaining: at most one hour"
        );
        let again = Profile::parse(p.name.clone(), p.to_json().to_string().as_bytes()).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn fields_must_fit_the_type() {
        assert_eq!(
            field(json!({"credential_type": "session_token"})),
            "source_secret_id"
        );
        assert_eq!(
            field(json!({"credential_type": "federation_token", "source_secret_id": "s"})),
            "policy_document"
        );
        assert_eq!(
            field(json!({"credential_type": "assumed_role"})),
            "role_arn"
        );
        assert_eq!(
            field(
                json!({"credential_type": "session_token", "source_secret_id": "s",
                         "role_arn": "arn:aws:iam::123456789012:role/x"})
            ),
            "role_arn"
        );
        assert_eq!(
            field(json!({"credential_type": "iam_user"})),
            "policy_document"
        );
        let boundary = "arn:aws:iam::123456789012:policy/keysmith/lease-boundary";
        let no_boundary = json!({"credential_type": "iam_user", "iam_groups": ["g"]});
        assert_eq!(field(no_boundary), "permissions_boundary_arn");
        assert_eq!(
            field(json!({"credential_type": "iam_user", "permissions_boundary_arn": boundary})),
            "policy_document",
            "a boundary alone grants nothing"
        );
        let p = parse(json!({"credential_type": "iam_user", "iam_groups": ["g"],
                             "permissions_boundary_arn": boundary}))
        .unwrap();
        let allowed = [PolicyArn::parse("a", boundary).unwrap()];
        assert!(p.check_lease_boundary(&allowed).is_ok());
        let other = [PolicyArn::parse("a", "arn:aws:iam::aws:policy/AdministratorAccess").unwrap()];
        assert_eq!(
            p.check_lease_boundary(&other).unwrap_err().field,
            "permissions_boundary_arn"
        );
        assert_eq!(
            p.check_lease_boundary(&[]).unwrap_err().field,
            "permissions_boundary_arn"
        );
        assert_eq!(field(json!({"credential_type": "root"})), "credential_type");
    }

    #[test]
    fn durations_default_and_bounds() {
        let base = json!({"credential_type": "assumed_role", "role_arn": "arn:aws:iam::123456789012:role/r"});
        let with = |k: &str, v: i64| {
            let mut b = base.clone();
            b[k] = json!(v);
            b
        };
        assert_eq!(
            field(with("max_duration_seconds", 43_201)),
            "max_duration_seconds"
        );
        assert_eq!(
            field(with("default_duration_seconds", 899)),
            "default_duration_seconds"
        );
        let mut b = with("max_duration_seconds", 1800);
        b["default_duration_seconds"] = json!(3600);
        assert_eq!(field(b), "default_duration_seconds");
        let p = parse(with("max_duration_seconds", 1200)).unwrap();
        assert_eq!(p.default_duration.get(), 1200);
        assert_eq!(
            field(with("max_duration_seconds", 7200)),
            "max_duration_seconds",
            "role chaining"
        );
        let mut b = with("max_duration_seconds", 43_200);
        b["source_secret_id"] = json!("keysmith/base");
        assert_eq!(parse(b).unwrap().max_duration.get(), 43_200);
    }

    #[test]
    fn bad_json_names_the_field() {
        let name = ProfileName::parse("name", "deploy").unwrap();
        let err = Profile::parse(
            name.clone(),
            br#"{"credential_type": "assumed_role", "colour": 1}"#,
        )
        .unwrap_err();
        assert_eq!(err.field, "colour");
        let err = Profile::parse(name.clone(), br#"{"credential_type": 7}"#).unwrap_err();
        assert_eq!(err.field, "credential_type");
        let err = Profile::parse(name.clone(), br#"{"credential_type": "#).unwrap_err();
        assert_eq!(err.field, "body");
        let err = Profile::parse(name.clone(), br#"{}"#).unwrap_err();
        assert_eq!(err.field, "credential_type");
        let err = Profile::parse(
            name,
            br#"{"credential_type": "x", "session_tags": {"a": 1}}"#,
        )
        .unwrap_err();
        assert_eq!(err.field, "session_tags.a");
    }
}
