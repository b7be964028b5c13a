//! `make bench`: cold start, latency, memory and size of the three functions, beside the floor (a
//! hello-world `lambda_runtime` function built with the same profile) and the same jobs in Python
//! with boto3 under awslambdaric, all driven through the Lambda Runtime API against moto in one
//! run. Plus the scheduled run's DynamoDB reads as the number of policies grows, and the
//! `keysmith` client's cached `credentials` call beside `awscurl` (`bench --client-only`: that
//! section alone; `bench --tls-only`: the cold start over TLS alone).
//!
//! A benchmark, not a test: it reports, it never fails on slow numbers.

mod client;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use keysmith::audit::Origin;
use keysmith_tests::api::{TestApp, ADMIN, DEPLOYER};
use keysmith_tests::aws::{allow_all, assumable_role, user_with_key};
use keysmith_tests::moto::{Moto, REGION};
use keysmith_tests::rotation::{rotation_lambda, start_rotation};
use keysmith_tests::runtime::FunctionProcess;
use keysmith_tests::{event, repo_root, seed_not_due_policies, venv};
use serde_json::{json, Value};

const COLD_STARTS: usize = 10;
/// Init alone: rounds of the floor and the three functions started in turn (see `interleaved_inits`).
const INIT_ROUNDS: usize = 60;
const WARM_INVOCATIONS: usize = 200;
/// Cold starts of each function over HTTP and over TLS, alternating.
const TLS_COLD_STARTS: usize = 20;

struct Candidate {
    label: String,
    program: PathBuf,
    args: Vec<String>,
    event: Value,
    size: Option<u64>,
}

