//! Live-lease counts (SPEC §5 `max_active_leases`, §10a): one per caller and profile, and one per
//! profile in all, in `pk = "lease-count"`. They change in the same transaction as a lease's birth
//! and its end, so a cap holds under concurrent requests (a count over an index would be
//! eventually consistent).
//!
//! A caller is counted by who they are, not by what they call their session: an assumed-role
//! caller (`arn:aws:sts::<account>:assumed-role/<role>/<session>`) counts as its role, so renaming
//! sessions does not escape the cap. The counter's key is stored on the lease, so a later change
//! of this rule still decrements the counter the lease was counted in.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

use super::{build_err, LeaseError};

pub(super) const COUNT_PK: &str = "lease-count";
/// Live leases of one profile, all callers together: a ceiling on what one profile can put into a
/// role's revocation policy, whatever each caller's cap.
pub const PROFILE_LIVE_LIMIT: u32 = 1_000;

/// Who a caller is for counting: the role of an assumed-role session, else the principal itself.
pub fn counting_identity(principal: &str) -> String {
    let Some(rest) = principal.strip_prefix("arn:") else {
        return principal.to_owned();
    };
    let parts: Vec<&str> = rest.splitn(5, ':').collect();
    if let [partition, "sts", "", account, resource] = parts.as_slice() {
        if let Some(role_session) = resource.strip_prefix("assumed-role/") {
            if let Some((role, _session)) = role_session.split_once('/') {
                return format!("arn:{partition}:iam::{account}:role/{role}");
            }
        }
    }
    principal.to_owned()
}

/// The caller's counter (`<profile>#<identity>`; profile names cannot contain `#`).
pub fn caller_counter(profile: &str, principal: &str) -> String {
    format!("{profile}#{}", counting_identity(principal))
}

fn key(sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(COUNT_PK.to_owned())),
        ("sk".to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

fn n(v: u32) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// One more on the caller's counter (below `max`) and on the profile's (below its limit).
pub(super) fn increments(
    table: &str,
    counter: &str,
    profile: &str,
    max: u32,
) -> Result<[TransactWriteItem; 2], LeaseError> {
    let one = |sk: &str, limit: u32| {
        Update::builder()
            .table_name(table)
            .set_key(Some(key(sk)))
            .update_expression("SET live = if_not_exists(live, :zero) + :one")
            .condition_expression("attribute_not_exists(live) OR live < :max")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(limit))
            .build()
            .map(|u| TransactWriteItem::builder().update(u).build())
            .map_err(build_err)
    };
    Ok([one(counter, max)?, one(profile, PROFILE_LIVE_LIMIT)?])
}

/// One less on the caller's counter (never below zero) and on the profile's. The profile counter
/// is decremented without a condition: leases counted before it existed would otherwise block
/// their own end; it can at worst run below the real number by those leases.
pub(super) fn decrements(
    table: &str,
    counter: &str,
    profile: &str,
) -> Result<[TransactWriteItem; 2], LeaseError> {
    let caller = Update::builder()
        .table_name(table)
        .set_key(Some(key(counter)))
        .update_expression("SET live = live - :one")
        .condition_expression("live > :zero")
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":one", n(1))
        .build()
        .map_err(build_err)?;
    let total = Update::builder()
        .table_name(table)
        .set_key(Some(key(profile)))
        .update_expression("ADD live :minus")
        .expression_attribute_values(":minus", AttributeValue::N("-1".into()))
        .build()
        .map_err(build_err)?;
    Ok([
        TransactWriteItem::builder().update(caller).build(),
        TransactWriteItem::builder().update(total).build(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_of_one_role_count_as_the_role() {
        assert_eq!(
            counting_identity("arn:aws:sts::123456789012:assumed-role/Deployers/alice"),
            "arn:aws:iam::123456789012:role/Deployers"
        );
        assert_eq!(
            counting_identity("arn:aws:sts::123456789012:assumed-role/Deployers/renamed-1"),
            counting_identity("arn:aws:sts::123456789012:assumed-role/Deployers/renamed-2"),
        );
        assert_eq!(
            counting_identity("arn:aws-cn:sts::123456789012:assumed-role/R/s"),
            "arn:aws-cn:iam::123456789012:role/R"
        );
        for same in [
            "arn:aws:iam::123456789012:user/alice",
            "jwt:https://issuer|sub",
            "arn:aws:sts::123456789012:federated-user/bob",
        ] {
            assert_eq!(counting_identity(same), same);
        }
    }
}
