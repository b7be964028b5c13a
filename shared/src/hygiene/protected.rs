//! The keys Keysmith holds, which the key report never deactivates: profiles' base keys, and for
//! every secret Keysmith rotates — a rotation policy's, or any secret whose rotation Lambda is
//! Keysmith's secret-rotation function (rotated on Secrets Manager's own schedule) — the keys
//! in `AWSCURRENT`, `AWSPENDING` and `AWSPREVIOUS` (graceful mode's previous key is live) and
//! the key of its `admin_secret_id`.

use std::collections::HashSet;

use super::HygieneError;
use crate::aws::{classify, AwsFailure, FailureKind, Lazy};
use crate::profile::{Kind, ProfileStore};
use crate::rotation::policy::PolicyStore;
use crate::rotation::{RotatedSecret, CURRENT, PENDING, PREVIOUS};

/// Where the held keys are found.
pub struct Holdings<'a> {
    pub profiles: &'a ProfileStore,
    pub policies: &'a PolicyStore,
    pub secrets: &'a Lazy<aws_sdk_secretsmanager::Client>,
    /// `KEYSMITH_SECRET_ROTATION_FUNCTION_ARN`: secrets naming it are Keysmith's.
    pub rotation_function: Option<&'a str>,
}

impl Holdings<'_> {
    pub async fn keys(&self) -> Result<HashSet<String>, HygieneError> {
        let mut base = self.base_secrets().await?;
        let mut rotated = self.policy_secrets().await?;
        rotated.extend(self.secrets_naming_keysmith().await?);
        let mut keys = HashSet::new();
        for id in rotated {
            for stage in [CURRENT, PENDING, PREVIOUS] {
                if let Some(text) = self.secret_string(&id, stage).await? {
                    if let Ok(value) = RotatedSecret::parse(&text) {
                        keys.extend(value.key_id().map(str::to_owned));
                        if let Some(admin) = value.admin_secret_id {
                            base.insert(admin);
                        }
                    }
                }
            }
        }
        for id in base {
            if let Some(text) = self.secret_string(&id, CURRENT).await? {
                if let Ok(pair) = crate::secret::AccessKeyPair::from_secret_json(&text) {
                    keys.insert(pair.access_key_id);
                }
            }
        }
        Ok(keys)
    }

    /// The base-key secrets profiles name (an outdated profile's too).
    async fn base_secrets(&self) -> Result<HashSet<String>, HygieneError> {
        let mut secrets = HashSet::new();
        let mut next = None;
        loop {
            let (profiles, more) = self
                .profiles
                .list(100, next.as_ref())
                .await
                .map_err(|e| HygieneError::Iam(AwsFailure::other(e.to_string())))?;
            for p in profiles {
                let p = match p {
                    Ok(p) => p,
                    Err(outdated) => {
                        if let Some(id) = outdated.doc["source_secret_id"].as_str() {
                            secrets.insert(id.to_owned());
                        }
                        continue;
                    }
                };
                match p.kind {
                    Kind::SessionToken {
                        source_secret_id, ..
                    }
                    | Kind::FederationToken {
                        source_secret_id, ..
                    } => {
                        secrets.insert(source_secret_id);
                    }
                    Kind::AssumedRole {
                        source_secret_id: Some(s),
                        ..
                    } => {
                        secrets.insert(s);
                    }
                    _ => {}
                }
            }
            match more.map(|m| crate::names::ProfileName::parse("next", &m)) {
                Some(Ok(m)) => next = Some(m),
                _ => break,
            }
        }
        Ok(secrets)
    }

    async fn policy_secrets(&self) -> Result<HashSet<String>, HygieneError> {
        let mut out = HashSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let (policies, more) = self
                .policies
                .list(100, cursor.as_deref())
                .await
                .map_err(|e| HygieneError::Iam(AwsFailure::other(e.to_string())))?;
            out.extend(policies.into_iter().map(|p| p.secret_id));
            match more {
                Some(m) => cursor = Some(m),
                None => return Ok(out),
            }
        }
    }

    /// Secrets whose rotation Lambda is Keysmith's (whatever their schedule).
    async fn secrets_naming_keysmith(&self) -> Result<HashSet<String>, HygieneError> {
        let Some(function) = self.rotation_function else {
            return Ok(HashSet::new());
        };
        let pages: Vec<aws_sdk_secretsmanager::operation::list_secrets::ListSecretsOutput> = self
            .secrets
            .list_secrets()
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| HygieneError::Iam(classify(e)))?;
        Ok(pages
            .into_iter()
            .flat_map(|p| p.secret_list.unwrap_or_default())
            .filter(|s| s.rotation_lambda_arn.as_deref() == Some(function))
            .filter_map(|s| s.arn.or(s.name))
            .collect())
    }

    async fn secret_string(&self, id: &str, stage: &str) -> Result<Option<String>, HygieneError> {
        let out = self
            .secrets
            .get_secret_value()
            .secret_id(id)
            .version_stage(stage)
            .send()
            .await
            .map_err(classify);
        match out {
            Ok(o) => Ok(o.secret_string),
            // No such secret, or no version in that stage; or a secret outside the prefix
            // Keysmith may read (its function could not rotate it either).
            Err(f) if matches!(f.kind, FailureKind::NotFound | FailureKind::Denied) => Ok(None),
            Err(f) => Err(HygieneError::Iam(f)),
        }
    }
}
