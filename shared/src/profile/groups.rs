//! `iam_groups` at `PUT`: every group must exist under the deployment's lease group path
//! (`KEYSMITH_LEASE_GROUP_PATH`, the template's `LeaseGroupPath`), the only groups the template
//! lets issue-credentials add lease users to. A profile naming another group would be stored and
//! then fail every issuance with IAM's `AccessDenied`; a profile carries group names only, so the
//! path is read from IAM (`GetGroup`, which the template grants on that path only: a group
//! elsewhere answers `AccessDenied`, which means the same thing here).

use aws_sdk_iam::Client;

use super::{Kind, Profile};
use crate::aws::{classify, AwsFailure, FailureKind};
use crate::names::Invalid;

/// `Ok(Err(_))`: the profile is wrong (a `400`); `Err(_)`: IAM failed (a `502`).
pub async fn check_lease_groups(
    iam: &Client,
    profile: &Profile,
    group_path: &str,
) -> Result<Result<(), Invalid>, AwsFailure> {
    let Kind::IamUser { iam_groups, .. } = &profile.kind else {
        return Ok(Ok(()));
    };
    for (i, group) in iam_groups.iter().enumerate() {
        let field = format!("iam_groups[{i}]");
        let outside = || {
            Invalid::new(
                field.clone(),
                format!("group {group} is not under the lease group path {group_path}: lease users may join only those groups"),
            )
        };
        match iam.get_group().group_name(group).max_items(1).send().await {
            Ok(out) => {
                let path = out.group.map(|g| g.path).unwrap_or_default();
                if !path.starts_with(group_path) {
                    return Ok(Err(outside()));
                }
            }
            Err(e) => {
                let f = classify(e);
                match f.kind {
                    FailureKind::NotFound => {
                        return Ok(Err(Invalid::new(
                            field,
                            format!("group {group} does not exist"),
                        )))
                    }
                    FailureKind::Denied => return Ok(Err(outside())),
                    _ => return Err(f),
                }
            }
        }
    }
    Ok(Ok(()))
}
