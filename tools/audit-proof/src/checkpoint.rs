//! A signed checkpoint: what it signs, its own hash (the next one's `previous`), its signature.

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::canonical::{canonical, sha256_hex};
use crate::ProofError;

/// `previous` of the very first checkpoint.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One sealed period (SPEC §13).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// RFC 3339 UTC, whole seconds, e.g. "2026-12-04T20:35:00Z".
    pub period_start: String,
    /// The period is [period_start, period_end).
    pub period_end: String,
    /// How many items the period holds.
    pub count: u64,
    /// [`merkle_root`](crate::merkle_root) of the period's item hashes in (time, id) order.
    pub root: String,
    /// [`Checkpoint::hash`] of the checkpoint before, or [`GENESIS`].
    pub previous: String,
    /// The KMS key that signed it.
    pub key_id: String,
    /// Base64 (standard, padded) of a DER ECDSA P-256 signature of [`Checkpoint::signed_message`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Checkpoint {
    /// The bytes that are signed: canonical JSON of the checkpoint without `signature`.
    pub fn signed_message(&self) -> Vec<u8> {
        let unsigned = Checkpoint {
            signature: None,
            ..self.clone()
        };
        unsigned.canonical().into_bytes()
    }

    /// Lowercase hex SHA-256 of the canonical JSON *with* `signature` (the next checkpoint's
    /// `previous`).
    pub fn hash(&self) -> String {
        sha256_hex(self.canonical().as_bytes())
    }

    /// Whether `signature` is a valid ECDSA_SHA_256 signature of [`Checkpoint::signed_message`]
    /// under the P-256 public key given as DER SubjectPublicKeyInfo (what KMS GetPublicKey
    /// returns).
    pub fn signature_valid(&self, spki_der: &[u8]) -> bool {
        let Some(signature) = self
            .signature
            .as_deref()
            .and_then(|s| STANDARD.decode(s).ok())
        else {
            return false;
        };
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, spki_der)
            .verify(&self.signed_message(), &signature)
            .is_ok()
    }

    fn canonical(&self) -> String {
        // Serialising a struct of strings and an integer cannot fail; `Null` would only make
        // every check fail, never pass.
        canonical(&serde_json::to_value(self).unwrap_or_default())
    }
}

/// PEM "-----BEGIN PUBLIC KEY-----" (SubjectPublicKeyInfo) to DER.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, ProofError> {
    const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
    const END: &str = "-----END PUBLIC KEY-----";
    let body = pem
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(body, _)| body)
        .ok_or(ProofError::NoPublicKeyPem)?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD
        .decode(b64)
        .map_err(|e| ProofError::BadPem(e.to_string()))?;
    if der.is_empty() {
        return Err(ProofError::BadPem("the block is empty".into()));
    }
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            period_start: "2026-12-04T20:35:00Z".into(),
            period_end: "2026-12-04T20:40:00Z".into(),
            count: 2,
            root: "ab".repeat(32),
            previous: GENESIS.into(),
            key_id: "arn:aws:kms:eu-west-1:123456789012:key/k".into(),
            signature: Some("c2ln".into()),
        }
    }

    #[test]
    fn the_signed_message_is_the_canonical_json_without_the_signature() {
        let c = sample();
        let expected = format!(
            r#"{{"count":2,"key_id":"arn:aws:kms:eu-west-1:123456789012:key/k","period_end":"2026-12-04T20:40:00Z","period_start":"2026-12-04T20:35:00Z","previous":"{GENESIS}","root":"{}"}}"#,
            "ab".repeat(32)
        );
        assert_eq!(String::from_utf8(c.signed_message()).unwrap(), expected);
        // With the signature, which sorts last.
        let with = format!(
            "{},\"signature\":\"c2ln\"}}",
            &expected[..expected.len() - 1]
        );
        assert_eq!(c.hash(), sha256_hex(with.as_bytes()));
    }

    #[test]
    fn serde_round_trips_and_leaves_out_no_signature() {
        let c = sample();
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(serde_json::from_value::<Checkpoint>(json).unwrap(), c);
        let unsigned = Checkpoint {
            signature: None,
            ..c
        };
        let json = serde_json::to_value(&unsigned).unwrap();
        assert!(json.get("signature").is_none());
        assert_eq!(
            serde_json::from_value::<Checkpoint>(json).unwrap(),
            unsigned
        );
    }

    #[test]
    fn no_signature_or_garbage_is_not_valid() {
        let c = Checkpoint {
            signature: None,
            ..sample()
        };
        assert!(!c.signature_valid(b"not a key"));
        assert!(!sample().signature_valid(b"not a key"));
    }

    #[test]
    fn pem_needs_a_public_key_block() {
        assert!(matches!(
            pem_to_der("hello"),
            Err(ProofError::NoPublicKeyPem)
        ));
        assert!(matches!(
            pem_to_der("-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----\n"),
            Err(ProofError::BadPem(_))
        ));
        assert_eq!(
            pem_to_der("junk\n-----BEGIN PUBLIC KEY-----\nAAEC\nAw==\n-----END PUBLIC KEY-----\n")
                .unwrap(),
            vec![0, 1, 2, 3]
        );
    }
}