#[derive(Default)]
struct Measured {
    init: Vec<Duration>,
    first: Vec<Duration>,
    /// init + first invocation of the same process: what the first request waits for.
    cold: Vec<Duration>,
    warm: Vec<Duration>,
    peak_rss_kib: u64,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// VmHWM: the peak resident set of the process.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// One cold start: a new process, its init, its first invocation. The process is returned
/// for more (warm) invocations.
async fn cold_start(c: &Candidate, env: &[(&str, &str)], m: &mut Measured) -> FunctionProcess {
    let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
    let f = FunctionProcess::start_command(&c.program, &args, env).await;
    let init = f.init_duration().await;
    let t = Instant::now();
    let out = f.invoke(&c.event).await;
    let first = t.elapsed();
    if let Err(e) = &out {
        panic!("{}: {e}\n{}", c.label, f.logs());
    }
    m.init.push(init);
    m.first.push(first);
    m.cold.push(init + first);
    f
}

/// Init (start to the first `next`) of each candidate, `INIT_ROUNDS` times, the candidates in
/// turn: whatever drifts on a shared 2-core machine (moto's background work, the page cache, the
/// other core) falls on the floor and the functions alike, so their ratio is a side-by-side one.
/// Ten cold starts per candidate, one candidate after the other, moved the ratio by ±0.3 between
/// runs of the same binaries.
async fn interleaved_inits(cs: &[&Candidate], env: &[(&str, &str)]) -> Vec<Vec<Duration>> {
    let mut inits = vec![Vec::with_capacity(INIT_ROUNDS); cs.len()];
    for _ in 0..INIT_ROUNDS {
        for (c, out) in cs.iter().zip(inits.iter_mut()) {
            let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
            let f = FunctionProcess::start_command(&c.program, &args, env).await;
            out.push(f.init_duration().await);
        }
    }
    for v in &mut inits {
        v.sort();
    }
    inits
}

impl Measured {
    fn sort(&mut self) {
        self.init.sort();
        self.first.sort();
        self.cold.sort();
        self.warm.sort();
    }
}

async fn measure(c: &Candidate, env: &[(&str, &str)]) -> Measured {
    let mut m = Measured::default();
    for i in 0..COLD_STARTS {
        let f = cold_start(c, env, &mut m).await;
        if i + 1 == COLD_STARTS {
            for _ in 0..WARM_INVOCATIONS {
                let t = Instant::now();
                let _ = f.invoke(&c.event).await;
                m.warm.push(t.elapsed());
            }
            m.peak_rss_kib = f.pid().map(peak_rss_kib).unwrap_or(0);
        }
    }
    m.sort();
    m
}

/// The release binary `name`, staged the way Lambda runs it: copied out as
/// `target/bench/bin/<name>/bootstrap`, as a deployment unpacks it from its zip. Not run in place:
/// lld writes its output through a memory map, which leaves the file in the page cache as single
/// pages, and every cold start of a multi-megabyte binary then takes 8–10% more page faults (and
/// 0.1 ms) than the same bytes written by `write` — a cost of the build directory, which no
/// deployed function pays (docs/decisions.md). The floor is staged the same way.
fn release(name: &str) -> PathBuf {
    let built = repo_root().join("target/release").join(name);
    assert!(
        built.exists(),
        "{} is missing: `make bench` builds it first",
        built.display()
    );
    let dir = repo_root().join("target/bench/bin").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let staged = dir.join("bootstrap");
    // A fresh file each run (never the previous run's, nor a link to the build's).
    let _ = std::fs::remove_file(&staged);
    std::fs::copy(&built, &staged).unwrap();
    staged
}

fn size(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

#[tokio::main]
async fn main() {
    let moto = Moto::start();
    if std::env::args().any(|a| a == "--client-only") {
        let section = client::section(&moto).await;
        println!("{section}");
        return;
    }
    let root = moto.sdk_config().await;
    let t = TestApp::on(&moto, root.clone()).await;

    // issue-credentials: an assumed_role profile.
    let role = assumable_role(&root, "/keysmith/", "deploy").await;
    t.put_profile(
        "deploy",
        json!({"credential_type": "assumed_role", "role_arn": role,
        "allowed_principals": [DEPLOYER]}),
    )
    .await;
    let mut issue = event("credentials-post.json");
    issue["requestContext"]["authorizer"]["iam"]["userArn"] = DEPLOYER.into();
    // secret-rotation: a secret with a rotation in progress; setSecret after the guards.
    let (key, secret_key) = user_with_key(&root, "bench-rotated", &allow_all()).await;
    keysmith_tests::aws::bind(&root, "bench-rotated", "keysmith/bench-rotated").await;
    let secret = aws_sdk_secretsmanager::Client::new(&root)
        .create_secret()
        .name("keysmith/bench-rotated")
        .secret_string(json!({"user_name": "bench-rotated", "access_key_id": key, "secret_access_key": secret_key}).to_string())
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let lambda = rotation_lambda(&moto, &root).await;
    let token = start_rotation(&root, &secret, &lambda).await;
    let rotation = json!({"Step": "setSecret", "SecretId": secret, "ClientRequestToken": token});
    let scheduled = event("scheduled.json");

    let env: Vec<(&str, &str)> = vec![
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_REGION", REGION),
        ("AWS_DEFAULT_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("KEYSMITH_STATE_TABLE", &t.state_table),
        ("KEYSMITH_AUDIT_TABLE", &t.audit_table),
        ("KEYSMITH_ADMINS", ADMIN),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
        ("PYTHONPATH", "bench/python"),
    ];
    let python = venv().join("bin/python");
    let py = |handler: &str, event: &Value| Candidate {
        label: format!("python `{handler}`"),
        program: python.clone(),
        args: vec![
            "-m".into(),
            "awslambdaric".into(),
            format!("keysmith_bench.{handler}"),
        ],
        event: event.clone(),
        size: None,
    };
    let rust = |name: &str, event: &Value| {
        let program = release(name);
        Candidate {
            label: name.to_owned(),
            size: size(&program),
            program,
            args: vec![],
            event: event.clone(),
        }
    };
    std::env::set_current_dir(repo_root()).unwrap();
    if std::env::args().any(|a| a == "--tls-only") {
        println!(
            "{}",
            tls_section(&moto, &env, [&issue, &scheduled, &rotation]).await
        );
        return;
    }

    let floor_c = rust("hello-lambda", &json!({"hello": "world"}));
    eprintln!("measuring the floor…");
    let floor = measure(&floor_c, &env).await;
    let mut rows = vec![(floor_c, floor, None::<Measured>)];
    for (name, handler, ev) in [
        ("issue-credentials", "issue", &issue),
        ("scheduled-rotation", "scheduled", &scheduled),
        ("secret-rotation", "secret_rotation", &rotation),
    ] {
        eprintln!("measuring {name} and its Python twin…");
        let ours = rust(name, ev);
        let m = measure(&ours, &env).await;
        let p = measure(&py(handler, ev), &env).await;
        rows.push((ours, m, Some(p)));
    }

    // The Rust rows' init: side by side (the Python twins keep their own cold starts).
    eprintln!("measuring init side by side, {INIT_ROUNDS} rounds…");
    let candidates: Vec<&Candidate> = rows.iter().map(|(c, _, _)| c).collect();
    let inits = interleaved_inits(&candidates, &env).await;
    for ((_, m, _), init) in rows.iter_mut().zip(inits) {
        m.init = init;
    }
    let floor_init = pct(&rows[0].1.init, 50.0);
    let mut out = String::new();
    out.push_str(&format!(
        "# Keysmith benchmark\n\n{} cold starts and {} warm invocations each, through the Lambda Runtime API, \
         against moto on 127.0.0.1, on this machine ({} cores). Rust binaries: host ({}) release builds \
         with the workspace profile (`cargo lambda build --release --arm64` needs a zig cross-build \
         that is not run here). Init of the Rust binaries: p50 of {} cold starts each, the floor and the \
         functions started in turn. Times in ms.\n\n",
        COLD_STARTS,
        WARM_INVOCATIONS,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        std::env::consts::ARCH,
        INIT_ROUNDS,
    ));
    out.push_str("| function | init p50 | init max | first inv. p50 | warm p50 | warm p99 | peak RSS MiB | bootstrap MiB | init ÷ floor | Python init ÷ ours | Python init p50 | Python warm p50 | Python RSS MiB |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (c, m, p) in &rows {
        let init = pct(&m.init, 50.0);
        let mib = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);
        let (py_ratio, py_init, py_warm, py_rss) = match p {
            Some(p) => {
                let pi = pct(&p.init, 50.0);
                (
                    format!("{:.0}×", pi.as_secs_f64() / init.as_secs_f64().max(1e-9)),
                    ms(pi),
                    ms(pct(&p.warm, 50.0)),
                    mib(p.peak_rss_kib),
                )
            }
            None => ("–".into(), "–".into(), "–".into(), "–".into()),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2}× | {} | {} | {} | {} |\n",
            c.label,
            ms(init),
            ms(*m.init.last().unwrap_or(&Duration::ZERO)),
            ms(pct(&m.first, 50.0)),
            ms(pct(&m.warm, 50.0)),
            ms(pct(&m.warm, 99.0)),
            mib(m.peak_rss_kib),
            c.size
                .map(|s| format!("{:.2}", s as f64 / 1_048_576.0))
                .unwrap_or_else(|| "–".into()),
            init.as_secs_f64() / floor_init.as_secs_f64().max(1e-9),
            py_ratio,
            py_init,
            py_warm,
            py_rss,
        ));
    }

