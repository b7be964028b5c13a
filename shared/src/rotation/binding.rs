//! SPEC §6 binding, by the secret's full ARN only (§6a, issue 22): an IAM user is rotated only if
//! its tag `keysmith:rotation-secret` names this very secret. A name is ambiguous over time (a
//! secret deleted and re-created under it has a new ARN), so a tag holding the name is accepted
//! once: the first rotation records the ARN it saw in the state table
//! (`pk = "rotation-binding"`, `sk = <secret name>`), and every later rotation requires it.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::admin::Admin;
use super::{aws, RotationError, Rotator, Versions, BINDING_TAG};
use crate::aws::{classify, FailureKind};

const PK: &str = "rotation-binding";

impl Rotator {
    /// The user must carry the binding tag naming this secret, read in the account where the
    /// rotation acts: whoever can write a secret cannot aim it at a user.
    pub(super) async fn check_binding(
        &self,
        admin: &Admin,
        user: &str,
        versions: &Versions,
    ) -> Result<(), RotationError> {
        let tags: Vec<aws_sdk_iam::types::Tag> = admin
            .iam
            .list_user_tags()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| aws("ListUserTags", e))?;
        let unbound = |reason: String| RotationError::Unbound {
            user: user.to_owned(),
            secret: versions.arn.clone(),
            reason,
        };
        let Some(tag) = tags.iter().find(|t| t.key == BINDING_TAG) else {
            return Err(unbound(format!(
                "it needs the tag {BINDING_TAG} with the secret's ARN"
            )));
        };
        if tag.value == versions.arn {
            return Ok(());
        }
        if tag.value != versions.name {
            return Err(unbound(format!(
                "its tag {BINDING_TAG} names another secret"
            )));
        }
        self.pin_arn(versions).await.map_err(|e| match e {
            None => unbound(format!(
                "its tag {BINDING_TAG} holds the name {}, which was first rotated as another \
                 secret (deleted and re-created?); tag the user with this secret's ARN",
                versions.name
            )),
            Some(e) => e,
        })
    }

    /// Records the ARN a name-bound secret was first rotated as; `Err(None)` when another ARN was
    /// recorded for that name.
    async fn pin_arn(&self, versions: &Versions) -> Result<(), Option<RotationError>> {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let out = self
            .clients
            .dynamodb
            .put_item()
            .table_name(&self.state_table)
            .set_item(Some(HashMap::from([
                ("pk".to_owned(), s(PK)),
                ("sk".to_owned(), s(&versions.name)),
                ("arn".to_owned(), s(&versions.arn)),
            ])))
            .condition_expression("attribute_not_exists(sk) OR #a = :a")
            .expression_attribute_names("#a", "arn")
            .expression_attribute_values(":a", s(&versions.arn))
            .send()
            .await
            .map_err(classify);
        match out {
            Ok(_) => Ok(()),
            Err(f) if f.kind == FailureKind::ConditionFailed => Err(None),
            Err(f) => Err(Some(RotationError::Aws {
                call: "PutItem",
                failure: f,
            })),
        }
    }
}
