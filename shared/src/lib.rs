//! Keysmith: just-in-time AWS credentials, IAM access-key rotation and the audit trail of both.
//! The Lambda functions are thin adapters over this crate.

pub mod api;
pub mod audit;
pub mod aws;
pub mod config;
pub mod hygiene;
pub mod issue;
pub mod jobs;
pub mod json;
pub mod keys;
pub mod lease;
pub mod logging;
pub mod names;
pub mod ops;
pub mod profile;
pub mod requests;
pub mod revocation;
pub mod rotation;
pub mod secret;
mod state;
pub mod time;
pub mod users;

use aws_config::SdkConfig;

use crate::audit::{AuditLog, CheckpointStore, Reporter, Sealer};
use crate::aws::{Clients, Lazy};
use crate::config::Config;
use crate::issue::Issuer;
use crate::lease::Leases;
use crate::profile::ProfileStore;
use crate::revocation::{Accounts, Revocations};
use crate::rotation::policy::PolicyStore;
use crate::rotation::Rotator;
use crate::users::IamUsers;

/// The services scheduled-rotation needs, and the API's too ([`Api`] adds issuance), built once
/// per process (cold start), shared by every invocation. The secret-rotation hook builds only a
/// [`RotationHook`].
#[derive(Clone, Debug)]
pub struct App {
    pub config: Config,
    pub clients: Clients,
    pub audit: AuditLog,
    pub profiles: ProfileStore,
    pub leases: Leases,
    pub rotator: Rotator,
    pub policies: PolicyStore,
    pub revocations: Revocations,
    /// SPEC §13: the audit trail's checkpoints (the API reads them; scheduled-rotation's
    /// [`Jobs`] also seals them).
    pub checkpoints: CheckpointStore,
    /// SPEC §12: access requests and approvals.
    pub access_requests: requests::RequestStore,
    pub region: String,
}

impl App {
    pub fn new(config: Config, sdk: &SdkConfig) -> Self {
        let clients = Clients::new(sdk);
        let audit = AuditLog::new(clients.dynamodb.clone(), &config.audit_table).reporting(
            Reporter::new(Lazy::new(sdk, aws_sdk_eventbridge::Client::new)),
        );
        let profiles =
            ProfileStore::new(clients.dynamodb.clone(), &config.state_table, audit.clone());
        let leases = Leases::new(
            clients.dynamodb.clone(),
            &config.state_table,
            IamUsers::new(clients.iam.clone()),
        );
        let rotator = Rotator::new(clients.clone(), audit.clone(), &config.state_table)
            .with_rotator_role(config.rotator_role_arn.clone());
        let policies =
            PolicyStore::new(clients.dynamodb.clone(), &config.state_table, audit.clone());
        let accounts = Accounts::new(
            clients.iam.clone(),
            clients.sts.clone(),
            sdk.clone(),
            config.revoker_role_name.clone(),
        );
        let revocations = Revocations::new(
            accounts,
            clients.dynamodb.clone(),
            &config.state_table,
            audit.clone(),
        );
        let checkpoints = CheckpointStore::new(clients.dynamodb.clone(), &config.state_table);
        let access_requests = requests::RequestStore::new(
            clients.dynamodb.clone(),
            &config.state_table,
            audit.clone(),
        );
        Self {
            access_requests,
            region: clients.region.clone(),
            revocations,
            checkpoints,
            config,
            clients,
            audit,
            profiles,
            leases,
            rotator,
            policies,
        }
    }

    /// Issuance over this app's clients and leases (the API keeps one per process; the canary
    /// and the quarantine response build one when they run).
    pub fn issuer(&self) -> Issuer {
        Issuer::new(
            self.clients.clone(),
            self.config.sts.clone(),
            self.leases.clone(),
            self.config.lease_boundary_arns.clone(),
        )
    }

    /// The issuance use case over this app's stores and `issuer`.
    pub fn issuing<'a>(&'a self, issuer: &'a Issuer) -> issue::Issuing<'a> {
        issue::Issuing {
            profiles: &self.profiles,
            leases: &self.leases,
            audit: &self.audit,
            issuer,
            requests: self.requests(),
        }
    }

