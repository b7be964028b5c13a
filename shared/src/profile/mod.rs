//! Profiles (SPEC §5): what a caller may ask for. Raw JSON is parsed once into [`Profile`], whose
//! [`Kind`] carries exactly the fields its credential type uses, so a profile that does not fit its
//! type cannot exist past `PUT`.

mod approval;
mod groups;
mod parse;
mod store;
mod username;
mod validate;

pub use crate::names::Policies;

pub use approval::Approval;
pub use groups::check_lease_groups;

pub use store::{Listed, Outdated, ProfileStore, Saved, StoreError};
pub use username::{random_part, UserNameTemplate, MAX_USER_NAME};

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::config::{parse_sts_target, StsTarget};
use crate::names::{
    aws_id, DurationSeconds, Invalid, PolicyArn, PrincipalPattern, ProfileName, RoleArn,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialType {
    SessionToken,
    AssumedRole,
    FederationToken,
    IamUser,
}

impl CredentialType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionToken => "session_token",
            Self::AssumedRole => "assumed_role",
            Self::FederationToken => "federation_token",
            Self::IamUser => "iam_user",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        Ok(match s {
            "session_token" => Self::SessionToken,
            "assumed_role" => Self::AssumedRole,
            "federation_token" => Self::FederationToken,
            "iam_user" => Self::IamUser,
            _ => {
                return Err(Invalid::new(
                    "credential_type",
                    "must be one of session_token, assumed_role, federation_token, iam_user",
                ))
            }
        })
    }

    /// The longest lifetime AWS allows for this type (SPEC §5).
    pub fn max_seconds(self) -> u32 {
        match self {
            Self::AssumedRole => 43_200,
            _ => DurationSeconds::MAX,
        }
    }
}

impl std::fmt::Display for CredentialType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    SessionToken {
        source_secret_id: String,
        mfa_serial_number: Option<String>,
    },
    FederationToken {
        source_secret_id: String,
        policies: Policies,
        session_tags: BTreeMap<String, String>,
    },
    AssumedRole {
        roles: Roles,
        source_secret_id: Option<String>,
        external_id: Option<String>,
        policies: Policies,
        session_tags: BTreeMap<String, String>,
        mfa_serial_number: Option<String>,
    },
    IamUser {
        policies: Policies,
        iam_groups: Vec<String>,
        /// Required (SPEC §5): the ceiling of every lease user.
        permissions_boundary_arn: PolicyArn,
        user_path: String,
        /// SPEC §16: how lease users are named (Keysmith's own scheme when absent).
        username_template: Option<UserNameTemplate>,
    },
}

/// The role an `assumed_role` profile assumes: its one `role_arn`, or the one a request names
/// among `role_arns` (SPEC §16).
#[derive(Debug, Clone, PartialEq)]
pub enum Roles {
    Fixed(RoleArn),
    Choice(Vec<RoleArn>),
}

/// `role_arns` holds 1 to this many exact ARNs.
pub const MAX_ROLE_CHOICES: usize = 50;

