//! The `keysmith` client end to end: the built binary as a subprocess, against the local gateway
//! (which checks each request's SigV4 signature against moto's keys and takes the caller from it)
//! in front of the built function, on moto. Tests run on a multi-threaded runtime: the gateway
//! serves on it while a test waits for a subprocess.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use keysmith_tests::cli::{show, CliStack};
use keysmith_tests::proxy::percent_decode;
use keysmith_tests::venv;
use serde_json::{json, Value};

fn cache_files(s: &CliStack) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(s.cache_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_are_cached_0600_refreshed_in_the_window_and_survive_a_corrupt_cache() {
    let s = CliStack::start().await;
    let first = s.run(&s.alice, &["credentials", "deploy"]);
    assert!(first.status.success(), "{}", show(&first));
    let v = s.record(&first);
    assert_eq!(v["Version"], 1);
    for field in [
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
    ] {
        assert!(
            v[field].as_str().is_some_and(|f| !f.is_empty()),
            "{field}: {v}"
        );
    }
    assert!(chrono::DateTime::parse_from_rfc3339(v["Expiration"].as_str().unwrap()).is_ok());

    // Within the window: no request at all, the same keys.
    let requests = s.gateway.requests();
    let second = s.run(&s.alice, &["credentials", "deploy"]);
    assert!(second.status.success(), "{}", show(&second));
    assert_eq!(
        s.gateway.requests(),
        requests,
        "a cached answer made a request"
    );
    assert_eq!(s.record(&second), v);

    // 0700 directory, 0600 file (and nothing else left behind but the lock).
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.cache_dir()), 0o700);
    let files = cache_files(&s);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&files[0]), 0o600);

    // Inside the refresh window (it is longer than the credentials' life): new credentials.
    let refreshed = s.run(
        &s.alice,
        &["credentials", "deploy", "--refresh-window", "86400"],
    );
    assert!(refreshed.status.success(), "{}", show(&refreshed));
    let r = s.record(&refreshed);
    assert_eq!(s.gateway.requests(), requests + 1);
    assert_ne!(r["AccessKeyId"], v["AccessKeyId"]);

    // A corrupt cache file is replaced, not fatal.
    std::fs::write(&files[0], b"{\"access_key_id\": tru").unwrap();
    let after = s.run(&s.alice, &["credentials", "deploy"]);
    assert!(after.status.success(), "{}", show(&after));
    s.record(&after);
    assert_eq!(s.gateway.requests(), requests + 2);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_ok());
    assert_eq!(mode(&files[0]), 0o600);

    // Another caller has an entry of its own; --no-cache always asks.
    let admin = s.run(&s.admin, &["credentials", "deploy", "--no-cache"]);
    assert!(admin.status.success(), "{}", show(&admin));
    s.record(&admin);
    assert_eq!(s.gateway.requests(), requests + 3);
    assert_eq!(cache_files(&s).len(), 1);
    s.scan();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_aws_cli_runs_through_credential_process_and_exec() {
    let s = CliStack::start().await;
    let keysmith = keysmith_tests::cli::keysmith();
    std::fs::write(
        s.home.path().join("aws-config"),
        format!(
            "[profile deploy]\nregion = us-east-1\ncredential_process = {} credentials deploy\n",
            keysmith.display()
        ),
    )
    .unwrap();
    let role = format!("assumed-role/deploy-{}/", s.id);
    let aws = venv().join("bin/aws");
    let endpoint = s.moto.endpoint.clone();

    let whoami = [
        "sts",
        "get-caller-identity",
        "--endpoint-url",
        endpoint.as_str(),
        "--output",
        "json",
    ];
    // Each way of handing the AWS CLI credentials must make it the profile's role session.
    let assert_role = |out: std::process::Output| {
        assert!(out.status.success(), "{}", show(&out));
        let who: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(who["Arn"].as_str().unwrap().contains(&role), "{who}");
    };

    // credential_process: the AWS CLI (explicit profile: it ignores the caller's env keys).
    let mut cli = s.command_for(&aws, &s.alice);
    cli.args(["--profile", "deploy"]).args(whoami);
    assert_role(s.output(&mut cli));

    // exec: the child sees the credentials, not the caller's keys or profile.
    assert_role(
        s.output(
            s.command(&s.alice)
                .env("AWS_PROFILE", "nonexistent")
                .args(["exec", "deploy", "--"])
                .arg(&aws)
                .args(whoami),
        ),
    );

    // exec --server: the AWS CLI reads the loopback container endpoint.
    assert_role(
        s.output(
            s.command(&s.alice)
                .args(["exec", "deploy", "--server", "--"])
                .arg(&aws)
                .args(whoami),
        ),
    );

    // The child's exit status is keysmith's, and the variables are as SPEC §9 says.
    let out = s.output(
        s.command(&s.alice)
            .env("AWS_DEFAULT_PROFILE", "x")
            .args(["exec", "deploy", "--", "sh", "-c"])
            .arg("test -n \"$AWS_ACCESS_KEY_ID\" && test -n \"$AWS_SECRET_ACCESS_KEY\" && test -n \"$AWS_SESSION_TOKEN\" && test -n \"$AWS_CREDENTIAL_EXPIRATION\" && test -z \"$AWS_PROFILE$AWS_DEFAULT_PROFILE\" && exit 7"),
    );
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    s.scan();
}

