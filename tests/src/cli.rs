//! Driving the built `keysmith` binary as a subprocess against the SigV4-checking local gateway in
//! front of the built `issue-credentials` function, on moto. Every run's standard error, and the
//! function's logs, go through the secret-leak scan.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::gateway::Gateway;
use crate::keyring::KeyRing;
use crate::moto::{Moto, REGION};
use crate::runtime::FunctionProcess;
use crate::sigv4::Authorizer;

/// An IAM user of the emulator and its key.
#[derive(Clone)]
pub struct User {
    pub arn: String,
    pub key_id: String,
    pub secret: String,
}

pub struct CliStack {
    pub moto: &'static Moto,
    pub gateway: Gateway,
    pub function: Arc<FunctionProcess>,
    pub admin: User,
    pub alice: User,
    /// `HOME`, the AWS config files and the cache live here.
    pub home: tempfile::TempDir,
    pub id: String,
    /// The keys the gateway checks signatures with: a test that makes credentials straight in
    /// moto (not through Keysmith) registers them here, as AWS would know them.
    pub keys: Arc<KeyRing>,
    stderr: Mutex<Vec<String>>,
}

async fn user(sdk: &aws_config::SdkConfig, keys: &KeyRing, name: &str) -> User {
    let (key_id, secret) = crate::aws::user_with_key(sdk, name, &crate::aws::allow_all()).await;
    crate::leaks::record_from(&json!({ "secret_access_key": secret }));
    keys.add(&key_id, &secret, None, None);
    User {
        arn: format!("arn:aws:iam::123456789012:user/{name}"),
        key_id,
        secret,
    }
}

/// The built `keysmith` binary.
pub fn keysmith() -> PathBuf {
    crate::function_binary("keysmith")
}

impl CliStack {
    /// Fresh tables, an admin and a user `alice` (keys in moto), the function and a gateway that
    /// takes the caller from the SigV4 signature; profile `deploy` (assumed_role) lets alice in.
    pub async fn start() -> CliStack {
        Self::start_on(Moto::shared()).await
    }

    /// As `start`, on a moto server of the test's own (`Box::leak(Box::new(Moto::start()))`):
    /// for a test after which moto's `/moto-api/data.json`, which the gateway's authorizer reads,
    /// fails (moto 5.2.5 answers 500 there once a leased IAM user has been deleted).
    pub async fn start_on(moto: &'static Moto) -> CliStack {
        let sdk = moto.sdk_config().await;
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let (state, audit) = (format!("state-{id}"), format!("audit-{id}"));
        moto.create_tables(&state, &audit);
        let keys = Arc::new(KeyRing::default());
        let admin = user(&sdk, &keys, &format!("admin-{id}")).await;
        let alice = user(&sdk, &keys, &format!("alice-{id}")).await;
        let function = Arc::new(
            FunctionProcess::start(
                &crate::function_binary("issue-credentials"),
                &[
                    ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
                    ("AWS_REGION", REGION),
                    ("AWS_ACCESS_KEY_ID", "test"),
                    ("AWS_SECRET_ACCESS_KEY", "test"),
                    ("KEYSMITH_STATE_TABLE", &state),
                    ("KEYSMITH_AUDIT_TABLE", &audit),
                    ("KEYSMITH_ADMINS", &admin.arn),
                    ("KEYSMITH_LEASE_BOUNDARY_ARNS", crate::api::LEASE_BOUNDARY),
                    ("RUST_LOG", "debug"),
                ],
            )
            .await,
        );
        let authorizer = Authorizer::new(&moto.endpoint, keys.clone());
        let gateway = Gateway::start_sigv4(function.clone(), authorizer, 0).await;
        let home = tempfile::tempdir().unwrap();
        let stack = CliStack {
            moto,
            gateway,
            function,
            admin,
            alice,
            home,
            id,
            keys,
            stderr: Mutex::default(),
        };
        let role =
            crate::aws::assumable_role(&sdk, "/keysmith/", &format!("deploy-{}", stack.id)).await;
        let profile = json!({"credential_type": "assumed_role", "role_arn": role,
            "allowed_principals": [stack.alice.arn, stack.admin.arn]});
        stack.put_profile("deploy", &profile);
        stack
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.home.path().join("cache")
    }

