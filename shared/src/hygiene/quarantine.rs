//! The quarantine response (SPEC §15). AWS attaches `AWSCompromisedKeyQuarantine*` to a user whose
//! key leaked (CloudTrail `AttachUserPolicy`), and GuardDuty names keys used from where they
//! should not be. For each exposed key Keysmith holds: a rotated key is deactivated at once and,
//! when it is the secret's current key, rotated with Keysmith's own role (the quarantine policy
//! denies the user rotating itself); a lease's key ends with its lease. Anything else is audited
//! and announced, and nothing is changed.
//!
//! Each exposed key gets one `Access Key Quarantined` item (written once, before the response, so
//! a retried event finishes the response without a second item). Every step is idempotent: a
//! duplicate event deactivates nothing new and rotates only while the exposed key is current.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::HygieneError;
use crate::audit::{AuditLog, AuditRecord, Category, Level, Origin, Outcome};
use crate::aws::{classify, FailureKind, Lazy};
use crate::revocation::{Actor, Revoker};
use crate::rotation::policy::PolicyStore;
use crate::rotation::{rotate_policy, Rotator};

pub const EVENT_QUARANTINED: &str = "Access Key Quarantined";
const QUARANTINE_POLICY: &str = ":iam::aws:policy/AWSCompromisedKeyQuarantine";

/// What an incident event reports as exposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exposure {
    /// AWS quarantined a user: every key of the user counts as exposed.
    User {
        user_name: String,
        policy_arn: String,
    },
    /// A GuardDuty finding about one access key.
    Key {
        access_key_id: String,
        finding: String,
    },
}

impl Exposure {
    /// The exposure an EventBridge event (`source`, `detail`) reports, if it is one.
    pub fn of(source: &str, detail: &Value) -> Option<Exposure> {
        let text = |v: &Value| v.as_str().map(str::to_owned);
        match source {
            "aws.iam" => {
                let params = &detail["requestParameters"];
                let policy_arn = text(&params["policyArn"])?;
                // Only a call that succeeded: anyone's refused attempt to attach the policy
                // must not make Keysmith deactivate and rotate a key.
                (detail["eventName"] == "AttachUserPolicy"
                    && detail.get("errorCode").is_none()
                    && policy_arn.contains(QUARANTINE_POLICY))
                .then_some(())?;
                Some(Exposure::User {
                    user_name: text(&params["userName"])?,
                    policy_arn,
                })
            }
            "aws.guardduty" => {
                let finding = text(&detail["type"])?;
                let iam_user = finding.starts_with("UnauthorizedAccess:IAMUser/")
                    || finding.starts_with("CredentialAccess:IAMUser/");
                iam_user.then_some(())?;
                let key = text(&detail["resource"]["accessKeyDetails"]["accessKeyId"])?;
                // GuardDuty names the key an AWS service used as "GeneratedFindingAccessKeyId"
                // in sample findings: only a real key id is acted on.
                crate::keys::AccessKeyId::parse("accessKeyId", &key).ok()?;
                Some(Exposure::Key {
                    access_key_id: key,
                    finding,
                })
            }
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Exposure::User {
                user_name,
                policy_arn,
            } => format!("AWS attached {policy_arn} to user {user_name}"),
            Exposure::Key { finding, .. } => format!("GuardDuty finding {finding}"),
        }
    }
}

/// What Keysmith did about one exposed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A rotated key: deactivated, and the secret rotated when it was current.
    Rotated {
        policy: String,
        new_access_key_id: Option<String>,
    },
    LeaseRevoked {
        lease_id: String,
    },
    /// Not Keysmith's: audited and announced only.
    Unknown,
}

/// The services the response uses.
pub struct Responders<'a> {
    pub iam: &'a Lazy<aws_sdk_iam::Client>,
    pub audit: &'a AuditLog,
    pub policies: &'a PolicyStore,
    /// Acting with Keysmith's own identity (`Rotator::acting_as_itself`): the rotated key is
    /// deactivated and rotated through the rotator session bound to its secret.
    pub rotator: &'a Rotator,
    pub revoker: Revoker<'a>,
    /// The state table (the write-once markers of the audit items).
    pub state_table: &'a str,
}