/// `credential_process = keysmith credentials P` with `AWS_PROFILE=P`: keysmith's own SDK chain
/// would run keysmith again, which would run keysmith again… The nested run refuses at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keysmith_signing_through_its_own_credential_process_is_refused_not_looped() {
    use std::os::unix::process::CommandExt;
    let s = CliStack::start().await;
    let keysmith = keysmith_tests::cli::keysmith();
    std::fs::write(
        s.home.path().join("aws-config"),
        format!(
            "[profile looping]\nregion = us-east-1\ncredential_process = {} credentials looping\n",
            keysmith.display()
        ),
    )
    .unwrap();
    let mut command = s.command(&s.alice);
    command
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_PROFILE", "looping")
        .args(["credentials", "deploy", "--no-cache"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a loop of keysmith → sh → keysmith… is killed as a whole.
        .process_group(0);
    let before = s.gateway.requests();
    let mut child = command.spawn().unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(20) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!("keysmith still runs after 20 s: it keeps running itself");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().unwrap();
    s.keep_stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(out.stdout.is_empty(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("keysmith: ")
            && err.contains("credential_process")
            && err.contains("'looping'")
            && err.contains("AWS_PROFILE"),
        "{err}"
    );
    assert_eq!(s.gateway.requests(), before, "no request is made");
    s.scan();
}

/// `exec` leaves the command no way to another identity: no profile, web identity or container
/// variables of the parent's, and under `--server` no shared config or credentials file either
/// (a `[default]` there comes before the container endpoint in every SDK's chain).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_leaves_the_command_no_other_identity() {
    let s = CliStack::start().await;
    let token_file = s.home.path().join("web-identity-token");
    std::fs::write(&token_file, "not-a-real-token").unwrap();
    let token_file = token_file.display().to_string();
    let parent = [
        ("AWS_PROFILE", "other"),
        ("AWS_DEFAULT_PROFILE", "other"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.as_str()),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/other"),
        ("AWS_ROLE_SESSION_NAME", "other"),
        (
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "/v2/credentials/other",
        ),
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://169.254.170.23/other",
        ),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "other-token"),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file.as_str(),
        ),
    ];
    for server in [false, true] {
        let mut command = s.command(&s.alice);
        command.envs(parent).args(["exec", "deploy"]);
        if server {
            command.arg("--server");
        }
        let out = s.output(command.args(["--", "env"]));
        assert!(out.status.success(), "{}", show(&out));
        let env: std::collections::HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        keysmith_tests::leaks::record_from(&json!({
            "secret_access_key": env.get("AWS_SECRET_ACCESS_KEY"),
            "session_token": env.get("AWS_SESSION_TOKEN"),
        }));
        for (name, value) in parent {
            let ours = server
                && matches!(
                    name,
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI" | "AWS_CONTAINER_AUTHORIZATION_TOKEN"
                );
            if ours {
                assert_ne!(env.get(name).map(String::as_str), Some(value), "{name}");
            } else {
                assert!(
                    !env.contains_key(name),
                    "server {server}: {name} reached the command"
                );
            }
        }
        assert!(!env.contains_key("KEYSMITH_NESTED"), "{env:?}");
        assert_eq!(env.get("AWS_REGION").map(String::as_str), Some("us-east-1"));
        assert_eq!(
            env.get("AWS_DEFAULT_REGION").map(String::as_str),
            Some("us-east-1")
        );
        if server {
            assert!(env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].starts_with("http://127.0.0.1:"));
            assert_eq!(env["AWS_SHARED_CREDENTIALS_FILE"], "/dev/null");
            assert_eq!(env["AWS_CONFIG_FILE"], "/dev/null");
            assert!(!env.contains_key("AWS_ACCESS_KEY_ID"), "{env:?}");
        } else {
            assert!(env["AWS_ACCESS_KEY_ID"].starts_with("ASIA"), "{env:?}");
        }
    }

    // A [default] in the shared credentials file and a web identity in the parent do not change
    // who the AWS CLI is under `exec --server`.
    std::fs::write(
        s.home.path().join("aws-credentials"),
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            s.admin.key_id, s.admin.secret
        ),
    )
    .unwrap();
    let aws = venv().join("bin/aws");
    let out = s.output(
        s.command(&s.alice)
            .envs(parent)
            .args(["exec", "deploy", "--server", "--"])
            .arg(&aws)
            .args([
                "sts",
                "get-caller-identity",
                "--output",
                "json",
                "--endpoint-url",
            ])
            .arg(&s.moto.endpoint),
    );
    assert!(out.status.success(), "{}", show(&out));
    let who: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        who["Arn"]
            .as_str()
            .unwrap()
            .contains(&format!("assumed-role/deploy-{}/", s.id)),
        "{who}"
    );
    s.scan();
}

