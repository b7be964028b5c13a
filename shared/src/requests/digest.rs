//! What an approver approves (SPEC §12): the lowercase hex SHA-256 of the request's canonical JSON
//! (RFC 8785: keys sorted, no whitespace) over exactly requester, profile, duration, ticket,
//! reason, break_glass and created_at. A change to any of them is another digest, so an approval
//! cannot be carried over to something else.

use serde_json::json;
use sha2::{Digest, Sha256};

/// The fields the digest binds.
pub struct Bound<'a> {
    pub requester: &'a str,
    pub profile: &'a str,
    pub duration: u32,
    pub ticket: Option<&'a str>,
    pub reason: &'a str,
    pub break_glass: bool,
    /// As the API shows it (`format_time`).
    pub created_at: &'a str,
}

impl Bound<'_> {
    pub fn canonical(&self) -> String {
        keysmith_audit_proof::canonical(&json!({
            "requester": self.requester,
            "profile": self.profile,
            "duration": self.duration,
            "ticket": self.ticket,
            "reason": self.reason,
            "break_glass": self.break_glass,
            "created_at": self.created_at,
        }))
    }

    pub fn digest(&self) -> String {
        Sha256::digest(self.canonical().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_and_digest() {
        let b = Bound {
            requester: "arn:aws:iam::123456789012:user/alice",
            profile: "deploy",
            duration: 3600,
            ticket: None,
            reason: "fix \"prod\"",
            break_glass: false,
            created_at: "2026-11-21T15:04:05.000000Z",
        };
        assert_eq!(
            b.canonical(),
            r#"{"break_glass":false,"created_at":"2026-11-21T15:04:05.000000Z","duration":3600,"profile":"deploy","reason":"fix \"prod\"","requester":"arn:aws:iam::123456789012:user/alice","ticket":null}"#
        );
        let d = b.digest();
        assert_eq!(d.len(), 64);
        assert!(d
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let other = Bound {
            duration: 3601,
            ..b
        };
        assert_ne!(other.digest(), d);
    }
}