impl Roles {
    /// Every role the profile's sessions may act through (a profile revoke covers them all).
    pub fn all(&self) -> &[RoleArn] {
        match self {
            Self::Fixed(r) => std::slice::from_ref(r),
            Self::Choice(rs) => rs,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: ProfileName,
    pub kind: Kind,
    pub description: Option<String>,
    pub default_duration: DurationSeconds,
    pub max_duration: DurationSeconds,
    pub sts: StsTarget,
    /// SPEC §16: STS endpoints tried in order when the one before cannot be reached or answers
    /// 5xx (`sts_fallback_endpoints`, `sts_fallback_regions`).
    pub sts_fallbacks: Vec<StsTarget>,
    pub allowed_principals: Vec<PrincipalPattern>,
    /// `false` switches issuance off (SPEC §10); admins still read and edit the profile.
    pub enabled: bool,
    /// Live leases one caller (a role's sessions counted as the role) may hold on this profile at
    /// once, of any credential type (SPEC §5, §10a).
    pub max_active_leases: u32,
    /// SPEC §12: a second person before anything is issued (absent: issued on request).
    pub approval: Option<Approval>,
}

pub const DEFAULT_DURATION: u32 = 3600;
/// AWS's cap on a session assumed with role credentials (role chaining).
pub const ROLE_CHAINING_MAX: u32 = 3600;
/// Session tags Keysmith puts on every `assumed_role` / `federation_token` session (SPEC §10).
pub const TAG_LEASE: &str = "keysmith:lease";
pub const TAG_PROFILE: &str = "keysmith:profile";
pub const RESERVED_SESSION_TAGS: [&str; 2] = [TAG_LEASE, TAG_PROFILE];
const RESERVED_TAG_PREFIX: &str = "keysmith:";
pub const DEFAULT_USER_PATH: &str = "/keysmith/";
pub const DEFAULT_MAX_ACTIVE_LEASES: u32 = 10;
pub const MAX_ACTIVE_LEASES_LIMIT: u32 = 100;

/// Re-exported: profiles were the first to parse JSON bodies.
pub use crate::json::{parse_json, parse_optional_json};

impl Profile {
    /// The longest duration a request may ask for: `max_duration_seconds`, and never more than
    /// AWS's role-chaining hour (also for a profile stored before that cap was enforced at `PUT`).
    pub fn duration_limit(&self) -> u32 {
        match self.kind {
            Kind::AssumedRole {
                source_secret_id: None,
                ..
            } => self.max_duration.get().min(ROLE_CHAINING_MAX),
            _ => self.max_duration.get(),
        }
    }

    pub fn credential_type(&self) -> CredentialType {
        match self.kind {
            Kind::SessionToken { .. } => CredentialType::SessionToken,
            Kind::FederationToken { .. } => CredentialType::FederationToken,
            Kind::AssumedRole { .. } => CredentialType::AssumedRole,
            Kind::IamUser { .. } => CredentialType::IamUser,
        }
    }

    /// `iam_user`: how many characters of inline policy a lease user has left for a request's
    /// scope-down (SPEC §16): IAM allows 2,048 across a user's inline policies, shared with
    /// `keysmith-lease-expiry` and the profile's `policy_document`.
    pub fn scope_down_room(&self) -> usize {
        let expiry = validate::policy_size(&crate::users::expiry_policy(chrono::Utc::now()));
        let own = match &self.kind {
            Kind::IamUser { policies, .. } => policies
                .document
                .as_deref()
                .map_or(0, validate::policy_size),
            _ => 0,
        };
        validate::POLICY_LIMIT.saturating_sub(expiry + own)
    }

    /// An `iam_user` profile's boundary must be one the deployment allows
    /// (`KEYSMITH_LEASE_BOUNDARY_ARNS`): the template's IAM conditions refuse any other, so a
    /// profile naming one could never issue. Other types have no boundary.
    pub fn check_lease_boundary(&self, allowed: &[PolicyArn]) -> Result<(), Invalid> {
        match &self.kind {
            Kind::IamUser {
                permissions_boundary_arn,
                ..
            } if !allowed.contains(permissions_boundary_arn) => Err(Invalid::new(
                "permissions_boundary_arn",
                if allowed.is_empty() {
                    "names no allowed lease boundary: this deployment allows none (KEYSMITH_LEASE_BOUNDARY_ARNS is empty)".to_owned()
                } else {
                    format!(
                        "must be one of the deployment's lease boundaries: {}",
                        allowed
                            .iter()
                            .map(PolicyArn::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
            )),
            _ => Ok(()),
        }
    }

    pub fn allows(&self, principals: &[String]) -> bool {
        self.allowed_principals
            .iter()
            .any(|p| principals.iter().any(|c| p.matches(c)))
    }

    /// The wire shape, as `GET` returns it and as it is stored: defaults filled in.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            if !v.is_null() {
                m.insert(k.to_owned(), v);
            }
        };
        put("name", json!(self.name.as_str()));
        put("credential_type", json!(self.credential_type().as_str()));
        put("description", json!(self.description));
        let policies_json = |p: &Policies| {
            let doc = p
                .document
                .as_deref()
                .and_then(|d| serde_json::from_str::<Value>(d).ok());
            let arns: Vec<&str> = p.arns.iter().map(PolicyArn::as_str).collect();
            (
                doc.unwrap_or(Value::Null),
                if arns.is_empty() {
                    Value::Null
                } else {
                    json!(arns)
                },
            )
        };
        let tags_json =
            |t: &BTreeMap<String, String>| if t.is_empty() { Value::Null } else { json!(t) };
        match &self.kind {
            Kind::SessionToken {
                source_secret_id,
                mfa_serial_number,
            } => {
                put("source_secret_id", json!(source_secret_id));
                put("mfa_serial_number", json!(mfa_serial_number));
            }
            Kind::FederationToken {
                source_secret_id,
                policies,
                session_tags,
            } => {
                put("source_secret_id", json!(source_secret_id));
                let (doc, arns) = policies_json(policies);
                put("policy_document", doc);
                put("policy_arns", arns);
                put("session_tags", tags_json(session_tags));
            }
            Kind::AssumedRole {
                roles,
                source_secret_id,
                external_id,
                policies,
                session_tags,
                mfa_serial_number,
            } => {
                match roles {
                    Roles::Fixed(r) => put("role_arn", json!(r.as_str())),
                    Roles::Choice(rs) => put(
                        "role_arns",
                        json!(rs.iter().map(RoleArn::as_str).collect::<Vec<_>>()),
                    ),
                }
                put("source_secret_id", json!(source_secret_id));
                put("external_id", json!(external_id));
                let (doc, arns) = policies_json(policies);
                put("policy_document", doc);
                put("policy_arns", arns);
                put("session_tags", tags_json(session_tags));
                put("mfa_serial_number", json!(mfa_serial_number));
            }
            Kind::IamUser {
                policies,
                iam_groups,
                permissions_boundary_arn,
                user_path,
                username_template,
            } => {
                let (doc, arns) = policies_json(policies);
                put("policy_document", doc);
                put("policy_arns", arns);
                if !iam_groups.is_empty() {
                    put("iam_groups", json!(iam_groups));
                }
                put(
                    "permissions_boundary_arn",
                    json!(permissions_boundary_arn.as_str()),
                );
                put("user_path", json!(user_path));
                if let Some(t) = username_template {
                    put("username_template", json!(t.as_str()));
                }
            }
        }
        put(
            "default_duration_seconds",
            json!(self.default_duration.get()),
        );
        put("max_duration_seconds", json!(self.max_duration.get()));
        put("sts_endpoint", json!(self.sts.endpoint));
        put("sts_region", json!(self.sts.region));
        if !self.sts_fallbacks.is_empty() {
            put(
                "sts_fallback_endpoints",
                json!(self
                    .sts_fallbacks
                    .iter()
                    .map(|t| t.endpoint.clone())
                    .collect::<Vec<_>>()),
            );
            if self.sts_fallbacks.iter().any(|t| t.region.is_some()) {
                put(
                    "sts_fallback_regions",
                    json!(self
                        .sts_fallbacks
                        .iter()
                        .map(|t| t.region.clone())
                        .collect::<Vec<_>>()),
                );
            }
        }
        let principals: Vec<&str> = self
            .allowed_principals
            .iter()
            .map(PrincipalPattern::as_str)
            .collect();
        put("allowed_principals", json!(principals));
        put("enabled", json!(self.enabled));
        put("max_active_leases", json!(self.max_active_leases));
        if let Some(a) = &self.approval {
            put("approval", a.to_json());
        }
        Value::Object(m)
    }
}
