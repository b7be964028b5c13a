//! `revoke_profile`: every credential a profile issued before a time stops working (SPEC §10).

use chrono::{DateTime, Utc};

use super::policy::TargetKind;
use super::usecase::{because, record};
use super::{Actor, Applied, ProfileRevoked, Revocations, RevokeError, Revoker, Target};
use crate::audit::Outcome;
use crate::aws::FailureKind;
use crate::issue::{source_identity, IssueError};
use crate::profile::{CredentialType, Kind, Profile};

impl Revoker<'_> {
    /// Every credential `profile` issued before `before` stops working (an admin's revoke): a
    /// cut-off on its role or base user now and on every one its live leases act through, live
    /// `iam_user` leases ended, STS leases marked. Audited once, success or failure.
    pub async fn revoke_profile(
        &self,
        profile: &Profile,
        before: DateTime<Utc>,
        actor: Actor<'_>,
    ) -> Result<ProfileRevoked, RevokeError> {
        let name = profile.name.as_str();
        let ty = profile.credential_type();
        let now = Utc::now();
        let mut done = ProfileRevoked {
            targets: Vec::new(),
            leases_revoked: Vec::new(),
            note: None,
        };
        let result = self
            .revoke_profile_in(profile, before, now, &actor, &mut done)
            .await;
        let (outcome, message) = match &result {
            Ok(()) => (
                Outcome::Success,
                format!(
                    "Credentials of profile {name} issued before {} revoked by {}: {} policy change(s), {} lease(s) revoked.{}",
                    before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    actor.origin.principal,
                    done.targets.len(),
                    done.leases_revoked.len(),
                    because(actor.reason)
                ),
            ),
            Err(e) => (
                Outcome::Failed,
                format!("Revoking the credentials of profile {name} failed: {e}"),
            ),
        };
        self.audit
            .write(&record(&actor, name, ty, outcome, message))
            .await?;
        result.map(|()| done)
    }

    async fn revoke_profile_in(
        &self,
        profile: &Profile,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
        actor: &Actor<'_>,
        done: &mut ProfileRevoked,
    ) -> Result<(), RevokeError> {
        let name = profile.name.as_str();
        let ty = profile.credential_type();
        let current: Vec<Target> = match &profile.kind {
            // Every role it may assume (role_arns: each a request could have chosen).
            Kind::AssumedRole { roles, .. } => roles
                .all()
                .iter()
                .map(|r| Target::from_arn(r.as_str()))
                .collect::<Result<_, _>>()?,
            Kind::FederationToken { .. } | Kind::SessionToken { .. } => {
                let arn = self
                    .issuer
                    .profile_base_user(profile)
                    .await
                    .map_err(|e| match e {
                        // The profile names a secret that is not there: a fact about the profile,
                        // not an AWS failure.
                        IssueError::BaseKey {
                            kind: FailureKind::NotFound,
                            ..
                        } => RevokeError::Conflict(format!(
                            "{e}: the profile's base user cannot be found, so nothing was revoked"
                        )),
                        e => e.into(),
                    })?;
                vec![Target::from_arn(&arn)?]
            }
            Kind::IamUser { .. } => Vec::new(),
        };
        // The profile's role or base user now, and every one its live leases act through (the
        // profile may have pointed elsewhere when they were issued).
        let live = self.live_leases(name, before, now).await?;
        let mut scopes: Vec<(Target, bool)> = Vec::new();
        let mut add = |target: Target, tagged: bool| {
            if !scopes
                .iter()
                .any(|(t, g)| t.arn == target.arn && *g == tagged)
            {
                scopes.push((target, tagged));
            }
        };
        for t in current {
            add(t, ty != CredentialType::SessionToken);
        }
        for lease in live.iter().filter(|l| l.is_sts()) {
            add(
                Revocations::lease_target(lease)?,
                lease.credential_type != CredentialType::SessionToken,
            );
        }
        let mut folded_ended = Vec::new();
        for (target, tagged) in scopes {
            let scope = tagged.then_some(name);
            if !tagged {
                done.note = Some(format!(
                    "session tokens carry no tags: this denies every session token of {} issued before the time, from any profile or tool",
                    target.arn
                ));
            }
            // On a role, the callers of the live leases by SourceIdentity too: a chained session
            // that lost the tags is still theirs (SPEC §18).
            let mut sources: Vec<String> = Vec::new();
            if target.kind == TargetKind::Role {
                for l in live
                    .iter()
                    .filter(|l| l.target.as_deref() == Some(target.arn.as_str()))
                {
                    let id = source_identity(&l.principal);
                    if !sources.contains(&id) {
                        sources.push(id);
                    }
                }
            }
            let admin = Actor {
                admin: true,
                ..*actor
            };
            let applied = self
                .revocations
                .revoke_before(&target, scope, &sources, before, now, admin)
                .await?;
            let others = Applied {
                folded: applied
                    .folded
                    .iter()
                    .filter(|p| p.as_str() != name)
                    .cloned()
                    .collect(),
                ..applied.clone()
            };
            folded_ended.extend(self.end_folded(&others, "", now, actor).await?);
            done.targets.push(applied);
        }
        // Leases issued before the time are marked (STS) or ended (iam_user).
        done.leases_revoked = self.end_leases(name, live, now, actor).await?;
        done.leases_revoked.append(&mut folded_ended);
        Ok(())
    }
}
