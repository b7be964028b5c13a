//! RotationQueue (SPEC §14): the scheduled run enqueues and rotates nothing inline; duplicate
//! deliveries rotate once; a failing message is a batch item failure and ends in the dead-letter
//! queue after 3 receives (through the built function); throttling defers; rotate-now enqueues.

use std::collections::BTreeMap;

use chrono::Utc;
use keysmith::audit::Origin;
use keysmith::jobs;
use keysmith_tests::api::{TestApp, ADMIN};
use keysmith_tests::aws::caller_arn;
use keysmith_tests::function_binary;
use keysmith_tests::moto::{Moto, REGION};
use keysmith_tests::proxy::{CaptureProxy, Fault};
use keysmith_tests::queue::{due_policy, failures, sqs_event, RotationQueues};
use keysmith_tests::rotation::Snapshot;
use keysmith_tests::runtime::FunctionProcess;
use serde_json::{json, Value};

fn origin() -> Origin {
    Origin {
        principal: "keysmith:scheduled-rotation".into(),
        region: REGION.into(),
        ..Origin::default()
    }
}

/// `Access Key Rotated` audit items per policy.
async fn rotations(t: &TestApp) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for i in t.audit_items().await {
        if i["event"].as_s().unwrap() == "Access Key Rotated" {
            *n.entry(i["profile"].as_s().unwrap().clone()).or_default() += 1;
        }
    }
    n
}

/// A batch as the worker's records, the way Lambda's event source mapping delivers it.
fn records(batch: &[aws_sdk_sqs::types::Message]) -> Vec<aws_lambda_events::sqs::SqsMessage> {
    let event = sqs_event(batch, "arn:aws:sqs:us-east-1:123456789012:rotation");
    serde_json::from_value::<aws_lambda_events::sqs::SqsEvent>(event)
        .unwrap()
        .records
}

async fn current_key(t: &TestApp, secret: &str, user: &str) -> String {
    let s = Snapshot::take(&t.sdk, &t.sdk, secret, user).await;
    let (id, key) = s.current_key();
    let arn = caller_arn(Moto::shared(), id, key, None).await.unwrap();
    assert!(
        arn.ends_with(&format!("/{user}")),
        "AWSCURRENT works: {arn}"
    );
    id.to_owned()
}

#[tokio::test]
async fn a_run_enqueues_each_due_rotation_and_duplicates_rotate_once() {
    let mut t = TestApp::new().await;
    let q = RotationQueues::create(&t.sdk, 30).await;
    t.app.config.rotation_queue_url = Some(q.url.clone());
    let mut due = Vec::new();
    for i in 0..25 {
        let name = format!("queued-{i:02}");
        let (secret, user, key) = due_policy(&t, &name).await;
        due.push((name, secret, user, key));
    }

    let report = jobs::run(&t.app, Utc::now(), &origin()).await.unwrap();
    assert_eq!(report.enqueued, 25, "{}", report.to_json());
    assert!(report.rotated.is_empty() && report.failed.is_empty());
    for (_, secret, user, key) in &due {
        assert_eq!(&current_key(&t, secret, user).await, key, "nothing inline");
    }
    let batch = q.receive(&q.url, 30).await;
    assert_eq!(batch.len(), 25);
    let mut bodies: Vec<&str> = batch.iter().map(|m| m.body().unwrap()).collect();
    bodies.sort();
    let want: Vec<String> = due
        .iter()
        .map(|(n, ..)| json!({"rotation": n}).to_string())
        .collect();
    assert_eq!(bodies, want, "identifiers only, one per due policy");

    // Every message delivered twice, to two workers at once (batches of 10, as SQS groups them).
    let chunks: Vec<_> = batch.chunks(10).collect();
    let work = |reversed: bool| {
        let app = t.app.clone();
        let q = q.url.clone();
        let chunks: Vec<Vec<_>> = if reversed {
            chunks.iter().rev().map(|c| c.to_vec()).collect()
        } else {
            chunks.iter().map(|c| c.to_vec()).collect()
        };
        async move {
            let mut out = Vec::new();
            for c in chunks {
                out.push(jobs::work(&app, Some(&q), &records(&c), &origin()).await);
            }
            out
        }
    };
    let (a, b) = tokio::join!(work(false), work(true));
    let mut rotated = 0;
    for r in a.iter().chain(&b) {
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        rotated += r.rotated.len();
    }
    assert_eq!(rotated, 25, "each policy rotated by exactly one delivery");
    let counts = rotations(&t).await;
    assert_eq!(counts.len(), 25);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    for (_, secret, user, key) in &due {
        assert_ne!(&current_key(&t, secret, user).await, key, "rotated");
    }
}

