//! IAM access-key rotation (SPEC §6, §6a): the Secrets Manager rotation protocol and its guards
//! (`protocol`), the key engine that makes, proves and retires keys (`engine`), the two-key check
//! that trusts no listing (`keys`), the user's binding to the secret's ARN (`binding`), the
//! identity the IAM calls are signed with (`admin`), and the per-secret lock (`lock`).
//!
//! Every step re-reads its state from Secrets Manager and IAM, so any step can be re-run after a
//! crash at any point and converges. One rotation runs at a time per secret; no step deletes a
//! key that `AWSCURRENT`, `AWSPENDING`, graceful `AWSPREVIOUS` or the admin holds (apart from
//! `delete_first`'s own deletion); a user is rotated only when tagged for the secret.

mod admin;
mod binding;
mod engine;
mod finish;
mod keys;
mod lock;
mod on_demand;
pub mod policy;
mod protocol;
mod quarantine;
pub mod queue;
mod retire;
mod secret;
mod session;
mod store;

pub use on_demand::{
    request_now, rotate_policy, run_due_policy, PolicyRotationError, PolicyRun, Wake,
    EVENT_REQUESTED, ROTATION_REQUESTED,
};
pub use retire::{Retirement, EVENT_RETIRED, EVENT_RETIREMENT_OVERDUE};
pub use secret::{Mode, RotatedSecret};

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::audit::{AuditError, AuditLog, Origin};
use crate::aws::{classify, AwsFailure, Clients, FailureKind};

pub const CURRENT: &str = "AWSCURRENT";
pub const PENDING: &str = "AWSPENDING";
pub const PREVIOUS: &str = "AWSPREVIOUS";
pub const EVENT_ROTATED: &str = "Access Key Rotated";
pub const EVENT_STEP: &str = "Access Key Rotation Step";
pub const EVENT_FAILED: &str = "Access Key Rotation Failed";
pub const EVENT_ABANDONED: &str = "Access Key Rotation Abandoned";
pub use crate::audit::{EVENT_SHADOW_DELETED, EVENT_SHADOW_DETECTED};
/// A key a rotation (or its crashed attempt) created that no version records, deleted by it.
pub const EVENT_ORPHAN_DELETED: &str = "Orphan Access Key Deleted";
/// The tag that binds an IAM user to the one secret allowed to rotate its keys.
pub const BINDING_TAG: &str = "keysmith:rotation-secret";
/// How long `testSecret` waits for IAM to accept a new key.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a step waits for another invocation's step of the same rotation (a duplicate
/// delivery) before it fails as locked: longer than a whole `testSecret`.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);
/// A hook step's hold on the lock when the invocation's deadline is unknown: the function's
/// timeout in `template.yaml`.
pub const HOOK_STEP_HOLD: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Step {
    #[serde(rename = "createSecret")]
    Create,
    #[serde(rename = "setSecret")]
    Set,
    #[serde(rename = "testSecret")]
    Test,
    #[serde(rename = "finishSecret")]
    Finish,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "createSecret",
            Self::Set => "setSecret",
            Self::Test => "testSecret",
            Self::Finish => "finishSecret",
        }
    }
}

/// The event Secrets Manager sends a rotation function. `aws_lambda_events` lacks
/// `RotationToken`, so this is the project's own. Unknown fields are ignored: Secrets Manager has
/// added fields before, and refusing them would stop every rotation until a redeploy.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotationEvent {
    pub step: Step,
    pub secret_id: String,
    pub client_request_token: String,
    #[serde(default)]
    pub rotation_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("rotation is not enabled for secret {0}")]
    NotEnabled(String),
    #[error("token {token} is not a version of secret {secret}")]
    UnknownToken { secret: String, token: String },
    #[error("version {token} of secret {secret} is not AWSPENDING")]
    NotPending { secret: String, token: String },
    #[error("secret {secret}: {reason}")]
    BadSecret { secret: String, reason: String },
    #[error("{call} failed: {failure}")]
    Aws {
        call: &'static str,
        failure: AwsFailure,
    },
    #[error("the pending key of {user} was not accepted by STS within {} s", TEST_TIMEOUT.as_secs())]
    NotReady { user: String },
    #[error(
        "rotation {token} of user {user} was abandoned ({reason}); the next rotation starts again"
    )]
    Abandoned {
        user: String,
        token: String,
        reason: String,
    },
    #[error("user {user} has no room for a new key: {reason}")]
    NoRoom { user: String, reason: String },
    #[error("delete_first cannot rotate the key the rotation itself signs with")]
    SelfDeleteFirst,
    #[error("user {user} is not bound to secret {secret}: {reason}")]
    Unbound {
        user: String,
        secret: String,
        reason: String,
    },
    #[error("another rotation of secret {secret} is in progress")]
    Locked { secret: String },
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl RotationError {
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            Self::Aws { failure, .. } => failure.kind,
            _ => FailureKind::Other,
        }
    }

    /// The AWS error code, for the failed step's audit item.
    fn code(&self) -> &str {
        match self {
            Self::Aws { failure, .. } => failure.code.as_deref().unwrap_or("none"),
            Self::NotEnabled(_) => "RotationNotEnabled",
            Self::UnknownToken { .. } | Self::NotPending { .. } => "InvalidToken",
            Self::BadSecret { .. } => "BadSecret",
            Self::NotReady { .. } => "KeyNotReady",
            Self::Abandoned { .. } => "PendingKeyGone",
            Self::NoRoom { .. } | Self::SelfDeleteFirst => "NoRoom",
            Self::Unbound { .. } => "UserNotBound",
            Self::Locked { .. } => "RotationInProgress",
            Self::Audit(_) => "AuditUnavailable",
        }
    }
}