    out.push_str(&tls_section(&moto, &env, [&issue, &scheduled, &rotation]).await);

    // The scheduled run's reads as policies grow: 10 due each time.
    out.push_str("\n## Scheduled rotation: DynamoDB items read per run (10 due)\n\n| policies | due | items read | rotated |\n|---|---|---|---|\n");
    for n in [10usize, 100, 1000] {
        eprintln!("scheduled run with {n} policies…");
        let tn = TestApp::on(&moto, root.clone()).await;
        let now = Utc::now();
        for i in 0..10 {
            let user = format!("bench-{n}-{i}");
            let (k, s) = user_with_key(&root, &user, &allow_all()).await;
            let sid = format!("keysmith/{user}");
            keysmith_tests::aws::bind(&root, &user, &sid).await;
            keysmith_tests::aws::secret(
                &root,
                &sid,
                &json!({"user_name": user, "access_key_id": k, "secret_access_key": s}),
            )
            .await;
            tn.call(
                "PUT",
                &format!("/v1/rotations/due-{i}"),
                Some(&json!({"secret_id": sid, "interval_days": 30}).to_string()),
                Some(ADMIN),
            )
            .await;
        }
        seed_not_due_policies(&root, &tn.state_table, n - 10, now).await;
        let origin = Origin {
            principal: "keysmith:bench".into(),
            ..Origin::default()
        };
        let report = keysmith::jobs::run(&tn.app, Utc::now(), &origin)
            .await
            .unwrap();
        out.push_str(&format!(
            "| {n} | 10 | {} | {} |\n",
            report.policies_read,
            report.rotated.len()
        ));
    }

