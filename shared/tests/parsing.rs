//! Property tests of everything that parses outside input (bodies, events, names, secrets):
//! arbitrary input never panics, and every refusal names a field.

// An integration-test crate: failing by panic is how tests fail.
#![allow(clippy::unwrap_used)]

use keysmith::issue::Issuance;
use keysmith::names::{DurationSeconds, PrincipalPattern, ProfileName, RoleArn, SessionName};
use keysmith::profile::Profile;
use keysmith::rotation::policy::Policy;
use keysmith::rotation::{RotatedSecret, RotationEvent};
use proptest::prelude::*;

fn name() -> ProfileName {
    ProfileName::parse("name", "p").unwrap()
}

/// JSON-shaped text built from the fields the parsers know, with arbitrary values: reaches deeper
/// than random bytes, which mostly stop at the first character.
fn json_like() -> impl Strategy<Value = String> {
    let keys = prop::sample::select(vec![
        "credential_type",
        "role_arn",
        "source_secret_id",
        "policy_document",
        "policy_arns",
        "session_tags",
        "duration_seconds",
        "token_code",
        "session_name",
        "default_duration_seconds",
        "max_duration_seconds",
        "allowed_principals",
        "sts_endpoint",
        "sts_region",
        "iam_groups",
        "user_path",
        "secret_id",
        "interval_days",
        "rotation_hour_utc",
        "enabled",
        "user_name",
        "mode",
        "access_key_id",
        "secret_access_key",
        "assume_role_arn",
        "Step",
        "SecretId",
        "ClientRequestToken",
        "unknown",
    ]);
    let values = prop_oneof![
        Just("null".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        ".{0,40}".prop_map(|s| serde_json::Value::String(s).to_string()),
        prop::sample::select(vec![
            "\"assumed_role\"",
            "\"session_token\"",
            "\"federation_token\"",
            "\"iam_user\"",
            "\"arn:aws:iam::123456789012:role/r\"",
            "[]",
            "{}",
            "[\"*\"]",
            "{\"Statement\": []}",
            "\"createSecret\"",
            "\"graceful\"",
            "900",
            "129601",
            "\"123456\"",
        ])
        .prop_map(str::to_owned),
    ];
    prop::collection::vec((keys, values), 0..8).prop_map(|fields| {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("\"{k}\": {v}"))
            .collect();
        format!("{{{}}}", body.join(", "))
    })
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_like().prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn profile_bodies(body in input()) {
        if let Err(e) = Profile::parse(name(), &body) {
            prop_assert!(!e.field.is_empty());
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn issue_bodies(body in input()) {
        let profile = Profile::parse(
            name(),
            br#"{"credential_type": "session_token", "source_secret_id": "s", "mfa_serial_number": "arn:aws:iam::123456789012:mfa/a"}"#,
        ).unwrap();
        if let Err(e) = Issuance::parse(&profile, &body) {
            prop_assert!(!e.field.is_empty());
        }
    }

    #[test]
    fn policy_bodies(body in input()) {
        if let Err(e) = Policy::parse(name(), &body) {
            prop_assert!(!e.field.is_empty());
        }
    }

    #[test]
    fn rotated_secrets_never_echo_their_content(body in input()) {
        let text = String::from_utf8_lossy(&body);
        if let Err(e) = RotatedSecret::parse(&text) {
            // The error describes; it never quotes the secret (here: any long run of the input).
            prop_assert!(text.len() < 12 || !e.contains(&text[..]), "{}", e);
        }
    }

    #[test]
    fn rotation_events(body in input()) {
        let _ = serde_json::from_slice::<RotationEvent>(&body);
    }

    #[test]
    fn names_and_patterns(s in ".{0,80}", n in any::<i64>()) {
        for result in [
            ProfileName::parse("name", &s).map(drop),
            RoleArn::parse("role_arn", &s).map(drop),
            SessionName::parse("session_name", &s).map(drop),
            PrincipalPattern::parse("p", &s).map(drop),
            DurationSeconds::parse("duration_seconds", n, 900, 129_600).map(drop),
        ] {
            if let Err(e) = result {
                prop_assert!(!e.field.is_empty());
            }
        }
        if let Ok(p) = PrincipalPattern::parse("p", &s) {
            prop_assert!(p.matches(p.as_str()) || p.as_str().contains('*'));
        }
    }
}
