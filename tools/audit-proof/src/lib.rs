//! Offline proof of Keysmith's audit trail (SPEC §13, docs/audit-integrity.md).
//!
//! Every audit item carries `hash`, the SHA-256 of its RFC 8785 canonical JSON without `hash`.
//! Every closed period is sealed by a checkpoint: the count and RFC 6962 Merkle root of its items'
//! hashes in (time, id) order, the hash of the checkpoint before it, signed with a KMS ECDSA P-256
//! key. [`verify`] checks a window of items against its checkpoints with nothing but the public
//! key: no trust in the server that returned them. The sealer and the client both build on this
//! crate, so they cannot disagree on a byte.

mod canonical;
mod checkpoint;
mod merkle;
mod verify;

pub use canonical::{canonical, item_hash};
pub use checkpoint::{pem_to_der, Checkpoint, GENESIS};
pub use merkle::merkle_root;
pub use verify::{verify, Problem, Report};

/// What cannot be computed at all (as opposed to a [`Problem`] found in the trail).
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// A Merkle leaf that is not a SHA-256 digest in hex.
    #[error("leaf {index} is not a SHA-256 digest (64 hex characters): {value:?}")]
    BadLeaf { index: usize, value: String },
    /// No `-----BEGIN PUBLIC KEY-----` … `-----END PUBLIC KEY-----` block.
    #[error("no \"-----BEGIN PUBLIC KEY-----\" block (a PEM SubjectPublicKeyInfo) found")]
    NoPublicKeyPem,
    /// The block is not base64.
    #[error("the public key block is not valid base64: {0}")]
    BadPem(String),
}
