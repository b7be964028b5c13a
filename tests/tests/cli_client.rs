//! The `keysmith` client (issue 30): signing with SSO and `credential_process` identities,
//! `doctor`, `exec --revoke-on-exit`, and `serve` under idle connections. The built binary runs as a
//! subprocess against the SigV4-checking local gateway in front of the built function, on moto.

use std::io::Read;
use std::time::{Duration, Instant};

use keysmith_tests::cli::{show, CliStack, User};
use keysmith_tests::stub::{Reply, Stub};
use serde_json::{json, Value};

fn sha1_hex(text: &str) -> String {
    use sha1::Digest;
    sha1::Sha1::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A stand-in for the SSO portal's `GetRoleCredentials` (`GET /federation/credentials`) that
/// hands out `user`'s keys to the bearer of `token`.
async fn sso_portal(user: &User, token: &'static str) -> Stub {
    let user = user.clone();
    Stub::start(move |seen| {
        if seen.uri.starts_with("/federation/credentials")
            && seen.header("x-amz-sso_bearer_token") == Some(token)
        {
            let expiration = (chrono::Utc::now() + chrono::Duration::hours(1)).timestamp_millis();
            Reply::json(
                200,
                &json!({"roleCredentials": {"accessKeyId": user.key_id,
                    "secretAccessKey": user.secret, "expiration": expiration}}),
            )
        } else {
            Reply::json(
                401,
                &json!({"message": "Session token not found or invalid"}),
            )
        }
    })
    .await
}

/// IAM Identity Center profiles, both forms (`sso_session`, and the legacy `sso_start_url` in
/// the profile), with the token `aws sso login` leaves in `~/.aws/sso/cache/`: keysmith signs as
/// the identity the portal hands out, and the gateway (which checks the signature against moto's
/// keys) sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keysmith_signs_with_an_sso_profile() {
    let s = CliStack::start().await;
    let token = "sso-access-token-for-the-test";
    let portal = sso_portal(&s.alice, token).await;
    let start_url = "https://d-1234567890.awsapps.com/start";
    std::fs::write(
        s.home.path().join("aws-config"),
        format!(
            "[profile sso-session]\nsso_session = corp\nsso_account_id = 123456789012\n\
             sso_role_name = Developer\nregion = us-east-1\n\n\
             [sso-session corp]\nsso_start_url = {start_url}\nsso_region = us-east-1\n\n\
             [profile sso-legacy]\nsso_start_url = {start_url}\nsso_region = us-east-1\n\
             sso_account_id = 123456789012\nsso_role_name = Developer\nregion = us-east-1\n"
        ),
    )
    .unwrap();
    let cache = s.home.path().join(".aws/sso/cache");
    std::fs::create_dir_all(&cache).unwrap();
    let expires = (chrono::Utc::now() + chrono::Duration::hours(8))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let file = json!({"accessToken": token, "expiresAt": expires, "region": "us-east-1",
        "startUrl": start_url});
    for key in ["corp", start_url] {
        std::fs::write(
            cache.join(format!("{}.json", sha1_hex(key))),
            file.to_string(),
        )
        .unwrap();
    }

    for (i, profile) in ["sso-session", "sso-legacy"].into_iter().enumerate() {
        let out = s.output(
            s.command(&s.alice)
                .env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY")
                .env("AWS_PROFILE", profile)
                .env("AWS_ENDPOINT_URL_SSO", &portal.url)
                .args(["credentials", "deploy", "--no-cache"]),
        );
        assert!(out.status.success(), "{profile}: {}", show(&out));
        let v = s.record(&out);
        assert!(
            v["AccessKeyId"].as_str().unwrap().starts_with("ASIA"),
            "{v}"
        );
        let seen = portal.seen();
        assert_eq!(seen.len(), i + 1, "{profile}: the portal was not asked");
        assert!(
            seen[i].uri.contains("role_name=Developer")
                && seen[i].uri.contains("account_id=123456789012"),
            "{:?}",
            seen[i]
        );
    }
    // The issuance was alice's: the identity the portal handed out, checked by the gateway.
    let out = s.run(
        &s.admin,
        &["audit", "--output", "json", "--event", "AWS STS Temporary"],
    );
    let items: Value = serde_json::from_slice(&out.stdout).unwrap();
    let principals: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["principal"].as_str())
        .collect();
    assert_eq!(principals, [s.alice.arn.as_str(); 2], "{items}");
    s.scan();
}

