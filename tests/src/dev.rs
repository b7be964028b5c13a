//! The local stack of `make dev` (binary `keysmith-dev`), also started by the README test: moto
//! (with AWS managed policies), the tables from `template.yaml`, the three functions through the
//! Lambda Runtime API emulator, the AWS endpoint in front of moto (`front.rs`: Lambda `Invoke` of
//! the functions, keys recorded for the gateway), RotationQueue and what its event source mapping
//! does, the SigV4-checking gateway, a schedule, and seed data: an admin, a non-admin `alice`, and
//! one example profile of each credential type.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use serde_json::{json, Value};

use crate::cli::User;
use crate::front::Front;
use crate::gateway::Gateway;
use crate::keyring::KeyRing;
use crate::moto::{Moto, ACCOUNT, REGION};
use crate::queue::{sqs_event, RotationQueues};
use crate::runtime::FunctionProcess;
use crate::sigv4::Authorizer;

pub const STATE_TABLE: &str = "keysmith-state";
pub const AUDIT_TABLE: &str = "keysmith-audit";
/// The functions' names, as `Invoke` names them.
pub const SCHEDULED_ROTATION: &str = "keysmith-scheduled-rotation";
pub const SECRET_ROTATION: &str = "keysmith-secret-rotation";
/// The base user of the `session_token` and `federation_token` examples, and its key's secret.
pub const BASE_USER: &str = "dev-base";
pub const BASE_SECRET: &str = "keysmith/dev-base";
pub const ROLE: &str = "dev-role";
/// The example profiles, one per credential type; alice may use each.
pub const PROFILES: [(&str, &str); 4] = [
    ("dev-session", "session_token"),
    ("dev-role", "assumed_role"),
    ("dev-federation", "federation_token"),
    ("dev-user", "iam_user"),
];
const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";

pub fn secret_rotation_arn() -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{SECRET_ROTATION}")
}

pub struct DevStack {
    pub moto: Moto,
    /// `AWS_ENDPOINT_URL` for everyone: the functions, `aws`, `keysmith-dev rotate-secret`.
    pub aws: Front,
    pub gateway: Gateway,
    pub admin: User,
    pub alice: User,
    pub functions: HashMap<String, Arc<FunctionProcess>>,
}