/// `keysmith exec` stands between the shell and the command until the command ends. A SIGTERM
/// sent to keysmith alone (`kill`, `timeout`, a CI runner cancelling the job) reaches the command,
/// which can clean up; Ctrl-C (SIGINT to the whole foreground group) reaches the command from the
/// terminal, and keysmith waits for it instead of dying first and handing the prompt back while
/// the command (a `terraform apply`) is still writing. Either way keysmith leaves with the
/// command's status.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_passes_sigterm_on_and_outlives_ctrl_c() {
    use std::os::unix::process::CommandExt;
    let s = CliStack::start().await;
    let script = "trap 'echo got-TERM; exit 7' TERM; trap 'echo got-INT; exit 3' INT; echo ready; \
                  while :; do sleep 0.1; done";
    for (signal, to_group, code) in [("TERM", false, 7), ("INT", true, 3)] {
        let mut child = s
            .command(&s.alice)
            .args(["exec", "deploy", "--", "sh", "-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id().to_string();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        let target = if to_group {
            format!("-{pid}")
        } else {
            pid.clone()
        };
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), "--", &target])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        // Whatever happened, nothing of this run keeps going.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let status = status.unwrap_or_else(|| panic!("SIG{signal}: keysmith still running"));
        assert_eq!(
            status.code(),
            Some(code),
            "SIG{signal}: {status:?}, command printed {rest:?}"
        );
        assert_eq!(rest, [format!("got-{signal}")], "SIG{signal}");
    }
    s.scan();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn boto3_reads_from_serve_and_is_refused_without_the_token() {
    let s = CliStack::start().await;
    let mut serve = s
        .command(&s.alice)
        .args(["serve", "deploy"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let uri_line = lines.next().unwrap().unwrap();
    let token_line = lines.next().unwrap().unwrap();
    let uri = uri_line
        .strip_prefix("AWS_CONTAINER_CREDENTIALS_FULL_URI=")
        .unwrap()
        .to_owned();
    let token = token_line
        .strip_prefix("AWS_CONTAINER_AUTHORIZATION_TOKEN=")
        .unwrap()
        .to_owned();
    assert!(uri.starts_with("http://127.0.0.1:"), "{uri}");
    assert!(token.len() >= 32);

    let script = "import boto3, sys\n\
        sts = boto3.client('sts', endpoint_url=sys.argv[1], region_name='us-east-1')\n\
        print(sts.get_caller_identity()['Arn'])\n";
    let python = |with_token: bool| {
        let mut c = std::process::Command::new(venv().join("bin/python"));
        c.env_clear()
            .env("HOME", s.home.path())
            .env("AWS_CONFIG_FILE", s.home.path().join("none"))
            .env("AWS_SHARED_CREDENTIALS_FILE", s.home.path().join("none"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)
            .args(["-c", script, &s.moto.endpoint]);
        if with_token {
            c.env("AWS_CONTAINER_AUTHORIZATION_TOKEN", &token);
        }
        c.output().unwrap()
    };
    let out = tokio::task::block_in_place(|| python(true));
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("assumed-role/deploy-{}/", s.id))
    );

    let out = tokio::task::block_in_place(|| python(false));
    assert!(
        !out.status.success(),
        "boto3 got credentials without the token"
    );
    for (auth, what) in [(None, "no token"), (Some("wrong"), "a wrong token")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let (status, body) = keysmith_tests::proxy::request("GET", &uri, &headers, "").await;
        assert_eq!(status, 403, "{what}: {body}");
    }
    let (status, body) =
        keysmith_tests::proxy::request("GET", &uri, &[("authorization", &token)], "").await;
    assert_eq!(status, 200);
    let creds: Value = serde_json::from_str(&body).unwrap();
    keysmith_tests::leaks::record_from(&creds);
    for field in ["AccessKeyId", "SecretAccessKey", "Token", "Expiration"] {
        assert!(creds[field].is_string(), "{field}: {creds}");
    }
    serve.kill().unwrap();
    let out = serve.wait_with_output().unwrap();
    keysmith_tests::leaks::check(&String::from_utf8_lossy(&out.stderr), "serve's stderr");

    // Renewal: with a refresh window longer than the credentials' life, every answer is new.
    let mut renewing = s
        .command(&s.alice)
        .args(["serve", "deploy", "--refresh-window", "86400"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(renewing.stdout.take().unwrap()).lines();
    let uri = lines.next().unwrap().unwrap();
    let uri = uri.split_once('=').unwrap().1.to_owned();
    let token = lines.next().unwrap().unwrap();
    let token = token.split_once('=').unwrap().1.to_owned();
    let mut keys = std::collections::BTreeSet::new();
    for _ in 0..2 {
        let (status, body) =
            keysmith_tests::proxy::request("GET", &uri, &[("authorization", &token)], "").await;
        assert_eq!(status, 200, "{body}");
        let creds: Value = serde_json::from_str(&body).unwrap();
        keysmith_tests::leaks::record_from(&creds);
        keys.insert(creds["AccessKeyId"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        keys.len(),
        2,
        "credentials inside the refresh window were not renewed"
    );
    renewing.kill().unwrap();
    let out = renewing.wait_with_output().unwrap();
    keysmith_tests::leaks::check(&String::from_utf8_lossy(&out.stderr), "serve's stderr");
    s.scan();
}

/// A fake federation endpoint on 127.0.0.1: answers `getSigninToken` with a fixed token and
/// remembers the session it was given.
async fn federation() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/federation", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let keep = keep.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    keep.lock().unwrap().push(req.uri().to_string());
                    async move {
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(
                            r#"{"SigninToken":"fake-signin-token-42"}"#,
                        ))))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_signs_in_through_the_federation_endpoint_and_refuses_session_tokens() {
    let s = CliStack::start().await;
    let (endpoint, seen) = federation().await;
    let out = s.run(
        &s.alice,
        &[
            "console",
            "deploy",
            "--signin-endpoint",
            &endpoint,
            "--destination",
            "https://console.aws.amazon.com/s3/",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let link = url::Url::parse(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let q: std::collections::HashMap<String, String> = link.query_pairs().into_owned().collect();
    assert_eq!(q["Action"], "login");
    assert_eq!(q["SigninToken"], "fake-signin-token-42");
    assert_eq!(q["Destination"], "https://console.aws.amazon.com/s3/");
    let asked = url::Url::parse(&format!("http://x{}", seen.lock().unwrap()[0])).unwrap();
    let asked: std::collections::HashMap<String, String> =
        asked.query_pairs().into_owned().collect();
    assert_eq!(asked["Action"], "getSigninToken");
    let session: Value = serde_json::from_str(&asked["Session"]).unwrap();
    keysmith_tests::leaks::record_from(
        &json!({"secret_access_key": session["sessionKey"], "session_token": session["sessionToken"]}),
    );
    assert!(session["sessionId"].as_str().unwrap().starts_with("ASIA"));

    // A session_token profile: a clear error, and no call to the federation endpoint.
    let sdk = s.moto.sdk_config().await;
    let base = format!("base-{}", s.id);
    let (key_id, secret) =
        keysmith_tests::aws::user_with_key(&sdk, &base, &keysmith_tests::aws::allow_all()).await;
    keysmith_tests::leaks::record_from(&json!({ "secret_access_key": secret }));
    keysmith_tests::aws::secret(
        &sdk,
        &format!("keysmith/{base}"),
        &json!({"AccessKeyId": key_id, "SecretAccessKey": secret}),
    )
    .await;
    s.put_profile(
        "session",
        &json!({"credential_type": "session_token", "source_secret_id": format!("keysmith/{base}"),
            "allowed_principals": [s.alice.arn]}),
    );
    let calls = seen.lock().unwrap().len();
    let out = s.run(
        &s.alice,
        &["console", "session", "--signin-endpoint", &endpoint],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("keysmith: ")
            && err.contains("session_token")
            && err.contains("assumed_role"),
        "{err}"
    );
    assert_eq!(seen.lock().unwrap().len(), calls);
    s.scan();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_commands_round_trip_a_profile_and_read_the_audit_trail() {
    let s = CliStack::start().await;
    let sdk = s.moto.sdk_config().await;
    let role =
        keysmith_tests::aws::assumable_role(&sdk, "/keysmith/", &format!("ops-{}", s.id)).await;
    let file = s.home.path().join("ops.json");
    std::fs::write(&file, json!({"credential_type": "assumed_role", "role_arn": role, "allowed_principals": [s.alice.arn]}).to_string()).unwrap();
    let file = file.to_str().unwrap();

    let out = s.run(&s.admin, &["profiles", "put", "ops", "--file", file]);
    assert!(out.status.success(), "{}", show(&out));
    // Global options after the subcommand, and before it.
    let out = s.run(&s.admin, &["profiles", "get", "ops", "--output", "json"]);
    assert!(out.status.success(), "{}", show(&out));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["role_arn"], role);
    let out = s.run(&s.admin, &["--output", "json", "profiles", "list"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["deploy", "ops"]);
    let out = s.run(&s.admin, &["profiles", "list"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with("NAME") && table.lines().any(|l| l.starts_with("ops ")),
        "{table}"
    );
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(&header[..3], ["NAME", "TYPE", "ENABLED"], "{table}");
    let ops: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("ops "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&ops[..3], ["ops", "assumed_role", "true"], "{table}");
    // Incident response from the client: every credential of the profile stops working.
    let out = s.run(
        &s.admin,
        &[
            "revoke",
            "ops",
            "--reason",
            "leaked in a CI log",
            "--output",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let role_name = role.rsplit('/').next().unwrap();
    let policy = aws_sdk_iam::Client::new(&sdk)
        .get_role_policy()
        .role_name(role_name)
        .policy_name("keysmith-revocations")
        .send()
        .await
        .unwrap();
    let doc = percent_decode(&policy.policy_document);
    assert!(
        doc.contains("aws:TokenIssueTime") && doc.contains("keysmith:profile"),
        "{doc}"
    );
    let out = s.run(&s.admin, &["profiles", "delete", "ops"]);
    assert!(out.status.success(), "{}", show(&out));

    // API errors: exit 1, `keysmith: <message> (<code>[, field <field>])`.
    let out = s.run(&s.admin, &["profiles", "get", "ops"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("keysmith: ") && err.trim_end().ends_with("(not_found)"),
        "{err}"
    );
    let out = s.run(&s.alice, &["profiles", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .trim_end()
            .ends_with("(forbidden)"),
        "{}",
        show(&out)
    );
    let out = s.run(
        &s.alice,
        &[
            "credentials",
            "deploy",
            "--duration-seconds",
            "1",
            "--no-cache",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.trim_end()
            .ends_with("(invalid_request, field duration_seconds)"),
        "{err}"
    );

    // The other admin lists answer in both formats.
    for args in [
        &["rotations", "list"][..],
        &["leases", "list", "--profile", "deploy"][..],
    ] {
        let out = s.run(&s.admin, args);
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        let mut json = args.to_vec();
        json.extend(["--output", "json"]);
        let out = s.run(&s.admin, &json);
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        assert!(serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .is_array());
    }

    // `leases renew` reaches the route (SPEC §16): no such lease here.
    let out = s.run(
        &s.admin,
        &[
            "leases",
            "renew",
            "0d5f3c52-86a1-4f5e-9c0e-7b3a2f1e4d6c",
            "--duration-seconds",
            "3600",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .trim_end()
            .ends_with("(not_found)"),
        "{}",
        show(&out)
    );

    // The audit trail through the client.
    let out = s.run(&s.admin, &["audit", "--output", "json", "--limit", "50"]);
    assert!(out.status.success(), "{}", show(&out));
    let items: Value = serde_json::from_slice(&out.stdout).unwrap();
    let events: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["event"].as_str().unwrap())
        .collect();
    assert!(
        events.contains(&"Profile Created") && events.contains(&"Profile Deleted"),
        "{events:?}"
    );
    let out = s.run(&s.admin, &["audit", "--profile", "ops"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("TIME"),
        "{}",
        show(&out)
    );
    s.scan();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unsigned_or_wrongly_signed_requests_are_403_and_usage_errors_exit_2() {
    let s = CliStack::start().await;
    let url = format!("{}/v1/profiles", s.gateway.endpoint);
    let (status, _) = keysmith_tests::proxy::request("GET", &url, &[], "").await;
    assert_eq!(status, 403, "unsigned");
    let forged = "AWS4-HMAC-SHA256 Credential=".to_owned()
        + &s.admin.key_id
        + "/20260101/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=00";
    let (status, _) = keysmith_tests::proxy::request(
        "GET",
        &url,
        &[
            ("authorization", &forged),
            (
                "x-amz-date",
                &chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string(),
            ),
        ],
        "",
    )
    .await;
    assert_eq!(status, 403, "forged");
    let mut wrong = s.admin.clone();
    wrong.secret = "not-the-secret-of-this-key-000000".into();
    let out = s.run(&wrong, &["profiles", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(forbidden)"),
        "{}",
        show(&out)
    );

    for args in [
        &["credentials"][..],
        &["no-such-command"][..],
        &["--output", "yaml", "profiles", "list"][..],
        &["exec", "deploy"][..],
        &["env", "deploy", "--shell", "tcsh"][..],
    ] {
        let out = s.run(&s.alice, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
    }
    for args in [
        &["--version"][..],
        &["--help"][..],
        &["serve", "--help"][..],
    ] {
        let out = s.run(&s.alice, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
    }
    let out = s.run(&s.alice, &["env", "deploy", "--shell", "fish"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("set -gx AWS_SESSION_TOKEN"));
    s.scan();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_make_one_request_and_agree() {
    let s = CliStack::start().await;
    let before = s.gateway.requests();
    let children: Vec<_> = (0..6)
        .map(|_| {
            s.command(&s.alice)
                .args(["credentials", "deploy"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = tokio::task::block_in_place(|| {
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect()
    });
    let keys: std::collections::BTreeSet<String> = outs
        .iter()
        .map(|o| {
            assert!(o.status.success(), "{}", show(o));
            keysmith_tests::leaks::check(&String::from_utf8_lossy(&o.stderr), "stderr");
            s.record(o)["AccessKeyId"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(s.gateway.requests(), before + 1);
    s.scan();
}

/// Signs `method url body` for `execute-api` with `aws-sigv4`, as any SigV4 client would.
fn signed_headers(
    user: &keysmith_tests::cli::User,
    method: &str,
    url: &str,
    body: &str,
) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let identity =
        aws_sdk_sts::config::Credentials::new(&user.key_id, &user.secret, None, None, "test")
            .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("execute-api")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        std::iter::empty(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_checks_what_was_signed() {
    let s = CliStack::start().await;
    let url = format!("{}/v1/profiles/deploy/credentials", s.gateway.endpoint);
    let signed = signed_headers(&s.alice, "POST", &url, "{}");
    let headers: Vec<(&str, &str)> = signed
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // The same signature over another body, another path, or from another key id: 403.
    let (status, _) =
        keysmith_tests::proxy::request("POST", &url, &headers, r#"{"duration_seconds": 43200}"#)
            .await;
    assert_eq!(status, 403, "tampered body");
    let other = format!("{}/v1/profiles/other/credentials", s.gateway.endpoint);
    let (status, _) = keysmith_tests::proxy::request("POST", &other, &headers, "{}").await;
    assert_eq!(status, 403, "another path");
    // As signed: the caller is alice, from her key.
    let (status, body) = keysmith_tests::proxy::request("POST", &url, &headers, "{}").await;
    assert_eq!(status, 200, "{body}");
    let issued: Value = serde_json::from_str(&body).unwrap();
    keysmith_tests::leaks::record_from(&issued);
    let out = s.run(
        &s.admin,
        &["audit", "--output", "json", "--event", "AWS STS Temporary"],
    );
    let items: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(items[0]["principal"], s.alice.arn.as_str(), "{items}");
    s.scan();
}

/// A revoked lease is not served from the cache: `leases revoke` removes its cached entry, so
/// the next `credentials` asks the API for new keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_revoke_removes_the_cached_credentials() {
    let s = CliStack::start().await;
    let first = s.run(&s.alice, &["credentials", "deploy"]);
    assert!(first.status.success(), "{}", show(&first));
    let v = s.record(&first);
    assert_eq!(cache_files(&s).len(), 1);
    let listed = s.run(&s.alice, &["leases", "list", "--output", "json"]);
    assert!(listed.status.success(), "{}", show(&listed));
    let leases: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let items = leases["leases"].as_array().or(leases.as_array()).unwrap();
    let lease = items
        .iter()
        .find(|l| l["status"] == "active")
        .and_then(|l| l["lease_id"].as_str())
        .unwrap()
        .to_owned();
    let revoked = s.run(&s.alice, &["leases", "revoke", &lease]);
    assert!(revoked.status.success(), "{}", show(&revoked));
    assert!(
        cache_files(&s).is_empty(),
        "the revoked lease is still cached"
    );
    let requests = s.gateway.requests();
    let again = s.run(&s.alice, &["credentials", "deploy"]);
    assert!(again.status.success(), "{}", show(&again));
    assert_eq!(
        s.gateway.requests(),
        requests + 1,
        "new keys were asked for"
    );
    assert_ne!(s.record(&again)["AccessKeyId"], v["AccessKeyId"]);
    s.scan();
}
