//! moto in server mode, started from the project's `.venv/` on 127.0.0.1 and a free port.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::config::Credentials;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

pub struct Moto {
    pub endpoint: String,
    child: Child,
}

impl Moto {
    /// A server of one's own: needed when a test switches on auth enforcement, which is global.
    pub fn start() -> Moto {
        let venv = crate::venv();
        Moto::start_command(&format!("'{}'", venv.join("bin/moto_server").display()))
    }

    /// A server with AWS managed policies (`arn:aws:iam::aws:policy/…`) loaded, as an account
    /// has them: the dev stack's, where people try the README's `ReadOnlyAccess` examples.
    /// (Loading them costs the first IAM call about half a second, so tests go without.)
    pub fn start_with_managed_policies() -> Moto {
        let venv = crate::venv();
        Moto::start_command(&format!(
            "MOTO_IAM_LOAD_MANAGED_POLICIES=true '{}'",
            venv.join("bin/moto_server").display()
        ))
    }

    /// A server whose DynamoDB transactions back up only the items they touch
    /// (`tests/support/moto_server_cow.py`): for tables of 100,000 items, where moto's own
    /// whole-table copy per transaction would take tens of seconds.
    pub fn start_cow() -> Moto {
        let venv = crate::venv();
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("support/moto_server_cow.py");
        Moto::start_command(&format!(
            "'{}' '{}'",
            venv.join("bin/python").display(),
            script.display()
        ))
    }

    fn start_command(command: &str) -> Moto {
        // The shell wrapper ends moto when our stdin closes, i.e. when the test process exits,
        // even if it dies without running destructors (the shared server is never dropped).
        let script = format!(
            "{command} -H 127.0.0.1 -p 0 & pid=$!; trap 'kill $pid 2>/dev/null' EXIT INT TERM HUP; read _; exit 0"
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start moto_server");
        let stderr = child.stderr.take().expect("moto stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(url) = line.split("Running on ").nth(1) {
                        let _ = tx.send(url.trim().to_owned());
                        sent = true;
                    }
                }
            }
        });
        let endpoint = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("moto_server did not report its address within 30 s");
        assert!(
            endpoint.starts_with("http://127.0.0.1:"),
            "moto bound to {endpoint}"
        );
        Moto { endpoint, child }
    }

    /// One server for the whole test binary; tests keep apart by using their own table names and
    /// IAM/Secrets Manager names.
    pub fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        SHARED.get_or_init(Moto::start)
    }

    /// SDK configuration pointing at this server (on the loader, not the process environment, so
    /// tests on different servers do not interfere).
    pub async fn sdk_config(&self) -> SdkConfig {
        self.sdk_config_with(Credentials::new("test", "test", None, None, "test"))
            .await
    }

    pub async fn sdk_config_with(&self, credentials: Credentials) -> SdkConfig {
        Self::sdk_config_at(&self.endpoint, credentials).await
    }

    /// Like `sdk_config_at`, with retries and timeouts short enough for fault-injection tests:
    /// attempts milliseconds apart, 1 s an attempt (fault tests delay a call 1.5 s to time it out), 20 s in all (moto deep-copies tables in a transaction: 5 s ran out on a loaded 2-core machine). Six attempts, not three: moto answers 500 to a
    /// `TransactWriteItems` that runs while another request changes the same table (it deep-copies
    /// the table for rollback), which parallel tests hit; AWS has no such failure.
    pub async fn fast_sdk_config_at(endpoint: &str) -> SdkConfig {
        use aws_config::retry::RetryConfig;
        use aws_config::timeout::TimeoutConfig;
        use std::time::Duration;
        keysmith::aws::sdk_config_loader()
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(6)
                    .with_initial_backoff(Duration::from_millis(10)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(1))
                    .operation_timeout(Duration::from_secs(20))
                    .build(),
            )
            .endpoint_url(endpoint)
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .load()
            .await
    }

    /// SDK configuration for another endpoint in front of moto (a capturing proxy).
    pub async fn sdk_config_at(endpoint: &str, credentials: Credentials) -> SdkConfig {
        keysmith::aws::sdk_config_loader()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new(REGION))
            .credentials_provider(credentials)
            .load()
            .await
    }

    /// Creates the state and audit tables from `template.yaml`'s own definitions.
    pub fn create_tables(&self, state: &str, audit: &str) {
        let venv = crate::venv();
        let out = Command::new(venv.join("bin/python"))
            .arg(crate::repo_root().join("infra/local_stack.py"))
            .args(["tables", "--endpoint", &self.endpoint, "--region", REGION])
            .args(["--state-table", state, "--audit-table", audit])
            .output()
            .expect("cannot run infra/local_stack.py");
        assert!(
            out.status.success(),
            "local_stack.py tables failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Switches on moto's IAM auth enforcement (see LOCAL-AWS.md): from now on only known keys
    /// are accepted and their policies apply.
    pub async fn enable_auth(&self) {
        let status = crate::proxy::post(
            &format!("{}/moto-api/reset-auth", self.endpoint),
            "text/plain",
            "0",
        )
        .await;
        assert_eq!(status, 200, "enabling moto auth failed");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}