impl DevStack {
    /// Starts everything on 127.0.0.1 (the gateway on `port`, 0: a free one); runs the scheduled
    /// jobs every `schedule` (what EventBridge does hourly and every few minutes on AWS).
    pub async fn start(port: u16, schedule: Duration) -> DevStack {
        let moto = Moto::start_with_managed_policies();
        moto.create_tables(STATE_TABLE, AUDIT_TABLE);
        let audit_env = audit_anchor(&moto);
        let keys = Arc::new(KeyRing::default());
        let aws = Front::start(&moto.endpoint, keys.clone()).await;
        let admins = std::env::var("KEYSMITH_ADMINS")
            .unwrap_or_else(|_| format!("arn:aws:iam::{ACCOUNT}:user/admin"));
        let mut env: Vec<(String, String)> = [
            ("AWS_ENDPOINT_URL", aws.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("KEYSMITH_STATE_TABLE", STATE_TABLE),
            ("KEYSMITH_AUDIT_TABLE", AUDIT_TABLE),
            ("KEYSMITH_ADMINS", admins.as_str()),
            ("KEYSMITH_LEASE_BOUNDARY_ARNS", crate::api::LEASE_BOUNDARY),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        env.extend(audit_env);
        // Rotations go through RotationQueue, as on AWS: the scheduled run and rotate-now enqueue,
        // `queue_loop` hands the messages to scheduled-rotation.
        let queues = RotationQueues::create(&moto.sdk_config().await, 60).await;
        env.push(("KEYSMITH_ROTATION_QUEUE_URL".into(), queues.url.clone()));
        let issue = start_function("issue-credentials", &env).await;
        let scheduled = start_function("scheduled-rotation", &env).await;
        let hook = start_function("secret-rotation", &env).await;
        let functions = HashMap::from([
            ("issue-credentials".to_owned(), issue.clone()),
            (SCHEDULED_ROTATION.to_owned(), scheduled.clone()),
            (SECRET_ROTATION.to_owned(), hook),
        ]);
        aws.serve_functions(functions.clone());

        let sdk = Moto::sdk_config_at(
            &aws.endpoint,
            aws_sdk_sts::config::Credentials::new("test", "test", None, None, "dev"),
        )
        .await;
        let admin = user(&sdk, "admin").await;
        let alice = user(&sdk, "alice").await;
        seed(&moto, &sdk, &issue, &admin, &alice).await;
        let authorizer = Authorizer::new(&moto.endpoint, keys);
        let gateway = Gateway::start_sigv4(issue, authorizer, port).await;
        tokio::spawn(queue_loop(scheduled.clone(), queues));
        tokio::spawn(schedule_loop(scheduled, schedule));
        DevStack {
            moto,
            aws,
            gateway,
            admin,
            alice,
            functions,
        }
    }

    /// The lines a shell needs to act as `who` against this stack, ready to paste.
    pub fn exports(&self, who: &User) -> String {
        let keysmith = crate::function_binary("keysmith");
        let bin = keysmith.parent().map_or_else(PathBuf::new, PathBuf::from);
        let bin = std::fs::canonicalize(&bin).unwrap_or(bin);
        let venv = crate::venv().join("bin");
        let venv = std::fs::canonicalize(&venv).unwrap_or(venv);
        format!(
            "unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN\n\
             export KEYSMITH_API={}\n\
             export AWS_ENDPOINT_URL={}\n\
             export AWS_DEFAULT_REGION={REGION}\n\
             export AWS_REGION={REGION}\n\
             export AWS_EC2_METADATA_DISABLED=true\n\
             export PATH=\"{}:{}:$PATH\"\n\
             export AWS_ACCESS_KEY_ID={}\n\
             export AWS_SECRET_ACCESS_KEY={}\n",
            self.gateway.endpoint,
            self.aws.endpoint,
            bin.display(),
            venv.display(),
            who.key_id,
            who.secret
        )
    }

    /// What `make dev` prints once everything runs: the two identities' lines, each block
    /// introduced by a `# As …` line (the README test finds them by it).
    pub fn banner(&self) -> String {
        let profiles: Vec<String> = PROFILES
            .iter()
            .map(|(name, kind)| format!("{name} ({kind})"))
            .collect();
        format!(
            "# Keysmith API on {} (SigV4-checked, as API Gateway's IAM authorizer).\n\
             # AWS (moto, managed policies loaded) on {}, with the three functions behind Lambda Invoke and RotationQueue.\n\
             # Example profiles: {}.\n\
             # Local keys of the emulator only, printed on purpose. Ctrl-C stops everything.\n\n\
             # As the admin ({}): paste into a shell at the repository root\n{}\n\
             # As alice ({}, not an admin, allowed on the example profiles): paste into another shell\n{}",
            self.gateway.endpoint,
            self.aws.endpoint,
            profiles.join(", "),
            self.admin.arn,
            self.exports(&self.admin),
            self.alice.arn,
            self.exports(&self.alice),
        )
    }
}

async fn start_function(name: &str, env: &[(String, String)]) -> Arc<FunctionProcess> {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Arc::new(FunctionProcess::start(&crate::function_binary(name), &env).await)
}

/// SPEC 13's signing key and archive, from `infra/local_stack.py audit`: their variables.
fn audit_anchor(moto: &Moto) -> Vec<(String, String)> {
    let out = std::process::Command::new(crate::venv().join("bin/python"))
        .arg(crate::repo_root().join("infra/local_stack.py"))
        .args(["audit", "--endpoint", &moto.endpoint, "--region", REGION])
        .output()
        .expect("cannot run infra/local_stack.py");
    assert!(
        out.status.success(),
        "local_stack.py audit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env: HashMap<String, String> =
        serde_json::from_slice(&out.stdout).expect("local_stack.py audit prints JSON");
    env.into_iter().collect()
}

async fn user(sdk: &SdkConfig, name: &str) -> User {
    // Through the AWS endpoint: the key is recorded for the gateway as it is handed out.
    let (key_id, secret) = crate::aws::user_with_key(sdk, name, &crate::aws::allow_all()).await;
    User {
        arn: format!("arn:aws:iam::{ACCOUNT}:user/{name}"),
        key_id,
        secret,
    }
}

/// The example profiles and what they need: a base user's key in a secret, an assumable role,
/// the lease boundary, and the placeholder Lambda function `RotateSecret` names.
async fn seed(moto: &Moto, sdk: &SdkConfig, api: &FunctionProcess, admin: &User, alice: &User) {
    let iam = aws_sdk_iam::Client::new(sdk);
    iam.create_user()
        .path("/keysmith-base/")
        .user_name(BASE_USER)
        .send()
        .await
        .expect("create the base user");
    let key = iam
        .create_access_key()
        .user_name(BASE_USER)
        .send()
        .await
        .expect("create the base user's key")
        .access_key
        .expect("a key");
    aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(BASE_SECRET)
        .secret_string(
            json!({"access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key})
                .to_string(),
        )
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("keysmith:purpose")
                .value("base-key")
                .build(),
        )
        .send()
        .await
        .expect("store the base key");
    let role = crate::aws::assumable_role(sdk, "/keysmith/", ROLE).await;
    iam.create_policy()
        .path("/keysmith/")
        .policy_name("lease-boundary")
        .policy_document(crate::aws::allow_all().to_string())
        .send()
        .await
        .expect("create the lease boundary");
    register_rotation_lambda(moto, sdk).await;
    let allowed = json!([alice.arn]);
    let profiles = [
        json!({"credential_type": "session_token", "source_secret_id": BASE_SECRET,
            "description": "GetSessionToken with dev-base's key", "allowed_principals": allowed}),
        json!({"credential_type": "assumed_role", "role_arn": role, "max_duration_seconds": 3600,
            "description": "AssumeRole into keysmith/dev-role", "allowed_principals": allowed}),
        json!({"credential_type": "federation_token", "source_secret_id": BASE_SECRET,
            "policy_arns": [READ_ONLY], "description": "GetFederationToken, read-only",
            "allowed_principals": allowed}),
        json!({"credential_type": "iam_user", "policy_arns": [READ_ONLY],
            "permissions_boundary_arn": crate::api::LEASE_BOUNDARY,
            "description": "a temporary read-only IAM user", "allowed_principals": allowed}),
    ];
    for ((name, _), profile) in PROFILES.iter().zip(profiles) {
        let event = api_event("PUT", &format!("/v1/profiles/{name}"), &profile, &admin.arn);
        let answer = api.invoke(&event).await.expect("the API answers");
        assert_eq!(
            answer["statusCode"], 201,
            "seeding profile {name}: {answer}"
        );
    }
}

/// What Secrets Manager needs before `RotateSecret` can name our hook: a Lambda function of that
/// name (moto cannot run it; `Invoke` through the AWS endpoint runs the real one).
async fn register_rotation_lambda(moto: &Moto, sdk: &SdkConfig) {
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    let role = aws_sdk_iam::Client::new(sdk)
        .create_role()
        .role_name(SECRET_ROTATION)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .expect("create the hook's role")
        .role
        .expect("a role");
    let body = json!({"FunctionName": SECRET_ROTATION, "Runtime": "provided.al2023",
        "Role": role.arn, "Handler": "bootstrap",
        "Code": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}});
    // moto's Lambda REST API routes on the SigV4 scope; the signature itself is not checked.
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
    assert_eq!(status, 201, "registering {SECRET_ROTATION}: {text}");
}

/// An HTTP API v2 event as API Gateway builds it for an IAM-authorized caller.
pub fn api_event(method: &str, path: &str, body: &Value, principal: &str) -> Value {
    let now = chrono::Utc::now();
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "accountId": ACCOUNT, "apiId": "local", "domainName": "127.0.0.1", "domainPrefix": "local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "keysmith-dev"},
            "requestId": uuid::Uuid::new_v4().to_string(), "routeKey": "$default", "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": now.timestamp_millis(),
            "authorizer": {"iam": {"accessKey": "ASIALOCALDEV", "accountId": ACCOUNT,
                "callerId": "local", "userArn": principal, "userId": "local"}},
        },
        "isBase64Encoded": false, "body": body.to_string(),
    })
}