/// A base identity from a `credential_process` profile (aws-vault, Granted, 1Password): keysmith
/// runs the process and signs with what it prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keysmith_signs_with_a_credential_process_profile() {
    let s = CliStack::start().await;
    let script = s.home.path().join("vault.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nprintf '%s' '{}'\n",
            s.home.path().join("vault.log").display(),
            json!({"Version": 1, "AccessKeyId": s.alice.key_id, "SecretAccessKey": s.alice.secret})
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::write(
        s.home.path().join("aws-config"),
        format!(
            "[profile base]\nregion = us-east-1\ncredential_process = {} exec base\n",
            script.display()
        ),
    )
    .unwrap();
    let out = s.output(
        s.command(&s.alice)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_PROFILE", "base")
            .args(["credentials", "deploy", "--no-cache"]),
    );
    assert!(out.status.success(), "{}", show(&out));
    s.record(&out);
    let log = std::fs::read_to_string(s.home.path().join("vault.log")).unwrap();
    assert_eq!(
        log.trim(),
        "exec base",
        "the credential_process did not run"
    );
    s.scan();
}

fn lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn check_line<'a>(lines: &'a [String], name: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no {name} check in {lines:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn doctor_passes_on_a_working_setup() {
    let s = CliStack::start().await;
    let out = s.run(&s.alice, &["doctor", "deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let l = lines(&out);
    for name in ["api", "clock", "cache", "credentials"] {
        assert!(check_line(&l, name).starts_with("ok "), "{}", show(&out));
    }
    assert!(!l.iter().any(|l| l.contains("fix:")), "{}", show(&out));
    // The JSON form says the same.
    let out = s.run(&s.alice, &["doctor", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["checks"].as_array().unwrap().len(), 3, "{v}");
    s.scan();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn doctor_names_a_wrong_api_url() {
    let s = CliStack::start().await;
    // Nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let wrong_path = format!("{}/not-keysmith", s.gateway.endpoint);
    for api in [url.as_str(), wrong_path.as_str()] {
        let out = s.run(&s.alice, &["doctor", "deploy", "--api", api]);
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        let l = lines(&out);
        let line = check_line(&l, "api");
        assert!(
            line.starts_with("fail") && line.contains(api),
            "{}",
            show(&out)
        );
        assert!(
            l.iter().any(|l| l.contains("fix:") && l.contains("API")),
            "{}",
            show(&out)
        );
        assert!(!check_line(&l, "credentials").starts_with("ok"));
    }
    s.scan();
}

/// The clock check compares with the API's `Date` header. A stand-in API (a stub on 127.0.0.1
/// that answers every call with `200 {"leases": []}`) sends a `Date` ten minutes behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn doctor_names_a_skewed_clock() {
    let s = CliStack::start().await;
    let stub = Stub::start(|_| {
        let behind = chrono::Utc::now() - chrono::Duration::minutes(10);
        let mut r = Reply::json(200, &json!({"leases": [], "next": null}));
        r.headers.push((
            "date".into(),
            behind.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        ));
        r
    })
    .await;
    let out = s.run(&s.alice, &["doctor", "--api", &stub.url]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let l = lines(&out);
    assert!(check_line(&l, "api").starts_with("ok"), "{}", show(&out));
    let clock = check_line(&l, "clock");
    assert!(
        clock.starts_with("fail") && clock.contains("clock skew") && clock.contains("ahead of"),
        "{}",
        show(&out)
    );
    assert!(l.iter().any(|l| l.contains("fix:") && l.contains("NTP")));
    // The stub was called with a signature: doctor made a signed call.
    let seen = stub.seen();
    assert!(seen[0]
        .header("authorization")
        .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256")));
    s.scan();
}

/// The lease id `exec --revoke-on-exit` says it revoked.
fn revoked_lease(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("keysmith: revoked lease "))
        .unwrap_or_else(|| panic!("no revocation said: {}", show(out)));
    line["keysmith: revoked lease ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_revoke_on_exit_revokes_an_assumed_role_lease() {
    let s = CliStack::start().await;
    let sdk = s.moto.sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&sdk);

    // assumed_role: the child's status is kept, its lease revoked (a per-lease Deny on the role).
    let out = s.output(s.command(&s.alice).args([
        "exec",
        "deploy",
        "--revoke-on-exit",
        "--",
        "sh",
        "-c",
        "test -n \"$AWS_SESSION_TOKEN\" && exit 3",
    ]));
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let lease = revoked_lease(&out);
    let (status, got) = s
        .signed(&s.admin, "GET", "/v1/leases?limit=100", None)
        .await;
    assert_eq!(status, 200, "{got}");
    let listed = got["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lease_id"] == lease.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{lease} not listed: {got}"));
    assert_eq!(listed["status"], "revoked", "{listed}");
    let policy = keysmith_tests::revocations::role_policy(&iam, &format!("deploy-{}", s.id)).await;
    let denied = keysmith_tests::revocations::denied_leases(&policy.unwrap());
    assert!(denied.contains(&lease), "{denied:?}");
    // Nothing of it was cached.
    assert!(std::fs::read_dir(s.cache_dir())
        .map(|d| d.count() == 0)
        .unwrap_or(true));
    s.scan();
}

/// An `iam_user` lease: the user the command ran as no longer exists. On a moto of its own: once
/// a leased user is deleted, moto's state dump (which the gateway's authorizer reads) fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_revoke_on_exit_deletes_an_iam_user_lease() {
    let moto: &'static keysmith_tests::moto::Moto =
        Box::leak(Box::new(keysmith_tests::moto::Moto::start()));
    let s = CliStack::start_on(moto).await;
    let sdk = s.moto.sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let path = format!("/keysmith/{}/", s.id);
    s.put_profile(
        "temp",
        &json!({"credential_type": "iam_user",
            "policy_document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": "sts:GetCallerIdentity", "Resource": "*"}]},
            "user_path": path, "permissions_boundary_arn": keysmith_tests::api::LEASE_BOUNDARY,
            "allowed_principals": [s.alice.arn]}),
    );
    // The container credentials protocol carries session credentials only: `--server` says so.
    let out = s.run(&s.alice, &["exec", "temp", "--server", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("without --server"),
        "{}",
        show(&out)
    );

    let aws = keysmith_tests::venv().join("bin/aws");
    let out = s.output(
        s.command(&s.alice)
            .args(["exec", "temp", "--revoke-on-exit", "--"])
            .arg(&aws)
            .args([
                "sts",
                "get-caller-identity",
                "--output",
                "text",
                "--query",
                "Arn",
            ])
            .args(["--endpoint-url", &s.moto.endpoint]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let arn = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(arn.contains(&path), "{arn}");
    revoked_lease(&out);
    let user = arn.rsplit('/').next().unwrap();
    let gone = iam.get_user().user_name(user).send().await;
    assert!(gone.is_err(), "user {user} still exists");

    s.scan();
}

/// Whether the server has closed the connection (end of file or reset; nothing to read yet:
/// still open).
fn is_closed(c: &std::net::TcpStream) -> bool {
    c.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    match (&*c).read(&mut buf) {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// 200 idle connections do not keep the Rust SDK's container provider from its credentials
/// within 2 s; over `MAX_CONNECTIONS` (512) a connection is closed at once; an idle one is
/// closed once the header timeout (5 s) passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_stays_answerable_under_idle_connections() {
    let s = CliStack::start().await;
    let served = s.serve(&s.alice, "deploy", &[]);
    let addr = format!("127.0.0.1:{}", served.port());
    let whoami = keysmith_tests::function_binary("sdk_whoami");
    let sdk = |served: &keysmith_tests::cli::Served| {
        let started = Instant::now();
        let out = std::process::Command::new(&whoami)
            .env_clear()
            .env("HOME", s.home.path())
            .env("AWS_CONFIG_FILE", s.home.path().join("none"))
            .env("AWS_SHARED_CREDENTIALS_FILE", s.home.path().join("none"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &served.uri)
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", &served.token)
            .arg(&s.moto.endpoint)
            .output()
            .unwrap();
        (out, started.elapsed())
    };
    let mut idle: Vec<std::net::TcpStream> = (0..200)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let (out, took) = tokio::task::block_in_place(|| sdk(&served));

    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("assumed-role/deploy-{}/", s.id)),
        "{}",
        show(&out)
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // Past the limit: closed at once.
    idle.extend((0..400).map(|_| std::net::TcpStream::connect(&addr).unwrap()));
    std::thread::sleep(Duration::from_millis(500));
    let closed = |conns: &[std::net::TcpStream]| conns.iter().filter(|c| is_closed(c)).count();
    let at_once = closed(&idle);

    assert!(
        (88..=100).contains(&at_once),
        "{at_once} of 600 closed at once (512 allowed)"
    );
    // Idle ones go once the header timeout has passed; then the SDK is answered again.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(closed(&idle), 600);
    drop(idle);
    let (out, _) = tokio::task::block_in_place(|| sdk(&served));
    assert!(out.status.success(), "{}", show(&out));
    s.scan();
}
