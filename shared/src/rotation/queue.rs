//! RotationQueue's message (SPEC §14): `{"rotation": "<policy name>"}`, identifiers only, never a
//! secret. The scheduled run ([`crate::jobs`]) and rotate-now send it; the queue's workers read it.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::aws::{classify, AwsFailure};
use crate::names::ProfileName;

/// The body of a rotation message.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RotationMessage {
    pub rotation: String,
}

impl RotationMessage {
    pub fn body(policy: &str) -> String {
        json!({ "rotation": policy }).to_string()
    }

    /// The policy a message names, if it is a well-formed rotation message.
    pub fn parse(body: &str) -> Option<ProfileName> {
        let m: Self = serde_json::from_str(body).ok()?;
        ProfileName::parse("rotation", &m.rotation).ok()
    }
}

/// Sends one rotation message (rotate-now's: the same as the scheduled run's), visible after
/// `delay_seconds` (a throttled rotation's retry) or at once.
pub async fn enqueue(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    policy: &str,
    delay_seconds: Option<i32>,
) -> Result<(), AwsFailure> {
    sqs.send_message()
        .queue_url(queue_url)
        .message_body(RotationMessage::body(policy))
        .set_delay_seconds(delay_seconds)
        .send()
        .await
        .map(drop)
        .map_err(classify)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_names_a_policy_and_nothing_else() {
        let body = RotationMessage::body("ci-deployer");
        assert_eq!(body, r#"{"rotation":"ci-deployer"}"#);
        assert_eq!(
            RotationMessage::parse(&body).map(|n| n.to_string()),
            Some("ci-deployer".to_owned())
        );
        for bad in [
            "",
            "{}",
            r#"{"rotation": 5}"#,
            r#"{"rotation": "../x"}"#,
            r#"{"rotation": "a", "secret": "x"}"#,
        ] {
            assert_eq!(RotationMessage::parse(bad), None, "{bad}");
        }
    }
}
