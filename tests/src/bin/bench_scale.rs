//! `make bench-scale` (SPEC §14): N due rotations (`N=`, default 1,000) through the real path —
//! the release scheduled-rotation enqueues them into RotationQueue (moto's SQS), then `WORKERS`
//! (default 4) worker processes of the same binary take batches the way Lambda's event source
//! mapping does (receive up to 10, invoke with the standard SQS event, delete what the answer
//! does not report failed). Reports wall time, rotations a second, AWS calls per rotation (counted
//! by a proxy in front of moto), duplicates and lost rotations (both must be 0), and the scheduled
//! run's time to enqueue 10,000 due policies. Then the model for AWS.
//!
//! A benchmark, not a test: it reports; it exits non-zero only when a rotation was duplicated or
//! lost, or the 10,000-policy run exceeded 60 s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::stream::{self, StreamExt};
use keysmith_tests::api::{TestApp, ADMIN};
use keysmith_tests::moto::{Moto, REGION};
use keysmith_tests::proxy::CaptureProxy;
use keysmith_tests::queue::{due_policy, failures, sqs_event, RotationQueues};
use keysmith_tests::runtime::FunctionProcess;
use keysmith_tests::{event, repo_root, seed_policies};
use serde_json::Value;

/// What the model assumes of AWS (stated in the README): one IAM/STS/Secrets Manager/DynamoDB
/// call's latency, and the wait until STS accepts a new key (IAM's eventual consistency).
const AWS_CALL_SECONDS: f64 = 0.1;
const CONSISTENCY_WAIT_SECONDS: f64 = 10.0;
const MODEL_CONCURRENCY: f64 = 50.0;
const ENQUEUE_POLICIES: usize = 10_000;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn binary() -> std::path::PathBuf {
    let path = repo_root().join("target/release/scheduled-rotation");
    assert!(
        path.exists(),
        "{} is missing: `make bench-scale` builds it first",
        path.display()
    );
    path
}

struct Env {
    endpoint: String,
    state: String,
    audit: String,
    queue: String,
}

impl Env {
    fn vars(&self) -> Vec<(&str, &str)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("KEYSMITH_STATE_TABLE", self.state.as_str()),
            ("KEYSMITH_AUDIT_TABLE", self.audit.as_str()),
            ("KEYSMITH_ADMINS", ADMIN),
            ("KEYSMITH_ROTATION_QUEUE_URL", self.queue.as_str()),
            ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
        ]
    }
}

/// The scheduled run through the built function; returns its report and how long it took.
async fn scheduled_run(env: &Env) -> (Value, Duration) {
    let f = FunctionProcess::start(&binary(), &env.vars()).await;
    let started = Instant::now();
    let report = f
        .invoke(&event("scheduled.json"))
        .await
        .unwrap_or_else(|e| panic!("the scheduled run failed: {e}\n{}", f.logs()));
    (report, started.elapsed())
}