#[derive(Clone)]
pub struct Rotator {
    clients: Clients,
    audit: AuditLog,
    /// The state table: the per-secret lock and the audit items' write-once markers.
    state_table: String,
    test_timeout: Duration,
    lock_wait: Duration,
    /// `KEYSMITH_ROTATOR_ROLE_ARN`: see `session`.
    rotator_role: Option<String>,
    /// Ignore `admin_secret_id` and act with the function's own identity (the quarantine
    /// response: the quarantine policy denies a user acting on its own keys).
    own_identity: bool,
}

impl std::fmt::Debug for Rotator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotator").finish_non_exhaustive()
    }
}

impl Rotator {
    pub fn new(clients: Clients, audit: AuditLog, state_table: impl Into<String>) -> Self {
        Self {
            clients,
            audit,
            state_table: state_table.into(),
            test_timeout: TEST_TIMEOUT,
            lock_wait: LOCK_WAIT,
            rotator_role: None,
            own_identity: false,
        }
    }

    /// This rotator, acting with the function's own identity whatever the secret's
    /// `admin_secret_id` says (SPEC §15 quarantine).
    pub fn acting_as_itself(&self) -> Self {
        Self {
            own_identity: true,
            ..self.clone()
        }
    }

    /// Key changes with the function's own identity go through this role, tagged with the
    /// secret (SPEC §18); `None` keeps the function's own IAM client (local runs).
    pub fn with_rotator_role(mut self, role_arn: Option<String>) -> Self {
        self.rotator_role = role_arn;
        self
    }

    pub fn with_test_timeout(mut self, timeout: Duration) -> Self {
        self.test_timeout = timeout;
        self
    }
}

/// What Secrets Manager knows about the secret's versions.
struct Versions {
    enabled: bool,
    arn: String,
    name: String,
    stages: HashMap<String, Vec<String>>,
}

impl Versions {
    fn with_stage(&self, stage: &str) -> Option<&str> {
        self.stages
            .iter()
            .find(|(_, s)| s.iter().any(|x| x == stage))
            .map(|(id, _)| id.as_str())
    }

    fn has_stage(&self, version: &str, stage: &str) -> bool {
        self.stages
            .get(version)
            .is_some_and(|s| s.iter().any(|x| x == stage))
    }

    fn names(&self, id: &str) -> bool {
        id == self.arn || id == self.name
    }

    fn is_live(&self, version: &str) -> bool {
        self.has_stage(version, PENDING) || self.has_stage(version, CURRENT)
    }
}

/// Who a rotation runs for, as its audit items and its lock record it.
struct Ctx<'a> {
    origin: &'a Origin,
    policy: Option<&'a str>,
    /// Who holds the lock during a step: the hook invocation's request id (a duplicate delivery
    /// has its own, so it waits instead of running beside the first); an in-process rotation's
    /// own id. The lock itself belongs to the rotation's token, whichever path continues it.
    owner: &'a str,
    now: DateTime<Utc>,
    /// Until when this invocation's hold on the lock lasts if it dies mid-step.
    hold_until: DateTime<Utc>,
}

/// The outcome of a whole rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub user_name: String,
    pub old_access_key_id: Option<String>,
    pub new_access_key_id: String,
}

fn aws<E: aws_sdk_sts::error::ProvideErrorMetadata>(
    call: &'static str,
    e: aws_sdk_sts::error::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> RotationError {
    RotationError::Aws {
        call,
        failure: classify(e),
    }
}
