//! The audit trail is append-only in fact, not only in the template's comments: IAM cannot tell a
//! new `PutItem` from an overwrite (both functions hold `dynamodb:PutItem` on the table), so every
//! audit write carries `attribute_not_exists(sk)`: a second write of the same key changes nothing
//! (it counts as the retry of a write whose answer was lost), and the first item stays as it was
//! (issue 23; the signed checkpoints of SPEC §13 are the answer to a writer outside Keysmith).

use keysmith::audit::{AuditRecord, Category, Origin, Outcome};
use keysmith_tests::api::TestApp;

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