/// One worker process: batches until the queue is drained. Returns (batches, failed items).
async fn worker(env: &Env, q: &RotationQueues, queue_arn: &str) -> (usize, usize) {
    let f = FunctionProcess::start(&binary(), &env.vars()).await;
    let (mut batches, mut failed) = (0, 0);
    let mut idle = 0;
    while idle < 3 {
        let batch = q
            .sqs
            .receive_message()
            .queue_url(&q.url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if batch.is_empty() {
            idle += 1;
            continue;
        }
        idle = 0;
        let answer = f
            .invoke(&sqs_event(&batch, queue_arn))
            .await
            .unwrap_or_else(|e| panic!("a worker invocation failed: {e}\n{}", f.logs()));
        failed += failures(&answer).len();
        q.settle(&batch, &answer).await;
        batches += 1;
    }
    (batches, failed)
}

async fn queue_arn(q: &RotationQueues) -> String {
    use aws_sdk_sqs::types::QueueAttributeName;
    q.sqs
        .get_queue_attributes()
        .queue_url(&q.url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone()
}

#[tokio::main]
async fn main() {
    let n = env_number("N", 1000);
    let workers = env_number("WORKERS", 4);
    // moto's own TransactWriteItems copies whole tables per call; the item-wise server keeps
    // the cost flat as the audit trail grows (tests/support/moto_server_cow.py).
    let moto = Moto::start_cow();
    let proxy = CaptureProxy::start(&moto.endpoint).await;
    let t = TestApp::on(&moto, moto.sdk_config().await).await;
    let q = RotationQueues::create(&t.sdk, 960).await;
    let arn = queue_arn(&q).await;
    let env = Env {
        endpoint: proxy.endpoint.clone(),
        state: t.state_table.clone(),
        audit: t.audit_table.clone(),
        queue: q.url.clone(),
    };

    eprintln!("seeding {n} rotatable users, secrets and due policies…");
    let seeded = Instant::now();
    let names: Vec<String> = (0..n).map(|i| format!("scale-{i:05}")).collect();
    stream::iter(&names)
        .map(|name| due_policy(&t, name))
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    eprintln!("seeded in {:.1} s", seeded.elapsed().as_secs_f64());

    let (report, enqueue_time) = scheduled_run(&env).await;
    assert_eq!(report["enqueued"], n, "{report}");
    let calls_before = proxy.requests().len();
    eprintln!(
        "enqueued {n} in {:.2} s; {workers} workers rotating…",
        enqueue_time.as_secs_f64()
    );

    let started = Instant::now();
    let results: Vec<(usize, usize)> = stream::iter(0..workers)
        .map(|_| worker(&env, &q, &arn))
        .buffer_unordered(workers)
        .collect()
        .await;
    let wall = started.elapsed();
    let batches: usize = results.iter().map(|r| r.0).sum();
    let failed: usize = results.iter().map(|r| r.1).sum();
    let requests = proxy.requests();
    let work_calls = &requests[calls_before..];
    let mut by_operation: BTreeMap<String, usize> = BTreeMap::new();
    for r in work_calls {
        *by_operation.entry(r.operation()).or_default() += 1;
    }

    let mut per_policy: BTreeMap<String, usize> = BTreeMap::new();
    for i in t.audit_items().await {
        if i["event"].as_s().map(String::as_str) == Ok("Access Key Rotated") {
            if let Ok(p) = i["profile"].as_s() {
                *per_policy.entry(p.clone()).or_default() += 1;
            }
        }
    }
    let rotated = per_policy.len();
    let duplicates: usize = per_policy.values().map(|c| c.saturating_sub(1)).sum();
    let lost = names
        .iter()
        .filter(|n| !per_policy.contains_key(*n))
        .count();
    let per_rotation = work_calls.len() as f64 / rotated.max(1) as f64;

    // The scheduled run alone with 10,000 due policies (their secrets need not exist: nothing
    // rotates them here), into a queue of its own.
    eprintln!("the scheduled run with {ENQUEUE_POLICIES} due policies…");
    let big = TestApp::on(&moto, moto.sdk_config().await).await;
    let big_q = RotationQueues::create(&big.sdk, 960).await;
    let now = Utc::now();
    seed_policies(
        &big.sdk,
        &big.state_table,
        (0..ENQUEUE_POLICIES).map(|i| (format!("due-{i:05}"), "keysmith/unused".to_owned())),
        None,
        now,
    )
    .await;
    let big_env = Env {
        endpoint: moto.endpoint.clone(),
        state: big.state_table.clone(),
        audit: big.audit_table.clone(),
        queue: big_q.url.clone(),
    };
    let (big_report, big_time) = scheduled_run(&big_env).await;
    let big_depth = big_q.depth(&big_q.url).await;

    let per_hour_model =
        MODEL_CONCURRENCY * 3600.0 / (per_rotation * AWS_CALL_SECONDS + CONSISTENCY_WAIT_SECONDS);
    let mut out = format!(
        "# Keysmith scale benchmark (SPEC §14)\n\n\
         {n} due rotations through the real path on this machine (2 cores): the release \
         `scheduled-rotation` enqueued them into RotationQueue (moto's SQS, on 127.0.0.1), then \
         {workers} worker processes of the same binary took batches of up to 10 as Lambda's event \
         source mapping does. AWS calls counted by a proxy in front of moto.\n\n\
         | measure | value |\n|---|---|\n\
         | due rotations | {n} |\n\
         | enqueue (scheduled run, {n} due) | {:.2} s |\n\
         | rotation wall time ({workers} workers) | {:.1} s |\n\
         | rotations per second | {:.1} |\n\
         | batches | {} |\n\
         | batch item failures | {failed} |\n\
         | AWS calls per rotation | {per_rotation:.1} |\n\
         | duplicates (must be 0) | {duplicates} |\n\
         | lost (must be 0) | {lost} |\n\
         | scheduled run with {ENQUEUE_POLICIES} due policies | {:.2} s ({} enqueued, queue depth {big_depth}) |\n\n\
         Calls per rotation by operation: {}\n\n\
         ## The model for AWS\n\n\
         rotations/hour = concurrency × 3600 / (calls per rotation × call latency + consistency wait)\n\
         = {MODEL_CONCURRENCY} × 3600 / ({per_rotation:.1} × {AWS_CALL_SECONDS} s + {CONSISTENCY_WAIT_SECONDS} s) \
         = **{per_hour_model:.0} rotations an hour** at `RotationMaxConcurrency` 50, counting one \
         rotation per worker at a time (a batch of 10 runs its rotations at once, so this is a floor \
         until IAM's request quotas bind).\n",
        enqueue_time.as_secs_f64(),
        wall.as_secs_f64(),
        rotated as f64 / wall.as_secs_f64(),
        batches,
        big_time.as_secs_f64(),
        big_report["enqueued"],
        by_operation
            .iter()
            .map(|(op, c)| format!("{op} {:.1}", *c as f64 / rotated.max(1) as f64))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let ok = duplicates == 0 && lost == 0 && big_time < Duration::from_secs(60);
    if !ok {
        out.push_str(
            "\n**FAILED**: a rotation was duplicated or lost, or the run took over 60 s.\n",
        );
    }
    let path = repo_root().join("target/bench/scale.md");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &out).unwrap();
    println!("{out}");
    eprintln!("written to {}", path.display());
    if !ok {
        std::process::exit(1);
    }
}
