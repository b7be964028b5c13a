//! `make bench-audit` (issue 26): the sealing job over `N` audit items (default 100,000) in one
//! 5-minute period, against moto's DynamoDB, KMS and S3 (Object Lock): how long the seal takes,
//! how long an offline verification of the same period takes, and the latency of `GET /v1/audit`
//! across a day's 16 shards (a time-range page, fanned out and merged) beside an index query.
//!
//! A benchmark, not a test: it reports, and exits non-zero only when the seal is wrong (a count
//! other than `N`, or a root the verifier does not reproduce).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chrono::{DateTime, TimeZone, Utc};
use futures_util::stream::{self, StreamExt};
use keysmith::audit::{AuditRecord, Category, Origin, Outcome};
use keysmith::config::SealConfig;
use keysmith_tests::api::{TestApp, ADMIN};
use keysmith_tests::moto::Moto;
use serde_json::Value;

const PERIOD: i64 = 300;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` items as the API writes them (an issuance each), spread over the period.
fn items(n: usize, start: DateTime<Utc>) -> Vec<HashMap<String, AttributeValue>> {
    (0..n)
        .map(|i| {
            let origin = Origin {
                principal: format!("arn:aws:iam::123456789012:role/Deployers-{}", i % 50),
                source_ip: "203.0.113.7".into(),
                user_agent: "aws-cli/2.22 md/Botocore#2.0".into(),
                request_id: uuid::Uuid::new_v4().to_string(),
                region: "us-east-1".into(),
            };
            let mut r = AuditRecord::new(
                &origin,
                Category::Data,
                keysmith::audit::EVENT_ISSUE,
                Outcome::Success,
                keysmith::audit::MESSAGE_ISSUED,
            )
            .profile(&format!("deploy-{}", i % 20));
            let offset = (i as i64 * PERIOD * 1_000_000) / n.max(1) as i64;
            r.time = start + chrono::Duration::microseconds(offset);
            r.access_key_id = Some(format!("ASIA{:016}", i));
            r.lease_id = Some(uuid::Uuid::new_v4().to_string());
            r.duration_seconds = Some(3600);
            let json = r.to_json();
            let time = json["time"].as_str().unwrap_or_default().to_owned();
            let id = json["id"].as_str().unwrap_or_default().to_owned();
            let mut item: HashMap<String, AttributeValue> = json
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    let value = match v {
                        Value::Number(n) => AttributeValue::N(n.to_string()),
                        Value::String(s) => AttributeValue::S(s.clone()),
                        other => AttributeValue::S(other.to_string()),
                    };
                    (k.clone(), value)
                })
                .collect();
            item.insert(
                "day".into(),
                AttributeValue::S(keysmith::audit::partition(&time[..10], &id)),
            );
            item.insert("sk".into(), AttributeValue::S(format!("{time}#{id}")));
            item
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn latencies(t: &TestApp, path: &str, runs: usize) -> (Duration, Duration, usize) {
    let mut took = Vec::with_capacity(runs);
    let mut count = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let (status, body) = t.call("GET", path, None, Some(ADMIN)).await;
        took.push(started.elapsed());
        assert_eq!(status, 200, "{body}");
        count = body["items"].as_array().map_or(0, Vec::len);
    }
    took.sort();
    (percentile(&took, 0.5), percentile(&took, 0.95), count)
}

#[tokio::main]
async fn main() {
    let n = env_number("N", 100_000);
    let moto = Moto::start_cow();
    // moto answers a page of a large partition in seconds, where DynamoDB takes milliseconds:
    // the bench allows for it rather than measure the SDK's time-outs.
    let sdk = keysmith::aws::sdk_config_loader()
        .endpoint_url(&moto.endpoint)
        .region(aws_config::Region::new(keysmith_tests::moto::REGION))
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(std::time::Duration::from_secs(120))
                .operation_timeout(std::time::Duration::from_secs(600))
                .build(),
        )
        .load()
        .await;
    let kms = aws_sdk_kms::Client::new(&sdk);
    let key = keysmith_tests::aws::signing_key(&sdk).await;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (state, audit) = (format!("state-{id}"), format!("audit-{id}"));
    moto.create_tables(&state, &audit);
    let t = TestApp::configured(sdk.clone(), &state, &audit, |c| {
        c.seal = SealConfig {
            signing_key: Some(key.clone()),
            archive_bucket: None,
            period_seconds: PERIOD as u32,
            lag_seconds: 0,
        }
    });

    // The period: the last whole 5 minutes that ended at least 10 minutes ago.
    let now = Utc::now().timestamp();
    let end = (now - 600).div_euclid(PERIOD) * PERIOD;
    let start = Utc.timestamp_opt(end - PERIOD, 0).single().unwrap();
    let written = Instant::now();
    let db = aws_sdk_dynamodb::Client::new(&sdk);
    let batches: Vec<Vec<WriteRequest>> = items(n, start)
        .into_iter()
        .map(|item| {
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                .build()
        })
        .collect::<Vec<_>>()
        .chunks(25)
        .map(<[WriteRequest]>::to_vec)
        .collect();
    stream::iter(batches)
        .for_each_concurrent(8, |batch| {
            let (db, audit) = (db.clone(), audit.clone());
            async move {
                db.batch_write_item()
                    .request_items(audit, batch)
                    .send()
                    .await
                    .unwrap();
            }
        })
        .await;
    println!(
        "wrote {n} items into one period ({} .. +5 min) in {:.1} s",
        start.format("%H:%M:%S"),
        written.elapsed().as_secs_f64()
    );

    // The first run of a deployment seals the newest closed period: this one.
    let sealing = Instant::now();
    let report = t
        .app
        .sealer(&t.sdk)
        .seal(Utc.timestamp_opt(end, 0).single().unwrap())
        .await
        .unwrap();
    let seal_time = sealing.elapsed();
    assert_eq!(report.sealed.len(), 1, "{report:?}");
    assert_eq!(report.sealed[0].1, n as u64, "{report:?}");

    // Verification of the same period, offline: the items as the API returns them.
    let (s, page) = t
        .call("GET", "/v1/audit/checkpoints", None, Some(ADMIN))
        .await;
    assert_eq!(s, 200, "{page}");
    let checkpoints: Vec<keysmith_audit_proof::Checkpoint> =
        serde_json::from_value(page["checkpoints"].clone()).unwrap();
    let der = kms
        .get_public_key()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .public_key
        .unwrap();
    // The period's items as `GET /v1/audit` returns them (the table's own keys left out), read
    // with a Scan: moto answers a page of the API in seconds, so 100,000 items through the API
    // would measure moto. The API's own latency is measured below.
    let fetching = Instant::now();
    let pages: Vec<aws_sdk_dynamodb::operation::scan::ScanOutput> = db
        .scan()
        .table_name(&audit)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .unwrap();
    let all: Vec<Value> = pages
        .into_iter()
        .flat_map(|p| p.items.unwrap_or_default())
        .map(|item| {
            let mut out = serde_json::Map::new();
            for (k, v) in item {
                if k == "day" || k == "sk" {
                    continue;
                }
                if let Ok(s) = v.as_s() {
                    out.insert(k, Value::String(s.clone()));
                } else if let Ok(n) = v.as_n() {
                    out.insert(k, Value::from(n.parse::<u64>().unwrap_or_default()));
                }
            }
            Value::Object(out)
        })
        .collect();
    let fetch_time = fetching.elapsed();
    let until = Utc.timestamp_opt(end, 0).single().unwrap();
    let verifying = Instant::now();
    let verdict = keysmith_audit_proof::verify(&checkpoints, &all, der.as_ref(), Utc::now());
    let verify_time = verifying.elapsed();
    assert!(
        verdict.clean(),
        "{:?}",
        &verdict.problems[..verdict.problems.len().min(5)]
    );

    // Query latency: a time-range page fans out over the day's 16 shards (and the
    // pre-sharding partition); a principal page reads one index partition.
    let window = format!(
        "since={}&until={}",
        start.format("%Y-%m-%dT%H:%M:%SZ"),
        until.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let (p50, p95, got) = latencies(&t, &format!("/v1/audit?{window}&limit=100"), 5).await;
    let (i50, i95, igot) = latencies(
        &t,
        &format!(
            "/v1/audit?{window}&limit=100&principal=arn:aws:iam::123456789012:role/Deployers-7"
        ),
        5,
    )
    .await;

    println!();
    println!("| audit trail, {n} items in one period (moto) | value |");
    println!("| --- | --- |");
    println!(
        "| seal one period (read 17 partitions, hash, Merkle root, KMS Sign, write) | {:.2} s |",
        seal_time.as_secs_f64()
    );
    println!(
        "| read the period's items (Scan) | {:.1} s |",
        fetch_time.as_secs_f64()
    );
    println!(
        "| verify offline (hashes, root, signature) | {:.2} s |",
        verify_time.as_secs_f64()
    );
    println!(
        "| GET /v1/audit time range, 100 items across 16 shards: p50 / p95 | {:.0} / {:.0} ms ({got} items) |",
        p50.as_secs_f64() * 1000.0,
        p95.as_secs_f64() * 1000.0
    );
    println!(
        "| GET /v1/audit by principal (one index partition): p50 / p95 | {:.0} / {:.0} ms ({igot} items) |",
        i50.as_secs_f64() * 1000.0,
        i95.as_secs_f64() * 1000.0
    );
}
