//! Driving rotations as Secrets Manager does: a rotation Lambda registered in moto, `RotateSecret`
//! to create the `AWSPENDING` version (moto cannot run our function, so it leaves the version
//! empty), then the four steps, and a snapshot of everything the invariants talk about.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use keysmith::audit::Origin;
use keysmith::rotation::{RotationError, RotationEvent, Rotator, Step};
use serde_json::{json, Value};

use crate::moto::{Moto, REGION};

/// A user (`<prefix>-<random>`) with one key, bound to a secret `keysmith/<user>` that records
/// it; returns (secret name, user, key id).
pub async fn rotatable(sdk: &SdkConfig, prefix: &str) -> (String, String, String) {
    let user = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let iam = aws_sdk_iam::Client::new(sdk);
    iam.create_user().user_name(&user).send().await.unwrap();
    let k = iam
        .create_access_key()
        .user_name(&user)
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    let secret = format!("keysmith/{user}");
    crate::aws::bind(sdk, &user, &secret).await;
    crate::aws::secret(
        sdk,
        &secret,
        &json!({"user_name": user, "access_key_id": k.access_key_id,
        "secret_access_key": k.secret_access_key}),
    )
    .await;
    (secret, user, k.access_key_id)
}

/// Registers a placeholder rotation function (an empty zip) and returns its ARN. moto's Lambda
/// REST API routes on the SigV4 scope, so the request carries an (unchecked) Authorization header.
pub async fn rotation_lambda(moto: &Moto, sdk: &SdkConfig) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let iam = aws_sdk_iam::Client::new(sdk);
    let role = iam
        .create_role()
        .role_name(format!("rotation-{id}"))
        .assume_role_policy_document(json!({"Version": "2012-10-17", "Statement": []}).to_string())
        .send()
        .await
        .unwrap()
        .role
        .unwrap();
    let body = json!({"FunctionName": format!("rotation-{id}"), "Runtime": "provided.al2023", "Role": role.arn,
        "Handler": "bootstrap", "Code": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}});
    let auth = format!("AWS4-HMAC-SHA256 Credential=test/20261121/{REGION}/lambda/aws4_request, SignedHeaders=host, Signature=0");
    let (status, text) = crate::proxy::post_with(
        &format!("{}/2015-03-31/functions", moto.endpoint),
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 201, "CreateFunction: {text}");
    serde_json::from_str::<Value>(&text).unwrap()["FunctionArn"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// What Secrets Manager does before it calls `createSecret`: a new version labelled `AWSPENDING`
/// with no value. Returns the version's token.
pub async fn start_rotation(sdk: &SdkConfig, secret: &str, lambda: &str) -> String {
    let token = uuid::Uuid::new_v4().to_string();
    aws_sdk_secretsmanager::Client::new(sdk)
        .rotate_secret()
        .secret_id(secret)
        .rotation_lambda_arn(lambda)
        .client_request_token(&token)
        .rotation_rules(
            aws_sdk_secretsmanager::types::RotationRulesType::builder()
                .automatically_after_days(30)
                .build(),
        )
        .send()
        .await
        .unwrap();
    token
}

pub fn event(step: Step, secret: &str, token: &str) -> RotationEvent {
    let step = match step {
        Step::Create => "createSecret",
        Step::Set => "setSecret",
        Step::Test => "testSecret",
        Step::Finish => "finishSecret",
    };
    serde_json::from_value(json!({"Step": step, "SecretId": secret, "ClientRequestToken": token}))
        .unwrap()
}

pub const STEPS: [Step; 4] = [Step::Create, Step::Set, Step::Test, Step::Finish];

pub fn origin() -> Origin {
    Origin {
        principal: "secretsmanager.amazonaws.com".into(),
        region: REGION.into(),
        ..Origin::default()
    }
}

/// The four steps in order, stopping at the first failure (as Secrets Manager does).
pub async fn rotate(rotator: &Rotator, secret: &str, token: &str) -> Result<(), RotationError> {
    for step in STEPS {
        rotator.run(&event(step, secret, token), &origin()).await?;
    }
    Ok(())
}

/// Everything the rotation invariants are about, comparable between runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The user's keys: id -> status.
    pub keys: BTreeMap<String, String>,
    /// Version id -> stages (versions without stages left out).
    pub stages: BTreeMap<String, Vec<String>>,
    pub current: Value,
    pub previous: Option<Value>,
}

impl Snapshot {
    pub async fn take(sdk: &SdkConfig, iam_sdk: &SdkConfig, secret: &str, user: &str) -> Snapshot {
        let iam = aws_sdk_iam::Client::new(iam_sdk);
        let sm = aws_sdk_secretsmanager::Client::new(sdk);
        let keys = iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .unwrap()
            .access_key_metadata;
        let keys = keys
            .into_iter()
            .map(|k| {
                (
                    k.access_key_id.unwrap(),
                    k.status.map(|s| s.as_str().to_owned()).unwrap_or_default(),
                )
            })
            .collect();
        let described = sm.describe_secret().secret_id(secret).send().await.unwrap();
        let stages = described
            .version_ids_to_stages
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(v, mut s)| {
                s.sort();
                (v, s)
            })
            .collect();
        let value = |stage: &'static str| {
            let sm = sm.clone();
            async move {
                let out = sm
                    .get_secret_value()
                    .secret_id(secret)
                    .version_stage(stage)
                    .send()
                    .await
                    .ok()?;
                serde_json::from_str::<Value>(out.secret_string()?).ok()
            }
        };
        let snapshot = Snapshot {
            keys,
            stages,
            current: value("AWSCURRENT").await.unwrap(),
            previous: value("AWSPREVIOUS").await,
        };
        // Rotated keys join the leak scan.
        crate::leaks::record_from(&snapshot.current);
        snapshot.previous.iter().for_each(crate::leaks::record_from);
        snapshot
    }

    pub fn current_key(&self) -> (&str, &str) {
        (
            self.current["access_key_id"].as_str().unwrap_or_default(),
            self.current["secret_access_key"]
                .as_str()
                .unwrap_or_default(),
        )
    }
}

/// A process that dies after its `n`-th AWS call (0-based, counted from when the rule is set):
/// that call takes effect but its answer is lost, and nothing after it reaches AWS. Set it on a
/// `CaptureProxy` in front of moto; no hook in production code is needed.
pub fn crash_after(n: usize) -> crate::proxy::FaultRule {
    use crate::proxy::Fault;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    std::sync::Arc::new(move |_| match seen.fetch_add(1, Ordering::SeqCst) {
        i if i < n => Fault::Pass,
        i if i == n => Fault::LoseResponse,
        _ => Fault::ServerError,
    })
}