    /// The access request use cases over this app's stores.
    pub fn requests(&self) -> requests::Requests<'_> {
        requests::Requests {
            store: &self.access_requests,
            profiles: &self.profiles,
            audit: &self.audit,
        }
    }

    /// The revocation use cases over this app's stores and `issuer` (ending `iam_user` leases).
    pub fn revoker<'a>(&'a self, issuer: &'a Issuer) -> revocation::Revoker<'a> {
        revocation::Revoker {
            revocations: &self.revocations,
            leases: &self.leases,
            audit: &self.audit,
            issuer,
        }
    }

    /// For the functions' `main`: the app, or one clear log line naming the missing or malformed
    /// variable and exit status 1 (Lambda reports it as an init error).
    pub async fn from_env_or_exit() -> Self {
        or_exit(Self::from_env().await)
    }

    /// Reads the configuration from the environment and the SDK's settings (region, credentials,
    /// `AWS_ENDPOINT_URL`) once.
    pub async fn from_env() -> Result<Self, config::ConfigError> {
        let (config, sdk) = load().await?;
        Ok(Self::new(config, &sdk))
    }
}

impl App {
    /// The audit trail's sealer over these services (KMS and S3 clients built on first use).
    /// Only scheduled-rotation calls it, so only its binary links KMS and S3.
    pub fn sealer(&self, sdk: &SdkConfig) -> Sealer {
        Sealer::new(
            self.audit.clone(),
            self.checkpoints.clone(),
            sdk,
            self.config.seal.clone(),
        )
    }
}

/// scheduled-rotation's services: the shared ones and the audit trail's sealer.
#[derive(Clone, Debug)]
pub struct Jobs {
    pub app: App,
    pub sealer: Sealer,
}

impl Jobs {
    /// As [`App::from_env_or_exit`]: the same variables, checked the same way.
    pub async fn from_env_or_exit() -> Self {
        or_exit(load().await.map(|(config, sdk)| {
            let app = App::new(config, &sdk);
            Self {
                sealer: app.sealer(&sdk),
                app,
            }
        }))
    }
}

/// issue-credentials' services: the shared ones and issuance (STS, `iam_user`).
#[derive(Clone, Debug)]
pub struct Api {
    pub app: App,
    pub issuer: Issuer,
}

impl Api {
    pub fn new(config: Config, sdk: &SdkConfig) -> Self {
        Self::with(App::new(config, sdk))
    }

    /// Issuance over an existing [`App`]'s clients and leases.
    pub fn with(app: App) -> Self {
        Self {
            issuer: app.issuer(),
            app,
        }
    }

    /// As [`App::from_env_or_exit`]: the same variables, checked the same way.
    pub async fn from_env_or_exit() -> Self {
        or_exit(load().await.map(|(config, sdk)| Self::new(config, &sdk)))
    }
}

/// The secret-rotation hook's services: the rotation engine and the audit trail it writes, with
/// none of the API's profile, issuance, lease or policy services.
#[derive(Clone, Debug)]
pub struct RotationHook {
    pub rotator: Rotator,
    pub region: String,
}

impl RotationHook {
    pub fn new(config: &Config, sdk: &SdkConfig) -> Self {
        let clients = Clients::new(sdk);
        let audit = AuditLog::new(clients.dynamodb.clone(), &config.audit_table).reporting(
            Reporter::new(Lazy::new(sdk, aws_sdk_eventbridge::Client::new)),
        );
        Self {
            region: clients.region.clone(),
            rotator: Rotator::new(clients, audit, &config.state_table)
                .with_rotator_role(config.rotator_role_arn.clone()),
        }
    }

    /// As [`App::from_env_or_exit`]: the same variables, checked the same way.
    pub async fn from_env_or_exit() -> Self {
        or_exit(load().await.map(|(config, sdk)| Self::new(&config, &sdk)))
    }
}

async fn load() -> Result<(Config, SdkConfig), config::ConfigError> {
    let config = Config::from_env()?;
    Ok((config, aws::function_sdk_config().await))
}

fn or_exit<T>(built: Result<T, config::ConfigError>) -> T {
    match built {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("{e}");
            std::process::exit(1);
        }
    }
}
