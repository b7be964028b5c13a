//! The audit trail is append-only in fact, not only in the template's comments: IAM cannot tell a
//! new `PutItem` from an overwrite (both functions hold `dynamodb:PutItem` on the table), so every
//! audit write carries `attribute_not_exists(sk)`: a second write of the same key changes nothing
//! (it counts as the retry of a write whose answer was lost), and the first item stays as it was
//! (issue 23; the signed checkpoints of SPEC §13 are the answer to a writer outside Keysmith).

use keysmith::audit::{AuditRecord, Category, Origin, Outcome};
use keysmith_tests::api::{TestApp, ADMIN};

#[tokio::test]
async fn an_audit_item_is_never_overwritten() {
    let t = TestApp::new().await;
    let origin = Origin {
        principal: "arn:aws:iam::123456789012:user/alice".into(),
        ..Origin::default()
    };
    let mut record = AuditRecord::new(
        &origin,
        Category::Config,
        "Profile Created",
        Outcome::Success,
        "first",
    );
    t.app.audit.write(&record).await.unwrap();
    record.message = "rewritten".into();
    // Whatever it answers, it must not have replaced the item.
    let _ = t.app.audit.write(&record).await;

    let items = t.audit_items().await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["message"].as_s().unwrap(), "first");
}

/// SPEC §13: every item carries `id` and `hash`, which a third party recomputes from what
/// `GET /v1/audit` returns (here Python's own JSON with sorted keys and no whitespace: RFC 8785
/// for strings and integers); reading the trail is itself an `Audit Read` item.
#[tokio::test]
async fn items_carry_a_hash_anyone_can_recompute_and_reads_are_audited() {
    let t = TestApp::new().await;
    t.put_profile(
        "hashed",
        serde_json::json!({"credential_type": "session_token", "source_secret_id": "keysmith/x",
            "description": "ünïcode \"quoted\" \\ back", "allowed_principals": [keysmith_tests::api::DEPLOYER]}),
    )
    .await;
    let (s, page) = t.call("GET", "/v1/audit", None, Some(ADMIN)).await;
    assert_eq!(s, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert!(!items.is_empty());
    let script = r#"
import hashlib, json, sys
for item in json.load(sys.stdin):
    h = item.pop("hash")
    text = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    print("ok" if hashlib.sha256(text.encode()).hexdigest() == h else "bad " + item["id"])
"#;
    let mut child = std::process::Command::new(keysmith_tests::venv().join("bin/python"))
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(items).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let verdicts = String::from_utf8_lossy(&out.stdout);
    assert_eq!(verdicts.lines().count(), items.len(), "{verdicts}");
    assert!(verdicts.lines().all(|l| l == "ok"), "{verdicts}");
    for i in items {
        assert!(
            uuid::Uuid::parse_str(i["id"].as_str().unwrap()).is_ok(),
            "{i}"
        );
    }
    // A changed item no longer matches its hash.
    let mut changed = items[0].clone();
    changed["message"] = serde_json::json!("rewritten");
    assert_ne!(
        keysmith::audit::item_hash(&changed),
        changed["hash"].as_str().unwrap()
    );
    assert_eq!(
        keysmith::audit::item_hash(&items[0]),
        items[0]["hash"].as_str().unwrap()
    );

    // The read itself is in the trail, by whom; it is not in the page it produced.
    assert!(items.iter().all(|i| i["event"] != "Audit Read"));
    let (_, again) = t
        .call("GET", "/v1/audit?event=Audit%20Read", None, Some(ADMIN))
        .await;
    let reads = again["items"].as_array().unwrap();
    assert_eq!(reads.len(), 1, "{again}");
    assert_eq!(reads[0]["principal"], ADMIN);
    assert_eq!(reads[0]["category"], "Config");
}
