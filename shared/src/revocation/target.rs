//! Where a revocation is written: the role or IAM user an STS lease acts through, addressed by its
//! full ARN and changed in its own account (SPEC §10a). A target in Keysmith's account is changed
//! with the function's own IAM client; one in another account only through the revoker role
//! there (`KEYSMITH_REVOKER_ROLE_NAME`). With none configured, the answer is a refusal naming the
//! account: a same-named role or user in Keysmith's account is never touched instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;

use super::policy::TargetKind;
use super::RevocationError;
use crate::aws::{classify, AwsFailure, Lazy};
use crate::secret::{AccessKeyPair, Secret};

pub(super) const PK: &str = "revocation";
/// Assumed revoker sessions last 15 minutes; reuse them for 10.
const SESSION_REUSE: StdDuration = StdDuration::from_secs(600);

/// A role or IAM user that carries a revocation policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: TargetKind,
    pub arn: String,
    pub partition: String,
    pub account: String,
    pub name: String,
}

impl Target {
    /// From a role or user ARN (`arn:<partition>:iam::<account>:role|user/<path/>name`).
    pub fn from_arn(arn: &str) -> Result<Self, RevocationError> {
        let bad = || RevocationError::Target(format!("{arn} is not an IAM role or user ARN"));
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [prefix, partition, service, region, account, resource] = parts[..] else {
            return Err(bad());
        };
        let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        if prefix != "arn" || service != "iam" || !region.is_empty() || !account_ok {
            return Err(bad());
        }
        let (kind, path) = if let Some(p) = resource.strip_prefix("role/") {
            (TargetKind::Role, p)
        } else if let Some(p) = resource.strip_prefix("user/") {
            (TargetKind::User, p)
        } else {
            return Err(bad());
        };
        let name = path
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .ok_or_else(bad)?;
        Ok(Self {
            kind,
            arn: arn.to_owned(),
            partition: partition.to_owned(),
            account: account.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The deny set's item in the state table: one per target ARN (so per account).
    pub(super) fn key(&self) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(PK.to_owned())),
            (
                "sk".to_owned(),
                AttributeValue::S(format!("{}#{}", self.kind.as_str(), self.arn)),
            ),
        ])
    }

    pub(super) fn iam_error(&self, action: &'static str, failure: AwsFailure) -> RevocationError {
        RevocationError::Iam {
            action,
            target: self.arn.clone(),
            failure,
        }
    }
}

/// IAM clients per account: the function's own for its account, an assumed revoker session for
/// any other.
#[derive(Clone, Debug)]
pub struct Accounts {
    iam: Lazy<aws_sdk_iam::Client>,
    sts: Lazy<aws_sdk_sts::Client>,
    sdk: aws_config::SdkConfig,
    revoker_role: Option<String>,
    home: Arc<tokio::sync::OnceCell<String>>,
    sessions: Arc<Mutex<HashMap<String, (aws_sdk_iam::Client, Instant)>>>,
}

impl Accounts {
    pub fn new(
        iam: Lazy<aws_sdk_iam::Client>,
        sts: Lazy<aws_sdk_sts::Client>,
        sdk: aws_config::SdkConfig,
        revoker_role: Option<String>,
    ) -> Self {
        Self {
            iam,
            sts,
            sdk,
            revoker_role,
            home: Arc::default(),
            sessions: Arc::default(),
        }
    }

    /// Keysmith's own account, asked of STS once per process (`GetCallerIdentity` needs no
    /// permission).
    pub async fn home(&self) -> Result<&str, RevocationError> {
        self.home
            .get_or_try_init(|| async {
                let out = self
                    .sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| RevocationError::Store(classify(e)))?;
                out.account.ok_or_else(|| {
                    RevocationError::Store(AwsFailure::other("STS named no account"))
                })
            })
            .await
            .map(String::as_str)
    }

    /// The IAM client that changes `target` in its own account.
    pub async fn iam_for(&self, target: &Target) -> Result<aws_sdk_iam::Client, RevocationError> {
        let home = self.home().await?;
        if target.account == home {
            return Ok((*self.iam).clone());
        }
        let Some(role) = &self.revoker_role else {
            return Err(RevocationError::ForeignAccount {
                target: target.arn.clone(),
                account: target.account.clone(),
                home: home.to_owned(),
            });
        };
        if let Some(client) = self.cached(&target.account) {
            return Ok(client);
        }
        let role_arn = format!(
            "arn:{}:iam::{}:role/{}",
            target.partition, target.account, role
        );
        let out = self
            .sts
            .assume_role()
            .role_arn(&role_arn)
            .role_session_name("keysmith-revoker")
            .duration_seconds(900)
            .send()
            .await
            .map_err(|e| RevocationError::Revoker {
                role_arn: role_arn.clone(),
                failure: classify(e),
            })?;
        let c = out.credentials.ok_or_else(|| RevocationError::Revoker {
            role_arn: role_arn.clone(),
            failure: AwsFailure::other("STS returned no credentials"),
        })?;
        let pair = AccessKeyPair {
            access_key_id: c.access_key_id,
            secret_access_key: Secret::new(c.secret_access_key),
            session_token: Some(Secret::new(c.session_token)),
        };
        let client = aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::config::Builder::from(&self.sdk)
                .credentials_provider(pair.provider())
                .build(),
        );
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(target.account.clone(), (client.clone(), Instant::now()));
        }
        Ok(client)
    }

    fn cached(&self, account: &str) -> Option<aws_sdk_iam::Client> {
        let sessions = self.sessions.lock().ok()?;
        let (client, at) = sessions.get(account)?;
        (at.elapsed() < SESSION_REUSE).then(|| client.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_named_by_their_full_arn_and_account() {
        let r = Target::from_arn("arn:aws:iam::123456789012:role/keysmith/deploy").unwrap();
        assert_eq!(
            (r.kind, r.name.as_str(), r.account.as_str()),
            (TargetKind::Role, "deploy", "123456789012")
        );
        let u = Target::from_arn("arn:aws-cn:iam::222222222222:user/base").unwrap();
        assert_eq!(
            (u.kind, u.partition.as_str(), u.account.as_str()),
            (TargetKind::User, "aws-cn", "222222222222")
        );
        for bad in [
            "arn:aws:sts::123456789012:federated-user/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::12345:role/r",
            "arn:aws:iam:us-east-1:123456789012:role/r",
            "arn:aws:s3::123456789012:role/r",
        ] {
            assert!(Target::from_arn(bad).is_err(), "{bad}");
        }
        // Same name, other account: another target (another deny set).
        let other = Target::from_arn("arn:aws:iam::222222222222:role/keysmith/deploy").unwrap();
        assert_ne!(r.key(), other.key());
    }
}
