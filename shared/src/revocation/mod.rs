//! Revoking STS credentials (SPEC §10): they cannot be deleted, so Keysmith denies them in the
//! inline policy `keysmith-revocations` of the role or base user they act through, and prunes each
//! `Deny` once every credential it can match has expired.
//!
//! IAM has no conditional write, so every change is a read-modify-write under a lock in the state
//! table (`pk = "revocation"`, `sk = "<role|user>#<arn>"`). The same item is in the `due` index
//! (`due_pk = "revocation"`) at the time its policy's next entry can be pruned, so the scheduled run
//! reads only the targets with work to do. The policy is [`policy::Document`].

pub mod policy;

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::audit::{format_time, AuditLog, AuditRecord, Category, Origin, Outcome};
use crate::aws::{classify, AwsFailure, FailureKind};
use crate::lease::Lease;
use crate::state::due_items;
use policy::{ceil_second, Document, TargetKind, POLICY_NAME};

const PK: &str = "revocation";
pub const EVENT_PRUNED: &str = "Revocations Pruned";
/// A lock outlives any revocation (a few IAM calls); a crashed holder's lock expires by itself.
const LOCK_TTL: Duration = Duration::seconds(30);
const LOCK_ATTEMPTS: u32 = 20;

#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("{0}")]
    Target(String),
    #[error("IAM {action} on {target} failed: {failure}")]
    Iam {
        action: &'static str,
        target: String,
        failure: AwsFailure,
    },
    #[error("the state table failed: {0}")]
    Store(AwsFailure),
    #[error("another revocation on {0} is under way; retry")]
    Busy(String),
    #[error("the inline policies of {target} would exceed IAM's {limit}-character quota even with a profile-wide cut-off; remove other inline policies or wait for the scheduled run to prune expired entries")]
    Full { target: String, limit: usize },
}

impl RevocationError {
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            Self::Iam { failure: f, .. } | Self::Store(f) => f.kind,
            _ => FailureKind::Other,
        }
    }
}

/// A role or IAM user that carries a revocation policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: TargetKind,
    pub arn: String,
    pub name: String,
}

impl Target {
    /// An IAM call on this target failed.
    fn iam_error(&self, action: &'static str, failure: AwsFailure) -> RevocationError {
        RevocationError::Iam {
            action,
            target: self.arn.clone(),
            failure,
        }
    }

    /// From a role or user ARN (`arn:<partition>:iam::<account>:role|user/<path/>name`).
    pub fn from_arn(arn: &str) -> Result<Self, RevocationError> {
        let bad = || RevocationError::Target(format!("{arn} is not an IAM role or user ARN"));
        let resource = arn
            .strip_prefix("arn:")
            .and_then(|r| r.splitn(5, ':').nth(4))
            .ok_or_else(bad)?;
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
            name: name.to_owned(),
        })
    }

    fn key(&self) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(PK.to_owned())),
            (
                "sk".to_owned(),
                AttributeValue::S(format!("{}#{}", self.kind.as_str(), self.arn)),
            ),
        ])
    }
}

/// What a revocation changed on one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub target: Target,
    /// The statement now in force for this revocation.
    pub statement: String,
    /// A per-lease entry did not fit IAM's quota: the profile-wide cut-off was written instead.
    pub fell_back_to_cutoff: bool,
    /// The policy's size after the change, and the budget it had (the quota minus the target's
    /// other inline policies).
    pub size: usize,
    pub budget: usize,
}

