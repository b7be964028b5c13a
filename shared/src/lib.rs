//! Keysmith: just-in-time AWS credentials, IAM access-key rotation and the audit trail of both.
//! The Lambda functions are thin adapters over this crate.

pub mod api;
pub mod audit;
pub mod aws;
pub mod config;
pub mod iam_user;
pub mod issue;
pub mod lease;
pub mod names;
pub mod profile;
pub mod rotation;
pub mod schedule;
pub mod secret;
mod state;
pub mod time;

use aws_config::SdkConfig;

use crate::audit::AuditLog;
use crate::aws::Clients;
use crate::config::Config;
use crate::iam_user::IamUsers;
use crate::issue::Issuer;
use crate::lease::Leases;
use crate::profile::ProfileStore;
use crate::rotation::policy::PolicyStore;
use crate::rotation::Rotator;

/// Everything a request needs, built once per process (cold start), shared by every invocation.
#[derive(Clone, Debug)]
pub struct App {
    pub config: Config,
    pub clients: Clients,
    pub audit: AuditLog,
    pub profiles: ProfileStore,
    pub issuer: Issuer,
    pub leases: Leases,
    pub rotator: Rotator,
    pub policies: PolicyStore,
    pub region: String,
}

impl App {
    pub fn new(config: Config, sdk: &SdkConfig) -> Self {
        let clients = Clients::new(sdk);
        let audit = AuditLog::new(clients.dynamodb.clone(), &config.audit_table);
        let profiles =
            ProfileStore::new(clients.dynamodb.clone(), &config.state_table, audit.clone());
        let leases = Leases::new(
            clients.dynamodb.clone(),
            &config.state_table,
            IamUsers::new(clients.iam.clone()),
        );
        let issuer = Issuer::new(clients.clone(), config.sts.clone(), leases.clone());
        let rotator = Rotator::new(clients.clone(), audit.clone(), &config.state_table);
        let policies =
            PolicyStore::new(clients.dynamodb.clone(), &config.state_table, audit.clone());
        Self {
            region: clients.region.clone(),
            config,
            clients,
            audit,
            profiles,
            issuer,
            leases,
            rotator,
            policies,
        }
    }

    /// For the functions' `main`: the app, or one clear log line naming the missing or malformed
    /// variable and exit status 1 (Lambda reports it as an init error).
    pub async fn from_env_or_exit() -> Self {
        match Self::from_env().await {
            Ok(app) => app,
            Err(e) => {
                tracing::error!("{e}");
                std::process::exit(1);
            }
        }
    }

    /// Reads the configuration from the environment and the SDK's settings (region, credentials,
    /// `AWS_ENDPOINT_URL`) once.
    pub async fn from_env() -> Result<Self, config::ConfigError> {
        let config = Config::from_env()?;
        let sdk = aws::sdk_config_loader().load().await;
        Ok(Self::new(config, &sdk))
    }
}