    /// A `keysmith` command as `user`, with a clean environment (no AWS profile files but ours).
    pub fn command(&self, user: &User) -> Command {
        self.command_for(&keysmith(), user)
    }

    /// Another program (the AWS CLI) in the same environment as `command`.
    pub fn command_for(&self, program: &std::path::Path, user: &User) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", self.path())
            .env("HOME", self.home.path())
            .env("KEYSMITH_API", &self.gateway.endpoint)
            .env("KEYSMITH_CACHE_DIR", self.cache_dir())
            .env("AWS_CONFIG_FILE", self.home.path().join("aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.home.path().join("aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_REGION", REGION)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", &user.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &user.secret)
            .stdin(Stdio::null());
        c
    }

    /// `PATH` with the project's venv first (`aws`, `python`).
    pub fn path(&self) -> String {
        format!(
            "{}:{}",
            crate::venv().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// Runs `keysmith args…` as `user` and keeps its standard error for the leak scan.
    pub fn run(&self, user: &User, args: &[&str]) -> Output {
        self.output(self.command(user).args(args))
    }

    /// Runs a prepared command (blocking: call from `spawn_blocking` when a server in this
    /// process must answer it meanwhile — the gateway runs on the test's runtime).
    pub fn output(&self, command: &mut Command) -> Output {
        let out = command.output().unwrap();
        self.stderr
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&out.stderr).into_owned());
        out
    }

    /// Keeps the standard error of a run made without `output` (for the leak scan).
    pub fn keep_stderr(&self, out: &Output) {
        self.stderr
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&out.stderr).into_owned());
    }

    /// Records the secrets in a command's JSON output for the leak scan.
    pub fn record(&self, out: &Output) -> Value {
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        crate::leaks::record_from(&v);
        v
    }

    /// `profiles put NAME --file -` as the admin.
    pub fn put_profile(&self, name: &str, profile: &Value) {
        use std::io::Write;
        let mut child = self
            .command(&self.admin)
            .args(["profiles", "put", name, "--file", "-", "--output", "json"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(profile.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        self.stderr
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(
            out.status.success(),
            "put {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The leak scan over every run's standard error and the function's logs.
    pub fn scan(&self) {
        for (i, err) in self.stderr.lock().unwrap().iter().enumerate() {
            crate::leaks::check(err, &format!("keysmith run {i}'s standard error"));
        }
        crate::leaks::check(&self.function.logs(), "the function's logs");
    }
}

/// Standard output and error of a run, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A running `keysmith serve` (killed when dropped) and the two values it printed.
pub struct Served {
    pub child: std::process::Child,
    pub uri: String,
    pub token: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        let rest = self.uri.strip_prefix("http://127.0.0.1:").unwrap();
        rest.split('/').next().unwrap().parse().unwrap()
    }
}

impl CliStack {
    /// Starts `keysmith serve PROFILE args…` as `user` and reads the two lines it prints.
    pub fn serve(&self, user: &User, profile: &str, args: &[&str]) -> Served {
        use std::io::{BufRead, BufReader};
        let mut child = self
            .command(user)
            .args(["serve", profile])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut value = |name: &str| {
            let line = lines.next().unwrap().unwrap();
            line.strip_prefix(&format!("{name}="))
                .unwrap_or_else(|| panic!("serve printed {line:?}"))
                .to_owned()
        };
        let uri = value("AWS_CONTAINER_CREDENTIALS_FULL_URI");
        let token = value("AWS_CONTAINER_AUTHORIZATION_TOKEN");
        crate::leaks::record_from(&json!({ "session_token": token }));
        Served { child, uri, token }
    }

    /// One SigV4-signed request to the API as `user` (as any SigV4 client makes it): the status
    /// and the JSON answer (`Null` when not JSON).
    pub async fn signed(
        &self,
        user: &User,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let url = format!("{}{path}", self.gateway.endpoint);
        let body = body.map(Value::to_string).unwrap_or_default();
        let identity =
            aws_sdk_sts::config::Credentials::new(&user.key_id, &user.secret, None, None, "test")
                .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(REGION)
            .name("execute-api")
            .time(std::time::SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            method,
            &url,
            std::iter::empty(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut headers: Vec<(String, String)> = instructions
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        if !body.is_empty() {
            headers.push(("content-type".into(), "application/json".into()));
        }
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (status, text) = crate::proxy::request(method, &url, &headers, &body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}