impl Applied {
    pub fn to_json(&self) -> Value {
        json!({
            "target": self.target.arn,
            "target_type": self.target.kind.as_str(),
            "policy_name": POLICY_NAME,
            "statement": self.statement,
            "fallback": self.fell_back_to_cutoff.then_some("profile_cutoff"),
            "policy_size": self.size,
            "policy_budget": self.budget,
        })
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// (target ARN, entries removed, policy deleted)
    pub pruned: Vec<(String, usize, bool)>,
    pub failed: Vec<(String, String)>,
}

impl PruneReport {
    pub fn to_json(&self) -> Value {
        json!({
            "pruned": self.pruned.iter().map(|(t, n, d)| json!({"target": t, "entries_removed": n, "policy_deleted": d})).collect::<Vec<_>>(),
            "failed": self.failed.iter().map(|(t, e)| json!({"target": t, "error": e})).collect::<Vec<_>>(),
        })
    }
}

#[derive(Clone, Debug)]
pub struct Revocations {
    iam: aws_sdk_iam::Client,
    db: aws_sdk_dynamodb::Client,
    table: String,
}

/// IAM returns policy documents URL-encoded (RFC 3986); tolerate plain JSON too.
fn decode_policy(text: &str) -> String {
    if text.trim_start().starts_with('{') {
        return text.to_owned();
    }
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

fn chars(text: &str) -> usize {
    text.chars().filter(|c| !c.is_whitespace()).count()
}

impl Revocations {
    pub fn new(
        iam: aws_sdk_iam::Client,
        db: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
    ) -> Self {
        Self {
            iam,
            db,
            table: table.into(),
        }
    }

    /// The target an STS lease's credentials act through.
    pub fn lease_target(lease: &Lease) -> Result<Target, RevocationError> {
        let arn = lease.target.as_deref().ok_or_else(|| {
            RevocationError::Target(format!("lease {} records no role or base user", lease.id))
        })?;
        Target::from_arn(arn)
    }

    /// Denies one lease's session tag on its role / base user. When the entry does not fit the
    /// quota, denies the lease's profile for sessions issued before now instead (which covers
    /// the lease) and says so. Adding a lease already denied changes nothing.
    pub async fn revoke_lease(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<Applied, RevocationError> {
        let target = Self::lease_target(lease)?;
        self.change(&target, now, |doc, budget| {
            let statement = format!("Deny aws:PrincipalTag/keysmith:lease = {}", lease.id);
            if !doc.add_lease(&lease.profile, &lease.id, lease.expires_at) || doc.size() <= budget {
                return Ok((statement, false));
            }
            // Every lease of the profile in the policy was issued before now: one cut-off at now
            // denies them all (and this one), in the room their ids took.
            let before = ceil_second(now);
            doc.fold_into_cutoff(&lease.profile, before);
            if doc.size() > budget {
                return Err(());
            }
            Ok((cutoff_statement(Some(&lease.profile), before), true))
        })
        .await
    }

    /// Denies sessions of `profile` (None: every session token of the user) issued before
    /// `before`.
    pub async fn revoke_before(
        &self,
        target: &Target,
        profile: Option<&str>,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Applied, RevocationError> {
        let before = ceil_second(before);
        self.change(target, now, |doc, budget| {
            doc.add_cutoff(profile, before);
            if doc.size() > budget {
                return Err(());
            }
            Ok((cutoff_statement(profile, before), false))
        })
        .await
    }

    /// Prunes every target whose policy has an entry past its credentials' expiry.
    pub async fn prune_due(&self, now: DateTime<Utc>) -> Result<PruneReport, RevocationError> {
        let items = due_items(&self.db, &self.table, PK, now)
            .await
            .map_err(RevocationError::Store)?;
        let mut report = PruneReport::default();
        for item in items {
            let Some(arn) = item.get("target").and_then(|v| v.as_s().ok()) else {
                continue;
            };
            let target = match Target::from_arn(arn) {
                Ok(t) => t,
                Err(e) => {
                    report.failed.push((arn.clone(), e.to_string()));
                    continue;
                }
            };
            match self.prune(&target, now).await {
                Ok((removed, deleted)) => report.pruned.push((target.arn, removed, deleted)),
                Err(e) => {
                    tracing::warn!(target = %target.arn, error = %e, "pruning a revocation policy failed; the next run retries");
                    report.failed.push((target.arn, e.to_string()));
                }
            }
        }
        Ok(report)
    }

    async fn prune(
        &self,
        target: &Target,
        now: DateTime<Utc>,
    ) -> Result<(usize, bool), RevocationError> {
        let owner = self.lock(target, now).await?;
        let result = async {
            let (mut doc, _) = self.read(target).await?;
            let removed = doc.prune(now, target.kind);
            if removed > 0 {
                self.write(target, &doc).await?;
            }
            Ok::<_, RevocationError>((removed, doc.is_empty(), doc.next_prune(target.kind)))
        }
        .await;
        let next = result.as_ref().ok().and_then(|r| r.2);
        // On failure the item stays due (its old time), so the next run retries.
        self.unlock(target, &owner, result.is_ok().then_some(next))
            .await?;
        result.map(|(removed, deleted, _)| (removed, deleted))
    }

    /// Read-modify-write of the target's policy under the lock. `edit` changes the document
    /// within the budget, or answers `Err(())` when even its fallback does not fit.
    async fn change(
        &self,
        target: &Target,
        now: DateTime<Utc>,
        edit: impl FnOnce(&mut Document, usize) -> Result<(String, bool), ()>,
    ) -> Result<Applied, RevocationError> {
        let owner = self.lock(target, now).await?;
        let result = async {
            let (mut doc, others) = self.read(target).await?;
            let before = doc.clone();
            // Entries already past are dropped on the way: room for this one.
            doc.prune(now, target.kind);
            let budget = target.kind.inline_limit().saturating_sub(others);
            let (statement, fell_back) =
                edit(&mut doc, budget).map_err(|()| RevocationError::Full {
                    target: target.arn.clone(),
                    limit: target.kind.inline_limit(),
                })?;
            if doc != before {
                self.write(target, &doc).await?;
            }
            Ok::<_, RevocationError>(Applied {
                target: target.clone(),
                statement,
                fell_back_to_cutoff: fell_back,
                size: doc.size(),
                budget,
            })
            .map(|a| (a, doc.next_prune(target.kind)))
        }
        .await;
        match result {
            Ok((applied, next)) => {
                self.unlock(target, &owner, Some(next)).await?;
                Ok(applied)
            }
            Err(e) => {
                if let Err(u) = self.unlock(target, &owner, None).await {
                    tracing::warn!(target = %target.arn, error = %u, "releasing a revocation lock failed; it expires by itself");
                }
                Err(e)
            }
        }
    }

    /// The target's revocation policy and the size of its other inline policies (IAM's quota is
    /// on all of them together).
    async fn read(&self, target: &Target) -> Result<(Document, usize), RevocationError> {
        let mut names = Vec::new();
        let mut marker = None;
        loop {
            let (page, truncated, next) = match target.kind {
                TargetKind::Role => {
                    let out = self
                        .iam
                        .list_role_policies()
                        .role_name(&target.name)
                        .set_marker(marker.take())
                        .send()
                        .await
                        .map_err(|e| target.iam_error("ListRolePolicies", classify(e)))?;
                    (out.policy_names, out.is_truncated, out.marker)
                }
                TargetKind::User => {
                    let out = self
                        .iam
                        .list_user_policies()
                        .user_name(&target.name)
                        .set_marker(marker.take())
                        .send()
                        .await
                        .map_err(|e| target.iam_error("ListUserPolicies", classify(e)))?;
                    (out.policy_names, out.is_truncated, out.marker)
                }
            };
            names.extend(page);
            match (truncated, next) {
                (true, Some(m)) => marker = Some(m),
                _ => break,
            }
        }
        let mut doc = Document::default();
        let mut others = 0;
        for name in names {
            let text = self.get_policy(target, &name).await?;
            if name == POLICY_NAME {
                // A document Keysmith cannot read is kept whole, as foreign statements cannot be
                // parsed either: refuse rather than overwrite somebody's policy.
                doc = Document::parse(&text).ok_or_else(|| {
                    RevocationError::Target(format!(
                        "the inline policy {POLICY_NAME} of {} is not a policy Keysmith can read",
                        target.arn
                    ))
                })?;
            } else {
                others += chars(&text);
            }
        }
        Ok((doc, others))
    }

    async fn get_policy(&self, target: &Target, name: &str) -> Result<String, RevocationError> {
        let text = match target.kind {
            TargetKind::Role => {
                self.iam
                    .get_role_policy()
                    .role_name(&target.name)
                    .policy_name(name)
                    .send()
                    .await
                    .map_err(|e| target.iam_error("GetRolePolicy", classify(e)))?
                    .policy_document
            }
            TargetKind::User => {
                self.iam
                    .get_user_policy()
                    .user_name(&target.name)
                    .policy_name(name)
                    .send()
                    .await
                    .map_err(|e| target.iam_error("GetUserPolicy", classify(e)))?
                    .policy_document
            }
        };
        Ok(decode_policy(&text))
    }

    /// Puts the document, or deletes the policy once it is empty.
    async fn write(&self, target: &Target, doc: &Document) -> Result<(), RevocationError> {
        let text = doc.to_json();
        let result = match (target.kind, doc.is_empty()) {
            (TargetKind::Role, false) => self
                .iam
                .put_role_policy()
                .role_name(&target.name)
                .policy_name(POLICY_NAME)
                .policy_document(text)
                .send()
                .await
                .map(drop)
                .map_err(|e| target.iam_error("PutRolePolicy", classify(e))),
            (TargetKind::User, false) => self
                .iam
                .put_user_policy()
                .user_name(&target.name)
                .policy_name(POLICY_NAME)
                .policy_document(text)
                .send()
                .await
                .map(drop)
                .map_err(|e| target.iam_error("PutUserPolicy", classify(e))),
            (TargetKind::Role, true) => self
                .iam
                .delete_role_policy()
                .role_name(&target.name)
                .policy_name(POLICY_NAME)
                .send()
                .await
                .map(drop)
                .map_err(|e| target.iam_error("DeleteRolePolicy", classify(e))),
            (TargetKind::User, true) => self
                .iam
                .delete_user_policy()
                .user_name(&target.name)
                .policy_name(POLICY_NAME)
                .send()
                .await
                .map(drop)
                .map_err(|e| target.iam_error("DeleteUserPolicy", classify(e))),
        };
        match result {
            // Already gone: that is what a delete wants.
            Err(RevocationError::Iam { failure, .. })
                if doc.is_empty() && failure.kind == FailureKind::NotFound =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Takes the target's lock (waiting a little for another holder); returns the owner token.
    async fn lock(&self, target: &Target, now: DateTime<Utc>) -> Result<String, RevocationError> {
        let owner = uuid::Uuid::new_v4().to_string();
        for attempt in 0..LOCK_ATTEMPTS {
            let now = now.max(Utc::now());
            let result = self
                .db
                .update_item()
                .table_name(&self.table)
                .set_key(Some(target.key()))
                .update_expression(
                    "SET lock_owner = :owner, lock_until = :until, target = :arn, target_type = :kind",
                )
                .condition_expression("attribute_not_exists(lock_until) OR lock_until < :now")
                .expression_attribute_values(":owner", AttributeValue::S(owner.clone()))
                .expression_attribute_values(
                    ":until",
                    AttributeValue::S(format_time(now + LOCK_TTL)),
                )
                .expression_attribute_values(":now", AttributeValue::S(format_time(now)))
                .expression_attribute_values(":arn", AttributeValue::S(target.arn.clone()))
                .expression_attribute_values(
                    ":kind",
                    AttributeValue::S(target.kind.as_str().to_owned()),
                )
                .send()
                .await
                .map_err(classify);
            match result {
                Ok(_) => return Ok(owner),
                Err(f) if f.kind == FailureKind::ConditionFailed => {
                    tokio::time::sleep(StdDuration::from_millis(100 + 50 * u64::from(attempt)))
                        .await;
                }
                Err(f) => return Err(RevocationError::Store(f)),
            }
        }
        Err(RevocationError::Busy(target.arn.clone()))
    }

    /// Releases the lock; `due` (when known) sets when the next prune is due (`Some(None)`:
    /// nothing left to prune).
    async fn unlock(
        &self,
        target: &Target,
        owner: &str,
        due: Option<Option<DateTime<Utc>>>,
    ) -> Result<(), RevocationError> {
        let mut q = self
            .db
            .update_item()
            .table_name(&self.table)
            .set_key(Some(target.key()))
            .condition_expression("lock_owner = :owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()));
        q = match due {
            None => q.update_expression("REMOVE lock_owner, lock_until"),
            Some(None) => q.update_expression("REMOVE lock_owner, lock_until, due_pk, due_at"),
            Some(Some(at)) => q
                .update_expression("SET due_pk = :pk, due_at = :at REMOVE lock_owner, lock_until")
                .expression_attribute_values(":pk", AttributeValue::S(PK.to_owned()))
                .expression_attribute_values(":at", AttributeValue::S(format_time(at))),
        };
        q.send()
            .await
            .map(drop)
            .map_err(|e| RevocationError::Store(classify(e)))
    }
}

/// The scheduled run's part (SPEC §10): prunes every due revocation policy, each pruned target
/// audited. A failure is reported and logged, never fatal to the run: the item stays due and the
/// next run retries it.
pub async fn scheduled_prune(
    revocations: &Revocations,
    audit: &AuditLog,
    now: DateTime<Utc>,
    origin: &Origin,
) -> PruneReport {
    let mut report = match revocations.prune_due(now).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "reading due revocation policies failed");
            return PruneReport {
                failed: vec![("(due revocations)".to_owned(), e.to_string())],
                ..PruneReport::default()
            };
        }
    };
    for (arn, removed, deleted) in &report.pruned {
        if *removed == 0 {
            continue;
        }
        let r = AuditRecord::new(
            origin,
            Category::Config,
            EVENT_PRUNED,
            Outcome::Success,
            format!(
                "{removed} expired entr{} removed from {POLICY_NAME} of {arn}{}.",
                if *removed == 1 { "y" } else { "ies" },
                if *deleted {
                    "; the empty policy was deleted"
                } else {
                    ""
                }
            ),
        );
        if let Err(e) = audit.write(&r).await {
            tracing::error!(target = %arn, error = %e, "audit write for a revocation prune failed");
            report.failed.push((arn.clone(), e.to_string()));
        }
    }
    report
}

fn cutoff_statement(profile: Option<&str>, before: DateTime<Utc>) -> String {
    let before = before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match profile {
        Some(p) => format!(
            "Deny aws:PrincipalTag/keysmith:profile = {p} when aws:TokenIssueTime < {before}"
        ),
        None => format!("Deny every session token when aws:TokenIssueTime < {before}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_named_by_their_arn() {
        let r = Target::from_arn("arn:aws:iam::123456789012:role/keysmith/deploy").unwrap();
        assert_eq!((r.kind, r.name.as_str()), (TargetKind::Role, "deploy"));
        let u = Target::from_arn("arn:aws:iam::123456789012:user/base").unwrap();
        assert_eq!((u.kind, u.name.as_str()), (TargetKind::User, "base"));
        assert!(Target::from_arn("arn:aws:sts::123456789012:federated-user/x").is_err());
        assert!(Target::from_arn("arn:aws:iam::123456789012:role/").is_err());
    }

    #[test]
    fn url_encoded_policies_are_decoded() {
        assert_eq!(decode_policy("%7B%22a%22%3A1%7D"), "{\"a\":1}");
        assert_eq!(decode_policy("{\"a\":1}"), "{\"a\":1}");
    }
}
