//! The IAM side of a target: its inline policies (read for the quota they leave, and once to
//! import a deny set written by an older version), and the `keysmith-revocations` write.

use super::policy::{Document, TargetKind, POLICY_NAME};
use super::target::Target;
use super::RevocationError;
use crate::aws::{classify, FailureKind};

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

/// What IAM holds on a target besides what the deny set says.
pub(super) struct Inline {
    /// Characters of the target's other inline policies (IAM's quota is on all of them).
    pub others: usize,
    /// The `keysmith-revocations` document IAM holds now (only read to import it).
    pub current: Option<Document>,
}

pub(super) async fn read(
    iam: &aws_sdk_iam::Client,
    target: &Target,
) -> Result<Inline, RevocationError> {
    let mut names = Vec::new();
    let mut marker = None;
    loop {
        let (page, truncated, next) = match target.kind {
            TargetKind::Role => {
                let out = iam
                    .list_role_policies()
                    .role_name(&target.name)
                    .set_marker(marker.take())
                    .send()
                    .await
                    .map_err(|e| target.iam_error("ListRolePolicies", classify(e)))?;
                (out.policy_names, out.is_truncated, out.marker)
            }
            TargetKind::User => {
                let out = iam
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
    let mut inline = Inline {
        others: 0,
        current: None,
    };
    for name in names {
        let text = get_policy(iam, target, &name).await?;
        if name == POLICY_NAME {
            // A document Keysmith cannot read is kept whole, as foreign statements cannot be
            // parsed either: refuse rather than overwrite somebody's policy.
            inline.current = Some(Document::parse(&text).ok_or_else(|| {
                RevocationError::Target(format!(
                    "the inline policy {POLICY_NAME} of {} is not a policy Keysmith can read",
                    target.arn
                ))
            })?);
        } else {
            inline.others += chars(&text);
        }
    }
    Ok(inline)
}

async fn get_policy(
    iam: &aws_sdk_iam::Client,
    target: &Target,
    name: &str,
) -> Result<String, RevocationError> {
    let text = match target.kind {
        TargetKind::Role => {
            iam.get_role_policy()
                .role_name(&target.name)
                .policy_name(name)
                .send()
                .await
                .map_err(|e| target.iam_error("GetRolePolicy", classify(e)))?
                .policy_document
        }
        TargetKind::User => {
            iam.get_user_policy()
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
pub(super) async fn write(
    iam: &aws_sdk_iam::Client,
    target: &Target,
    doc: &Document,
) -> Result<(), RevocationError> {
    let text = doc.to_json();
    let result = match (target.kind, doc.is_empty()) {
        (TargetKind::Role, false) => iam
            .put_role_policy()
            .role_name(&target.name)
            .policy_name(POLICY_NAME)
            .policy_document(text)
            .send()
            .await
            .map(drop)
            .map_err(|e| target.iam_error("PutRolePolicy", classify(e))),
        (TargetKind::User, false) => iam
            .put_user_policy()
            .user_name(&target.name)
            .policy_name(POLICY_NAME)
            .policy_document(text)
            .send()
            .await
            .map(drop)
            .map_err(|e| target.iam_error("PutUserPolicy", classify(e))),
        (TargetKind::Role, true) => iam
            .delete_role_policy()
            .role_name(&target.name)
            .policy_name(POLICY_NAME)
            .send()
            .await
            .map(drop)
            .map_err(|e| target.iam_error("DeleteRolePolicy", classify(e))),
        (TargetKind::User, true) => iam
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoded_policies_are_decoded() {
        assert_eq!(decode_policy("%7B%22a%22%3A1%7D"), "{\"a\":1}");
        assert_eq!(decode_policy("{\"a\":1}"), "{\"a\":1}");
    }
}