    eprintln!("the keysmith client beside awscurl…");
    // On a moto of its own: the SigV4 gateway finds keys in moto's state dump
    // (/moto-api/data.json), which answers 500 once the sections above have filled moto.
    let client_moto = Moto::start();
    out.push_str(&client::section(&client_moto).await);

    println!("{out}");
    let dir = repo_root().join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("report.md"), &out).unwrap();
    eprintln!("written to target/bench/report.md");
}

/// Cold start over TLS (production always talks TLS): each function against moto in plain HTTP
/// and through a local TLS endpoint (trusted through `SSL_CERT_FILE`), side by side in one run.
async fn tls_section(moto: &Moto, env: &[(&str, &str)], events: [&Value; 3]) -> String {
    let front = keysmith_tests::tls::TlsFront::start(&moto.endpoint).await;
    let ca = front.ca_file.display().to_string();
    let tls_env: Vec<(&str, &str)> = env
        .iter()
        .map(|&(k, v)| match k {
            "AWS_ENDPOINT_URL" => (k, front.endpoint.as_str()),
            _ => (k, v),
        })
        .chain([("SSL_CERT_FILE", ca.as_str())])
        .collect();
    let mut out = format!(
        "\n## Cold start over TLS\n\nThe same functions against moto in plain HTTP and through a \
         local TLS endpoint (its CA trusted through `SSL_CERT_FILE`). Cold request = init + first \
         invocation of one process, p50 of {TLS_COLD_STARTS} cold starts each, HTTP and TLS alternating. \
         Times in ms.\n\n\
         | function | HTTP init | HTTP first | HTTP cold request | TLS init | TLS first | TLS cold request | TLS ÷ HTTP |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for (name, event) in ["issue-credentials", "scheduled-rotation", "secret-rotation"]
        .into_iter()
        .zip(events)
    {
        eprintln!("measuring {name} over HTTP and TLS…");
        let c = Candidate {
            label: name.to_owned(),
            program: release(name),
            args: vec![],
            event: event.clone(),
            size: None,
        };
        // Alternating, so both see moto in the same state (its latency grows with what the
        // earlier runs created), and without warm invocations in between.
        let (mut plain, mut tls) = (Measured::default(), Measured::default());
        for _ in 0..TLS_COLD_STARTS {
            drop(cold_start(&c, env, &mut plain).await);
            drop(cold_start(&c, &tls_env, &mut tls).await);
        }
        plain.sort();
        tls.sort();
        let (pc, tc) = (pct(&plain.cold, 50.0), pct(&tls.cold, 50.0));
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {:.2}× |\n",
            ms(pct(&plain.init, 50.0)),
            ms(pct(&plain.first, 50.0)),
            ms(pc),
            ms(pct(&tls.init, 50.0)),
            ms(pct(&tls.first, 50.0)),
            ms(tc),
            tc.as_secs_f64() / pc.as_secs_f64().max(1e-9),
        ));
    }
    out
}