/// EventBridge's part: the scheduled run (rotations due, expired leases, revocation pruning) and
/// the audit seal, every `every`.
async fn schedule_loop(function: Arc<FunctionProcess>, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        for name in ["scheduled.json", "seal.json"] {
            let mut event = crate::event(name);
            event["time"] =
                json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            if let Err(e) = function.invoke(&event).await {
                eprintln!("keysmith-dev: the scheduled {name} run failed: {e}");
            }
        }
    }
}

/// The event source mapping's part: RotationQueue's messages, up to 10 at a time, to
/// scheduled-rotation as a standard SQS event; what its answer does not report failed is deleted
/// (a failed one comes back after the queue's visibility timeout, to the dead-letter queue after 3).
async fn queue_loop(function: Arc<FunctionProcess>, queues: RotationQueues) {
    let arn = format!(
        "arn:aws:sqs:{REGION}:{ACCOUNT}:{}",
        queues.url.rsplit('/').next().unwrap_or_default()
    );
    loop {
        let batch = match queues.try_receive_once(&queues.url).await {
            Ok(batch) => batch,
            Err(e) => {
                eprintln!("keysmith-dev: receiving from RotationQueue failed: {e}");
                Vec::new()
            }
        };
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        match function.invoke(&sqs_event(&batch, &arn)).await {
            Ok(answer) => queues.settle(&batch, &answer).await,
            Err(e) => eprintln!("keysmith-dev: a RotationQueue batch failed: {e}"),
        }
    }
}