impl Responders<'_> {
    /// Responds to `exposure`; returns each exposed key with what was done.
    pub async fn respond(
        &self,
        exposure: &Exposure,
        now: DateTime<Utc>,
        origin: &Origin,
    ) -> Result<Vec<(String, Response)>, HygieneError> {
        let keys = match exposure {
            Exposure::Key { access_key_id, .. } => vec![access_key_id.clone()],
            Exposure::User { user_name, .. } => self.keys_of(user_name).await?,
        };
        let mut done = Vec::new();
        for key in keys {
            let response = self.respond_to_key(exposure, &key, now, origin).await?;
            done.push((key, response));
        }
        Ok(done)
    }

    async fn keys_of(&self, user: &str) -> Result<Vec<String>, HygieneError> {
        let out = self
            .iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .map_err(classify);
        match out {
            Ok(o) => Ok(o
                .access_key_metadata
                .into_iter()
                .filter_map(|k| k.access_key_id)
                .collect()),
            Err(f) if f.kind == FailureKind::NotFound => Ok(Vec::new()),
            Err(f) => Err(HygieneError::Iam(f)),
        }
    }

    async fn respond_to_key(
        &self,
        exposure: &Exposure,
        key: &str,
        now: DateTime<Utc>,
        origin: &Origin,
    ) -> Result<Response, HygieneError> {
        let items = self.audit.by_access_key(key, 100).await?;
        let lease = crate::keys::lease_of(&items).map(str::to_owned);
        let policy = crate::keys::creating_rotation(&items)
            .and_then(|i| i.get("profile"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let policy = match policy {
            Some(name) => self
                .policies
                .get(&name)
                .await
                .map_err(|e| HygieneError::Refused(e.to_string()))?
                .map(|p| (name, p.secret_id)),
            None => None,
        };
        let (what, level) = match (&lease, &policy) {
            (Some(l), _) => (format!("revoking its lease {l}"), Level::Error),
            (None, Some((name, _))) => (
                format!("deactivating it and rotating rotation policy {name}"),
                Level::Error,
            ),
            (None, None) => (
                "Keysmith neither issued nor rotates it: nothing changed".to_owned(),
                Level::Warn,
            ),
        };
        let mut r = AuditRecord::new(
            origin,
            Category::Data,
            EVENT_QUARANTINED,
            Outcome::Success,
            format!(
                "Access key {key} exposed ({}): {what}.",
                exposure.describe()
            ),
        );
        r.level = level;
        r.access_key_id = Some(key.to_owned());
        r.lease_id = lease.clone();
        r.profile = policy.as_ref().map(|(name, _)| name.clone());
        self.audit
            .write_once(&r, self.state_table, &format!("quarantined#{key}"))
            .await?;
        if let Some(lease_id) = lease {
            let actor = Actor {
                origin,
                admin: true,
                reason: Some("AWS reported its key exposed (quarantine response)"),
            };
            self.revoker
                .revoke_lease(&lease_id, actor)
                .await
                .map_err(|e| HygieneError::Refused(e.to_string()))?;
            return Ok(Response::LeaseRevoked { lease_id });
        }
        let Some((name, secret_id)) = policy else {
            return Ok(Response::Unknown);
        };
        let current = self
            .rotator
            .deactivate_key(&secret_id, key)
            .await
            .map_err(|e| HygieneError::Refused(e.to_string()))?;
        if !current {
            return Ok(Response::Rotated {
                policy: name,
                new_access_key_id: None,
            });
        }
        let (_, rotated) = rotate_policy(self.policies, self.rotator, &name, now, false, origin)
            .await
            .map_err(|e| HygieneError::Refused(e.to_string()))?;
        Ok(Response::Rotated {
            policy: name,
            new_access_key_id: Some(rotated.new_access_key_id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_name_their_exposure() {
        let cloudtrail = json!({"eventName": "AttachUserPolicy", "requestParameters": {
            "userName": "ci", "policyArn": "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3"}});
        assert_eq!(
            Exposure::of("aws.iam", &cloudtrail),
            Some(Exposure::User {
                user_name: "ci".into(),
                policy_arn: "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3".into()
            })
        );
        let other = json!({"eventName": "AttachUserPolicy", "requestParameters": {
            "userName": "ci", "policyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}});
        assert_eq!(Exposure::of("aws.iam", &other), None);
        let mut refused = cloudtrail.clone();
        refused["errorCode"] = json!("AccessDenied");
        assert_eq!(Exposure::of("aws.iam", &refused), None);
        let finding = json!({"type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
            "resource": {"accessKeyDetails": {"accessKeyId": "AKIAIOSFODNN7EXAMPLE", "userName": "ci"}}});
        assert!(matches!(
            Exposure::of("aws.guardduty", &finding),
            Some(Exposure::Key { .. })
        ));
        let ec2 = json!({"type": "Recon:EC2/PortProbeUnprotectedPort"});
        assert_eq!(Exposure::of("aws.guardduty", &ec2), None);
        assert_eq!(Exposure::of("keysmith.schedule", &json!({})), None);
    }
}
