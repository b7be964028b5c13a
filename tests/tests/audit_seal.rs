//! A tamper-evident trail (SPEC §13, issue 26): closed periods are sealed with signed, chained
//! checkpoints (KMS `ECC_NIST_P256` in moto, archived to an Object Lock bucket), and the built
//! `keysmith audit verify`, through the SigV4 gateway in front of the built issue-credentials,
//! names every kind of tampering: a changed item, a deleted one, one inserted with an old time, a
//! checkpoint removed from the table, a checkpoint re-signed with another key. An untouched trail
//! verifies clean, offline with the public key file alone (KMS unreachable).

use std::collections::HashMap;
use std::path::PathBuf;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use chrono::Utc;
use keysmith::config::SealConfig;
use keysmith_audit_proof::Checkpoint;
use keysmith_tests::api::{TestApp, ADMIN};
use keysmith_tests::cli::CliStack;
use serde_json::{json, Value};

type Item = HashMap<String, AttributeValue>;

struct Trail {
    stack: CliStack,
    t: TestApp,
    db: aws_sdk_dynamodb::Client,
    kms: aws_sdk_kms::Client,
    key_arn: String,
    bucket: String,
    pem: PathBuf,
}

fn s3(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
}

impl Trail {
    async fn start() -> Trail {
        let stack = CliStack::start().await;
        let sdk = stack.moto.sdk_config().await;
        let kms = aws_sdk_kms::Client::new(&sdk);
        let key_arn = keysmith_tests::aws::signing_key(&sdk).await;
        let bucket = format!("keysmith-archive-{}", stack.id);
        let s3 = s3(&sdk);
        s3.create_bucket()
            .bucket(&bucket)
            .object_lock_enabled_for_bucket(true)
            .send()
            .await
            .unwrap();
        s3.put_object_lock_configuration()
            .bucket(&bucket)
            .object_lock_configuration(
                aws_sdk_s3::types::ObjectLockConfiguration::builder()
                    .object_lock_enabled(aws_sdk_s3::types::ObjectLockEnabled::Enabled)
                    .rule(
                        aws_sdk_s3::types::ObjectLockRule::builder()
                            .default_retention(
                                aws_sdk_s3::types::DefaultRetention::builder()
                                    .mode(aws_sdk_s3::types::ObjectLockRetentionMode::Compliance)
                                    .days(1)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let seal = SealConfig {
            signing_key: Some(key_arn.clone()),
            archive_bucket: Some(bucket.clone()),
            period_seconds: 1,
            lag_seconds: 0,
        };
        let (state, audit) = (format!("state-{}", stack.id), format!("audit-{}", stack.id));
        let t = TestApp::configured(sdk.clone(), &state, &audit, |c| c.seal = seal);
        // The public key as an operator would save it: `aws kms get-public-key`, PEM-wrapped.
        let der = kms
            .get_public_key()
            .key_id(&key_arn)
            .send()
            .await
            .unwrap()
            .public_key
            .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<String> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        let pem = stack.home.path().join("audit-key.pem");
        std::fs::write(
            &pem,
            format!(
                "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                lines.join("\n")
            ),
        )
        .unwrap();
        Trail {
            db: aws_sdk_dynamodb::Client::new(&sdk),
            stack,
            t,
            kms,
            key_arn,
            bucket,
            pem,
        }
    }

    async fn seal(&self) -> keysmith::audit::SealReport {
        self.t
            .app
            .sealer(&self.t.sdk)
            .seal(Utc::now())
            .await
            .unwrap()
    }

    /// `keysmith audit verify --output json [args]` as the admin: (exit 0?, report, stderr).
    async fn verify(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, Value, String) {
        let mut c = self.stack.command(&self.stack.admin);
        c.args(["audit", "verify", "--output", "json"]).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = tokio::task::block_in_place(|| self.stack.output(&mut c));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "verify printed no JSON ({e}): {}\n{stderr}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (out.status.success(), report, stderr)
    }

    async fn verify_with_file(&self) -> (bool, Value, String) {
        let pem = self.pem.display().to_string();
        self.verify(&["--public-key", &pem], &[]).await
    }

    async fn checkpoints(&self) -> Vec<Item> {
        self.db
            .query()
            .table_name(&self.t.state_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S("audit-checkpoint".into()))
            .send()
            .await
            .unwrap()
            .items
            .unwrap()
    }

    /// Audit items inside the sealed span, oldest first.
    async fn sealed_items(&self) -> Vec<Item> {
        let cps = self.checkpoints().await;
        let text = |i: &Item, k: &str| i[k].as_s().unwrap().clone();
        let (first, last) = (
            text(&cps[0], "period_start"),
            text(cps.last().unwrap(), "period_end"),
        );
        let mut items: Vec<Item> = self
            .t
            .audit_items()
            .await
            .into_iter()
            .filter(|i| {
                let time = &text(i, "time")[..19];
                time >= &first[..19] && time < &last[..19]
            })
            .collect();
        items.sort_by_key(|i| text(i, "sk"));
        items
    }

    async fn put(&self, table: &str, item: Item) {
        self.db
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }

    async fn delete(&self, table: &str, item: &Item, keys: [&str; 2]) {
        let key = keys
            .iter()
            .map(|k| ((*k).to_owned(), item[*k].clone()))
            .collect();
        self.db
            .delete_item()
            .table_name(table)
            .set_key(Some(key))
            .send()
            .await
            .unwrap();
    }
}

fn kinds(report: &Value) -> Vec<String> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_a_sealed_trail_is_named_and_an_untouched_one_verifies_offline() {
    let trail = Trail::start().await;
    // The first run of a deployment seals the newest closed period: the start of the chain.
    let first = trail.seal().await;
    assert_eq!(first.sealed.len(), 1, "{first:?}");
    assert_eq!(first.archived, 1);
    // Activity, then the periods it fell in close and are sealed.
    for n in 0..3 {
        trail
            .stack
            .put_profile(&format!("sealed-{n}"), &json!({"credential_type": "assumed_role",
                "role_arn": "arn:aws:iam::123456789012:role/keysmith/x", "allowed_principals": [trail.stack.alice.arn]}));
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let report = trail.seal().await;
    assert!(report.sealed.len() >= 3, "{report:?}");
    assert_eq!(report.archived, report.sealed.len());
    assert!(
        report.sealed.iter().any(|(_, count)| *count > 0),
        "{report:?}"
    );
    // Sealing again (a duplicate run) seals nothing new and changes nothing.
    let stored = trail.checkpoints().await;
    let again = trail
        .t
        .app
        .sealer(&trail.t.sdk)
        .seal(Utc::now())
        .await
        .unwrap();
    assert!(again.sealed.len() <= 2, "{again:?}");
    assert_eq!(trail.checkpoints().await[..stored.len()], stored[..]);

    // Untouched: clean, with the key file alone — KMS unreachable proves no KMS call.
    let (ok, clean, err) = trail
        .verify(
            &["--public-key", &trail.pem.display().to_string()],
            &[("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:9")],
        )
        .await;
    assert!(ok, "{clean}\n{err}");
    assert_eq!(kinds(&clean), Vec::<String>::new());
    assert!(clean["checkpoints"].as_u64().unwrap() >= 4, "{clean}");
    assert!(clean["items"].as_u64().unwrap() >= 3, "{clean}");
    // And with the key fetched from KMS (kms:GetPublicKey of the checkpoints' key).
    let moto = trail.stack.moto.endpoint.clone();
    let (ok, _, err) = trail.verify(&[], &[("AWS_ENDPOINT_URL_KMS", &moto)]).await;
    assert!(ok, "{err}");
    let key_uuid = trail.key_arn.rsplit('/').next().unwrap();
    assert!(err.contains(key_uuid), "names the key it trusts: {err}");

    let sealed = trail.sealed_items().await;
    assert!(sealed.len() >= 3);
    let audit = trail.t.audit_table.clone();
    let state = trail.t.state_table.clone();
    let id = |i: &Item| i["id"].as_s().unwrap().clone();

    // 1. One byte of one item changed.
    let victim = sealed[sealed.len() / 2].clone();
    let mut changed = victim.clone();
    let message = victim["message"].as_s().unwrap();
    changed.insert(
        "message".into(),
        AttributeValue::S(message.replacen(' ', "_", 1)),
    );
    trail.put(&audit, changed).await;
    let (ok, r, _) = trail.verify_with_file().await;
    assert!(!ok);
    assert!(
        r["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "item_changed" && p["id"] == id(&victim).as_str()),
        "{r}"
    );
    assert!(kinds(&r).contains(&"items_differ".to_owned()), "{r}");
    trail.put(&audit, victim.clone()).await;

    // 2. The newest sealed item deleted.
    let newest = sealed.last().unwrap().clone();
    trail.delete(&audit, &newest, ["day", "sk"]).await;
    let (ok, r, _) = trail.verify_with_file().await;
    assert!(!ok);
    assert_eq!(kinds(&r), vec!["items_deleted"], "{r}");
    trail.put(&audit, newest.clone()).await;

    // 3. An item inserted with an old time, well-formed (its own hash right).
    let mut forged = sealed[0].clone();
    let forged_id = uuid::Uuid::new_v4().to_string();
    let time = forged["time"].as_s().unwrap().clone();
    forged.insert("id".into(), AttributeValue::S(forged_id.clone()));
    forged.insert("message".into(), AttributeValue::S("nothing to see".into()));
    forged.insert(
        "day".into(),
        AttributeValue::S(keysmith::audit::partition(&time[..10], &forged_id)),
    );
    forged.insert(
        "sk".into(),
        AttributeValue::S(format!("{time}#{forged_id}")),
    );
    let mut as_json = serde_json::Map::new();
    for (k, v) in &forged {
        if !matches!(k.as_str(), "day" | "sk" | "hash") {
            if let Ok(s) = v.as_s() {
                as_json.insert(k.clone(), json!(s));
            } else if let Ok(n) = v.as_n() {
                as_json.insert(k.clone(), json!(n.parse::<u64>().unwrap()));
            }
        }
    }
    let hash = keysmith_audit_proof::item_hash(&Value::Object(as_json));
    forged.insert("hash".into(), AttributeValue::S(hash));
    trail.put(&audit, forged.clone()).await;
    let (ok, r, _) = trail.verify_with_file().await;
    assert!(!ok);
    assert_eq!(kinds(&r), vec!["items_inserted"], "{r}");
    trail.delete(&audit, &forged, ["day", "sk"]).await;

    // 4. A checkpoint deleted from the table.
    let cps = trail.checkpoints().await;
    let middle = cps[1].clone();
    trail.delete(&state, &middle, ["pk", "sk"]).await;
    let (ok, r, _) = trail.verify_with_file().await;
    assert!(!ok);
    assert!(
        r["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "checkpoints_missing"
                && p["after"] == cps[0]["period_end"].as_s().unwrap().as_str()),
        "{r}"
    );
    trail.put(&state, middle.clone()).await;

    // 5. A checkpoint re-signed with another key (the same key id claimed).
    let other = keysmith_tests::aws::signing_key(&trail.t.sdk).await;
    let text = |k: &str| middle[k].as_s().unwrap().clone();
    let cp = Checkpoint {
        period_start: text("period_start"),
        period_end: text("period_end"),
        count: middle["count"].as_n().unwrap().parse().unwrap(),
        root: text("root"),
        previous: text("previous"),
        key_id: text("key_id"),
        signature: None,
    };
    let sig = trail
        .kms
        .sign()
        .key_id(&other)
        .message(aws_smithy_types::Blob::new(cp.signed_message()))
        .message_type(aws_sdk_kms::types::MessageType::Raw)
        .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap()
        .signature
        .unwrap();
    let mut resigned = middle.clone();
    resigned.insert(
        "signature".into(),
        AttributeValue::S(base64::engine::general_purpose::STANDARD.encode(sig.as_ref())),
    );
    trail.put(&state, resigned).await;
    let (ok, r, _) = trail.verify_with_file().await;
    assert!(!ok);
    assert!(
        r["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "bad_signature" && p["period_start"] == cp.period_start.as_str()),
        "{r}"
    );
    trail.put(&state, middle).await;

    // Everything restored: clean again, and the human form says so.
    let pem = trail.pem.display().to_string();
    let mut c = trail.stack.command(&trail.stack.admin);
    c.args(["audit", "verify", "--public-key", &pem]);
    let out = tokio::task::block_in_place(|| trail.stack.output(&mut c));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("clean"), "{text}");

    // The archive: one object per checkpoint, the same JSON, and a locked version can be
    // neither deleted nor replaced.
    let s3 = s3(&trail.t.sdk);
    let listed = s3
        .list_object_versions()
        .bucket(&trail.bucket)
        .prefix("checkpoints/")
        .send()
        .await
        .unwrap();
    let versions = listed.versions.unwrap_or_default();
    assert_eq!(versions.len(), trail.checkpoints().await.len());
    let v = &versions[0];
    let key = v.key.clone().unwrap();
    let body = s3
        .get_object()
        .bucket(&trail.bucket)
        .key(&key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let archived: Checkpoint = serde_json::from_slice(&body).unwrap();
    assert_eq!(format!("checkpoints/{}.json", archived.period_start), key);
    assert!(archived.signature.is_some());
    let refused = s3
        .delete_object()
        .bucket(&trail.bucket)
        .key(&key)
        .version_id(v.version_id.clone().unwrap())
        .send()
        .await;
    assert!(refused.is_err(), "a locked checkpoint was deleted");
    s3.put_object()
        .bucket(&trail.bucket)
        .key(&key)
        .body(b"{}".to_vec().into())
        .send()
        .await
        .unwrap();
    let original = s3
        .get_object()
        .bucket(&trail.bucket)
        .key(&key)
        .version_id(v.version_id.clone().unwrap())
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(
        original, body,
        "an overwrite leaves the sealed version as it was"
    );

    // The checkpoints route pages oldest first.
    let (s, page) = trail
        .t
        .call("GET", "/v1/audit/checkpoints?limit=2", None, Some(ADMIN))
        .await;
    assert_eq!(s, 200, "{page}");
    let got = page["checkpoints"].as_array().unwrap();
    assert_eq!(got.len(), 2);
    assert!(got[0]["period_start"].as_str() < got[1]["period_start"].as_str());
    assert_eq!(got[1]["previous"].as_str().unwrap().len(), 64);
    let next = page["next"].as_str().unwrap();
    let (s, rest) = trail
        .t
        .call(
            "GET",
            &format!("/v1/audit/checkpoints?limit=1000&next={next}"),
            None,
            Some(ADMIN),
        )
        .await;
    assert_eq!(s, 200, "{rest}");
    assert_eq!(
        rest["checkpoints"][0]["previous"],
        json!(Checkpoint {
            period_start: got[1]["period_start"].as_str().unwrap().into(),
            period_end: got[1]["period_end"].as_str().unwrap().into(),
            count: got[1]["count"].as_u64().unwrap(),
            root: got[1]["root"].as_str().unwrap().into(),
            previous: got[1]["previous"].as_str().unwrap().into(),
            key_id: got[1]["key_id"].as_str().unwrap().into(),
            signature: got[1]["signature"].as_str().map(str::to_owned),
        }
        .hash())
    );
    trail.stack.scan();
}

/// Without a signing key, sealing is off and says so; nothing is written.
#[tokio::test]
async fn without_a_key_sealing_is_off_and_says_so() {
    let t = TestApp::new().await;
    let report = t.app.sealer(&t.sdk).seal(Utc::now()).await.unwrap();
    assert!(report.off.unwrap().contains("KEYSMITH_AUDIT_SIGNING_KEY"));
    assert!(report.sealed.is_empty());
}
