//! Prints, as JSON, the IAM policies Keysmith's code writes, rendered by the code itself (never
//! copied by hand), for the IAM simulator in `make lint` (SPEC §18): `keysmith-lease-expiry` of a
//! lease user, and `keysmith-revocations` on a profile role and on a base user with an entry of
//! every kind (revoked leases, a profile cut-off, every session token of the user), and a lease
//! user's `keysmith-scope-down` (SPEC §16) for a request that allowed two S3 actions on one
//! bucket. `values` are
//! the sample times and names the expectation tables refer to as `{{code.<name>}}`.

use chrono::{DateTime, Duration, TimeZone, Utc};
use keysmith::issue::ScopeDown;
use keysmith::revocation::policy::{Document, POLICY_NAME};
use keysmith::users::{expiry_policy, EXPIRY_POLICY, SCOPE_DOWN_POLICY};
use serde_json::{json, Value};

fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).expect("the code renders JSON")
}

fn main() {
    let expires = Utc.with_ymd_and_hms(2026, 11, 21, 15, 0, 0).unwrap();
    let cutoff = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();

    // A role's policy: two revoked leases of one profile, and another profile's cut-off.
    let mut role = Document::default();
    role.add_lease("deploy", "lease-revoked-1", expires);
    role.add_lease("deploy", "lease-revoked-2", expires - Duration::minutes(30));
    role.add_cutoff(Some("deploy-old"), cutoff);
    role.add_sources(cutoff, &["alice".to_owned()]);

    // A base user's: a revoked federation lease, a profile cut-off and every session token.
    let mut user = Document::default();
    user.add_lease("federated", "lease-revoked-3", expires);
    user.add_cutoff(Some("federated-old"), cutoff);
    user.add_cutoff(None, cutoff);

    // A request's scope-down of a lease user (rendered by the issuance code).
    let scope = ScopeDown {
        document: Some(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": ["s3:GetObject", "s3:ListBucket"],
                "Resource": ["arn:aws:s3:::team-bucket", "arn:aws:s3:::team-bucket/*"]}]})
            .to_string(),
        ),
        arns: None,
    };
    let scope_down = scope
        .user_scope_down()
        .expect("a one-statement Allow scopes down");

    let out = json!({
        "policies": {
            EXPIRY_POLICY: parsed(&expiry_policy(expires)),
            SCOPE_DOWN_POLICY: parsed(&scope_down),
            format!("{POLICY_NAME}@role"): parsed(&role.to_json()),
            format!("{POLICY_NAME}@user"): parsed(&user.to_json()),
        },
        "values": {
            "lease_expires": iso(expires),
            "before_expiry": iso(expires - Duration::minutes(1)),
            "after_expiry": iso(expires + Duration::seconds(1)),
            "cutoff": iso(cutoff),
            "before_cutoff": iso(cutoff - Duration::minutes(5)),
            "after_cutoff": iso(cutoff + Duration::minutes(5)),
            "now": iso(cutoff + Duration::minutes(10)),
            "revoked_lease": "lease-revoked-1",
            "revoked_lease_2": "lease-revoked-2",
            "revoked_federation_lease": "lease-revoked-3",
            "live_lease": "lease-live",
            "revoked_profile": "deploy",
            "cut_profile": "deploy-old",
            "federation_profile": "federated",
            "federation_cut_profile": "federated-old",
        },
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&out).expect("JSON values serialize")
    );
}