#[tokio::test]
async fn failing_messages_are_batch_item_failures_and_end_in_the_dead_letter_queue() {
    let moto = Moto::shared();
    let t = TestApp::new().await;
    let q = RotationQueues::create(&t.sdk, 0).await;
    let (secret, user, key) = due_policy(&t, "good").await;
    for body in [
        json!({"rotation": "good"}).to_string(),
        json!({"rotation": "no-such-policy"}).to_string(),
        "rotate everything".to_owned(),
    ] {
        q.sqs
            .send_message()
            .queue_url(&q.url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let env = [
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("KEYSMITH_STATE_TABLE", t.state_table.as_str()),
        ("KEYSMITH_AUDIT_TABLE", t.audit_table.as_str()),
        ("KEYSMITH_ADMINS", ADMIN),
        ("KEYSMITH_ROTATION_QUEUE_URL", q.url.as_str()),
    ];
    let f = FunctionProcess::start(&function_binary("scheduled-rotation"), &env).await;
    // What the event source mapping does: receive, invoke, delete all but the reported failures.
    let mut failed_ids = Vec::new();
    for receive in 0..3 {
        let batch = q.receive_once(&q.url).await;
        let answer: Value = f
            .invoke(&sqs_event(&batch, "arn:aws:sqs:us-east-1:123456789012:r"))
            .await
            .unwrap();
        let failed = failures(&answer);
        let bad: Vec<&str> = batch
            .iter()
            .filter(|m| !m.body().unwrap().contains("\"good\""))
            .filter_map(|m| m.message_id())
            .collect();
        let mut sorted = failed.clone();
        sorted.sort();
        let mut want: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(sorted, want, "receive {receive}: {answer}");
        q.settle(&batch, &answer).await;
        failed_ids = want;
    }
    assert_ne!(
        &current_key(&t, &secret, &user).await,
        &key,
        "the good one rotated"
    );
    // The fourth receive moves them to the dead-letter queue (moto's redrive, as SQS's).
    assert!(q.receive_once(&q.url).await.is_empty());
    let dead = q.receive(&q.dead_letter_url, 10).await;
    let mut dead_ids: Vec<String> = dead
        .iter()
        .filter_map(|m| m.message_id().map(str::to_owned))
        .collect();
    dead_ids.sort();
    assert_eq!(dead_ids, failed_ids);
    assert_eq!(rotations(&t).await.get("good"), Some(&1));
}

#[tokio::test]
async fn a_throttled_rotation_comes_back_later_and_is_no_failure() {
    let moto = Moto::shared();
    let proxy = CaptureProxy::start(&moto.endpoint).await;
    let mut t = TestApp::on(moto, Moto::fast_sdk_config_at(&proxy.endpoint).await).await;
    let q = RotationQueues::create(&t.sdk, 30).await;
    t.app.config.rotation_queue_url = Some(q.url.clone());
    let (secret, user, key) = due_policy(&t, "throttled").await;
    let report = jobs::run_rotations(&t.app, Utc::now(), &origin())
        .await
        .unwrap();
    assert_eq!(report.enqueued, 1);
    let batch = q.receive(&q.url, 1).await;
    q.settle(&batch, &json!({"batchItemFailures": []})).await;

    proxy.set_faults(Some(std::sync::Arc::new(|r| {
        if r.operation() == "CreateAccessKey" {
            Fault::Throttle
        } else {
            Fault::Pass
        }
    })));
    let r = jobs::work(&t.app, Some(&q.url), &records(&batch), &origin()).await;
    proxy.set_faults(None);
    assert!(r.failures.is_empty(), "a retry later, not a failure item");
    assert_eq!(r.deferred, ["throttled"]);
    assert_eq!(
        &current_key(&t, &secret, &user).await,
        &key,
        "not rotated yet"
    );
    let delayed = q
        .sqs
        .get_queue_attributes()
        .queue_url(&q.url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed]
        .clone();
    assert_eq!(delayed, "1", "sent again with a delay");
}

#[tokio::test]
async fn rotate_now_enqueues_the_same_message() {
    let mut t = TestApp::new().await;
    let q = RotationQueues::create(&t.sdk, 30).await;
    t.app.config.rotation_queue_url = Some(q.url.clone());
    let (secret, user, key) = due_policy(&t, "now").await;
    let (s, b) = t
        .call("POST", "/v1/rotations/now/rotate", None, Some(ADMIN))
        .await;
    assert_eq!((s, &b["status"]), (202, &json!("requested")), "{b}");
    let batch = q.receive(&q.url, 10).await;
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].body(), Some(r#"{"rotation":"now"}"#));
    let r = jobs::work(&t.app, Some(&q.url), &records(&batch), &origin()).await;
    assert_eq!(r.rotated, ["now"]);
    assert_ne!(&current_key(&t, &secret, &user).await, &key);
}
