//! The `keysmith` client beside `awscurl` (the hand-signed request it replaces): both ask the
//! SigV4-checking local gateway for `deploy` credentials in `credential_process` shape; the
//! client's answer comes from its cache, as it does for the AWS CLI most of the time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keysmith_tests::aws::{allow_all, assumable_role, user_with_key};
use keysmith_tests::gateway::Gateway;
use keysmith_tests::moto::{Moto, REGION};
use keysmith_tests::runtime::FunctionProcess;
use keysmith_tests::{repo_root, venv};
use serde_json::json;

pub const RUNS: usize = 25;

/// Release build if there is one (`make bench` makes it), else the debug build.
fn built(name: &str) -> PathBuf {
    let release = repo_root().join("target/release").join(name);
    if release.exists() {
        release
    } else {
        keysmith_tests::function_binary(name)
    }
}

/// Wall time of `runs` runs of a command (each must succeed), sorted.
fn time(runs: usize, make: &dyn Fn() -> Command) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let mut c = make();
            c.stdout(Stdio::null()).stderr(Stdio::piped());
            let t = Instant::now();
            let out = tokio::task::block_in_place(|| c.output()).expect("run");
            let took = t.elapsed();
            assert!(
                out.status.success(),
                "{:?}: {}",
                c.get_program(),
                String::from_utf8_lossy(&out.stderr)
            );
            took
        })
        .collect();
    times.sort();
    times
}

/// The markdown section.
pub async fn section(moto: &Moto) -> String {
    let sdk = moto.sdk_config().await;
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let (state, audit) = (format!("cli-state-{id}"), format!("cli-audit-{id}"));
    moto.create_tables(&state, &audit);
    let (admin_key, admin_secret) = user_with_key(&sdk, &format!("admin-{id}"), &allow_all()).await;
    let (key, secret) = user_with_key(&sdk, &format!("alice-{id}"), &allow_all()).await;
    let admin_arn = format!("arn:aws:iam::123456789012:user/admin-{id}");
    let function_path = built("issue-credentials");
    let function = FunctionProcess::start(
        &function_path,
        &[
            ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("KEYSMITH_STATE_TABLE", &state),
            ("KEYSMITH_AUDIT_TABLE", &audit),
            ("KEYSMITH_ADMINS", &admin_arn),
        ],
    )
    .await;
    let keys = Arc::new(keysmith_tests::keyring::KeyRing::default());
    keys.add(&admin_key, &admin_secret, None, None);
    keys.add(&key, &secret, None, None);
    let authorizer = keysmith_tests::sigv4::Authorizer::new(&moto.endpoint, keys);
    let gateway = Gateway::start_sigv4(Arc::new(function), authorizer, 0).await;
    let home = tempfile::tempdir().expect("temporary home");
    let keysmith = built("keysmith");
    let awscurl = venv().join("bin/awscurl");
    assert!(
        awscurl.exists(),
        "no awscurl in the venv: `make bench` installs bench/requirements.txt"
    );
    let command = |program: &Path, key: &str, secret: &str| {
        let mut c = Command::new(program);
        c.env_clear()
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    venv().join("bin").display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("HOME", home.path())
            .env("KEYSMITH_API", &gateway.endpoint)
            .env("AWS_CONFIG_FILE", home.path().join("none"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.path().join("none"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_REGION", REGION)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .stdin(Stdio::null());
        c
    };
    let role = assumable_role(&sdk, "/keysmith/", &format!("bench-deploy-{id}")).await;
    let profile = json!({"credential_type": "assumed_role", "role_arn": role,
        "allowed_principals": [format!("arn:aws:iam::123456789012:user/alice-{id}")], "max_active_leases": 100});
    let file = home.path().join("deploy.json");
    std::fs::write(&file, profile.to_string()).expect("write the profile");
    time(1, &|| {
        let mut c = command(&keysmith, &admin_key, &admin_secret);
        c.args(["profiles", "put", "deploy", "--file"]).arg(&file);
        c
    });

    let cached = || {
        let mut c = command(&keysmith, &key, &secret);
        c.args(["credentials", "deploy"]);
        c
    };
    time(1, &cached); // fills the cache
    let before = gateway.requests();
    let keysmith_cached = time(RUNS, &cached);
    assert_eq!(gateway.requests(), before, "cached calls made requests");
    let keysmith_fresh = time(RUNS, &|| {
        let mut c = cached();
        c.arg("--no-cache");
        c
    });
    let url = format!(
        "{}/v1/profiles/deploy/credentials?format=credential_process",
        gateway.endpoint
    );
    let awscurl_times = time(RUNS, &|| {
        let mut c = command(&awscurl, &key, &secret);
        c.args([
            "--service",
            "execute-api",
            "--region",
            REGION,
            "-X",
            "POST",
            "-d",
            "{}",
        ])
        .arg(&url);
        c
    });

    let med = |t: &[Duration]| t[t.len() / 2];
    let (kc, kf, ac) = (
        med(&keysmith_cached),
        med(&keysmith_fresh),
        med(&awscurl_times),
    );
    let build = |p: &Path| {
        if p.starts_with(repo_root().join("target/release")) {
            "release"
        } else {
            "debug"
        }
    };
    format!(
        "\n## The `keysmith` client beside `awscurl`\n\n\
         {RUNS} runs each, wall time of the whole process, against the SigV4-checking local gateway in \
         front of the {} `issue-credentials` on moto; `keysmith` is the {} build. Times in ms.\n\n\
         | client | median | fastest | slowest |\n|---|---|---|---|\n\
         | `keysmith credentials deploy` (cached: no request) | {} | {} | {} |\n\
         | `keysmith credentials deploy --no-cache` (signs, issues) | {} | {} | {} |\n\
         | `awscurl --service execute-api -X POST …/credentials?format=credential_process` | {} | {} | {} |\n\n\
         Cached `keysmith` is {:.0}× faster than `awscurl` (median).\n",
        build(&function_path),
        build(&keysmith),
        super::ms(kc),
        super::ms(keysmith_cached[0]),
        super::ms(keysmith_cached[RUNS - 1]),
        super::ms(kf),
        super::ms(keysmith_fresh[0]),
        super::ms(keysmith_fresh[RUNS - 1]),
        super::ms(ac),
        super::ms(awscurl_times[0]),
        super::ms(awscurl_times[RUNS - 1]),
        ac.as_secs_f64() / kc.as_secs_f64().max(1e-9),
    )
}
