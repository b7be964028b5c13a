//! Access requests and approvals (SPEC §12) through the API against moto: the approval gate, the
//! two-person rule (another session of the same role is the same person), the digest, approvers
//! counted once under concurrency, issuance exactly once within the grant, expiry, break glass
//! and its review, one audit item and one event per transition, no secret in any of them.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration, Utc};
use keysmith_tests::api::{assert_error, TestApp};
use keysmith_tests::events::EventQueue;
use keysmith_tests::moto::Moto;
use serde_json::{json, Value};

const ALICE: &str = "arn:aws:sts::123456789012:assumed-role/Dev/alice";
/// Another session of alice's role: the same person for the two-person rule.
const ALICE_LAPTOP: &str = "arn:aws:sts::123456789012:assumed-role/Dev/alice-laptop";
const MALLORY: &str = "arn:aws:iam::123456789012:user/mallory";

fn approver(i: usize) -> String {
    format!("arn:aws:iam::123456789012:user/approver-{i}")
}

fn profile(min_approvals: u32) -> Value {
    json!({"credential_type": "assumed_role",
           "role_arn": "arn:aws:iam::123456789012:role/keysmith/deploy",
           "allowed_principals": ["arn:aws:iam::123456789012:role/Dev", "arn:aws:iam::123456789012:user/*"],
           "approval": {
               // alice's role may approve too: only never her own requests.
               "approvers": ["arn:aws:iam::123456789012:user/approver-*", "arn:aws:iam::123456789012:role/Dev"],
               "min_approvals": min_approvals,
               "request_ttl_seconds": 3600, "grant_ttl_seconds": 3600,
               "break_glass_principals": ["arn:aws:iam::123456789012:role/Dev"]}})
}

async fn app(min_approvals: u32) -> TestApp {
    let t = TestApp::new().await;
    t.put_profile("deploy", profile(min_approvals)).await;
    t
}

async fn request(t: &TestApp, who: &str, body: Value) -> Value {
    let (s, r) = t
        .call("POST", "/v1/requests", Some(&body.to_string()), Some(who))
        .await;
    assert_eq!(s, 201, "{r}");
    r
}

async fn ask(t: &TestApp, who: &str) -> Value {
    request(
        t,
        who,
        json!({"profile": "deploy", "reason": "deploy the hotfix", "ticket": "OPS-7"}),
    )
    .await
}

async fn approve(t: &TestApp, who: &str, r: &Value) -> (u16, Value) {
    let body = json!({"digest": r["digest"], "comment": "looks right"});
    let path = format!("/v1/requests/{}/approve", r["request_id"].as_str().unwrap());
    t.call("POST", &path, Some(&body.to_string()), Some(who))
        .await
}

async fn issue(t: &TestApp, who: &str, id: &Value) -> (u16, Value) {
    let body = json!({ "request_id": id });
    t.call(
        "POST",
        "/v1/profiles/deploy/credentials",
        Some(&body.to_string()),
        Some(who),
    )
    .await
}

/// Moves a request's times into the past, as the clock would (`field` and the `due` index).
async fn age(t: &TestApp, id: &str, field: &str) {
    set_time(t, id, field, -1).await;
}

/// Sets a request's `field` (and its `due` index time) to `seconds` from now.
async fn set_time(t: &TestApp, id: &str, field: &str, seconds: i64) {
    let db = aws_sdk_dynamodb::Client::new(&t.sdk);
    let past = keysmith::time::format_time(Utc::now() + Duration::seconds(seconds));
    db.update_item()
        .table_name(&t.state_table)
        .key("pk", AttributeValue::S("request".into()))
        .key("sk", AttributeValue::S(id.into()))
        .update_expression("SET #f = :t, due_at = :t")
        .expression_attribute_names("#f", field)
        .expression_attribute_values(":t", AttributeValue::S(past))
        .send()
        .await
        .unwrap();
}

/// The audit items about access request `id` (success or not), oldest first.
async fn items_of(t: &TestApp, id: &str) -> Vec<HashMap<String, AttributeValue>> {
    let mut items: Vec<_> = t
        .audit_items()
        .await
        .into_iter()
        .filter(|i| {
            i.get("access_request_id")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                == Some(id)
        })
        .collect();
    items.sort_by(|a, b| a["sk"].as_s().unwrap().cmp(b["sk"].as_s().unwrap()));
    items
}

fn events_of(items: &[HashMap<String, AttributeValue>], outcome: &str) -> Vec<String> {
    items
        .iter()
        .filter(|i| i["outcome"].as_s().unwrap() == outcome)
        .map(|i| i["event"].as_s().unwrap().clone())
        .collect()
}

#[tokio::test]
async fn approval_is_required_and_bound_to_another_person_and_the_digest() {
    let t = app(1).await;
    let (s, b) = t
        .call("POST", "/v1/profiles/deploy/credentials", None, Some(ALICE))
        .await;
    assert_error(s, &b, 403, "approval_required", None);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("keysmith request deploy"),
        "{b}"
    );

    // Bad requests name their field.
    for (body, field) in [
        (json!({"profile": "deploy"}), "reason"),
        (json!({"profile": "deploy", "reason": " "}), "reason"),
        (
            json!({"profile": "deploy", "reason": "x".repeat(1001)}),
            "reason",
        ),
        (
            json!({"profile": "deploy", "reason": "r", "duration_seconds": 899}),
            "duration_seconds",
        ),
        (
            json!({"profile": "deploy", "reason": "r", "duration_seconds": 7200}),
            "duration_seconds",
        ),
        (
            json!({"profile": "deploy", "reason": "r", "colour": 1}),
            "colour",
        ),
        (json!({"profile": "no such/name", "reason": "r"}), "profile"),
    ] {
        let (s, b) = t
            .call("POST", "/v1/requests", Some(&body.to_string()), Some(ALICE))
            .await;
        assert_error(s, &b, 400, "invalid_request", Some(field));
    }
    let (s, b) = t
        .call(
            "POST",
            "/v1/requests",
            Some(r#"{"profile": "deploy", "reason": "r"}"#),
            Some("arn:aws:iam::999999999999:user/eve"),
        )
        .await;
    assert_error(s, &b, 403, "forbidden", None);

    let r = ask(&t, ALICE).await;
    let id = r["request_id"].as_str().unwrap();
    assert_eq!(r["status"], "pending");
    assert_eq!(r["duration_seconds"], 3600);
    // The digest is SHA-256 of exactly the canonical fields, and anyone can recompute it.
    let bound = keysmith::requests::Bound {
        requester: ALICE,
        profile: "deploy",
        duration: 3600,
        ticket: Some("OPS-7"),
        reason: "deploy the hotfix",
        break_glass: false,
        created_at: r["created_at"].as_str().unwrap(),
    };
    assert_eq!(r["digest"], bound.digest());

    // The requester under another session of the same role, a non-approver, a wrong digest.
    let (s, b) = approve(&t, ALICE_LAPTOP, &r).await;
    assert_error(s, &b, 403, "forbidden", None);
    let (s, b) = approve(&t, ALICE, &r).await;
    assert_error(s, &b, 403, "forbidden", None);
    let (s, b) = approve(&t, MALLORY, &r).await;
    assert_error(s, &b, 403, "forbidden", None);
    let mut other = r.clone();
    other["digest"] = json!(keysmith::requests::Bound {
        duration: 7200,
        ..bound
    }
    .digest());
    let (s, b) = approve(&t, &approver(1), &other).await;
    assert_error(s, &b, 409, "digest_mismatch", None);
    let (s, _) = t
        .call("GET", &format!("/v1/requests/{id}"), None, Some(MALLORY))
        .await;
    assert_eq!(s, 404, "a stranger does not learn the request exists");
    let (s, b) = issue(&t, ALICE, &r["request_id"]).await;
    assert_error(s, &b, 403, "approval_required", None);

    let (s, a) = approve(&t, &approver(1), &r).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["status"], "approved");
    assert_eq!(a["approvals"][0]["approver"], approver(1));
    let grant_end =
        chrono::DateTime::parse_from_rfc3339(a["grant_expires_at"].as_str().unwrap()).unwrap();

    // Only the requester, without a duration of their own, once.
    let (s, b) = issue(&t, &approver(1), &r["request_id"]).await;
    assert_error(s, &b, 403, "forbidden", None);
    let body = json!({"request_id": id, "duration_seconds": 900}).to_string();
    let (s, b) = t
        .call(
            "POST",
            "/v1/profiles/deploy/credentials",
            Some(&body),
            Some(ALICE),
        )
        .await;
    assert_error(s, &b, 400, "invalid_request", Some("duration_seconds"));
    let (s, c) = issue(&t, ALICE, &r["request_id"]).await;
    assert_eq!(s, 200, "{c}");
    let expiration =
        chrono::DateTime::parse_from_rfc3339(c["expiration"].as_str().unwrap()).unwrap();
    assert!(
        expiration <= grant_end,
        "the lease outlives the grant: {expiration} > {grant_end}"
    );
    assert!(c["lease_duration"].as_u64().unwrap() <= 3600);
    let (s, b) = issue(&t, ALICE, &r["request_id"]).await;
    assert_error(s, &b, 409, "conflict", None);
    let (s, b) = issue(&t, ALICE_LAPTOP, &r["request_id"]).await;
    assert_error(s, &b, 409, "conflict", None);
    let (s, g) = t
        .call("GET", &format!("/v1/requests/{id}"), None, Some(ALICE))
        .await;
    assert_eq!(s, 200, "{g}");
    assert_eq!(
        (&g["status"], &g["lease_id"]),
        (&json!("issued"), &c["lease_id"])
    );

    let items = items_of(&t, id).await;
    assert_eq!(
        events_of(&items, "success"),
        ["Access Requested", "Access Approved", "AWS STS Temporary"]
    );
    assert_eq!(
        events_of(&items, "denied").len(),
        8,
        "each refusal is audited"
    );
}

#[tokio::test]
async fn two_approvals_each_approver_once_and_twenty_at_once() {
    let t = app(2).await;
    let r = ask(&t, ALICE).await;
    let (s, a) = approve(&t, &approver(1), &r).await;
    assert_eq!((s, &a["status"]), (200, &json!("pending")), "{a}");
    let (s, a) = approve(&t, &approver(1), &r).await;
    assert_eq!((s, &a["status"]), (200, &json!("pending")), "{a}");
    assert_eq!(
        a["approvals"].as_array().unwrap().len(),
        1,
        "the same approver counts once"
    );
    let (s, a) = approve(&t, &approver(2), &r).await;
    assert_eq!((s, &a["status"]), (200, &json!("approved")), "{a}");

    // 20 approvers at once: exactly two count, one transition.
    let r = ask(&t, ALICE).await;
    let id = r["request_id"].as_str().unwrap();
    let approvers: Vec<String> = (0..20).map(approver).collect();
    let results =
        futures_util::future::join_all(approvers.iter().map(|a| approve(&t, a, &r))).await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    assert!(
        results.iter().all(|(s, _)| *s == 200 || *s == 409),
        "{results:?}"
    );
    assert_eq!(ok, 2, "{results:?}");
    let (_, g) = t
        .call("GET", &format!("/v1/requests/{id}"), None, Some(ALICE))
        .await;
    assert_eq!(g["status"], "approved");
    let counted: Vec<&str> = g["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["approver"].as_str().unwrap())
        .collect();
    assert_eq!(counted.len(), 2, "{g}");
    assert_ne!(counted[0], counted[1]);
    let items = items_of(&t, id).await;
    let approved: Vec<&HashMap<String, AttributeValue>> = items
        .iter()
        .filter(|i| {
            i["event"].as_s().unwrap() == "Access Approved"
                && i["outcome"].as_s().unwrap() == "success"
        })
        .collect();
    assert_eq!(approved.len(), 2, "one item per counted approval");
    let transitions = approved
        .iter()
        .filter(|i| i["message"].as_s().unwrap().contains("approved until"))
        .count();
    assert_eq!(transitions, 1, "one transition item");
}

#[tokio::test]
async fn expired_requests_cannot_be_approved_and_a_grant_ends() {
    let t = app(1).await;
    let r = ask(&t, ALICE).await;
    let id = r["request_id"].as_str().unwrap();
    age(&t, id, "request_expires_at").await;
    let (s, b) = approve(&t, &approver(1), &r).await;
    assert_error(s, &b, 409, "conflict", None);
    let (_, g) = t
        .call("GET", &format!("/v1/requests/{id}"), None, Some(ALICE))
        .await;
    assert_eq!(g["status"], "expired");

    // The scheduled run records it once, however often it runs.
    let r2 = ask(&t, ALICE).await;
    let id2 = r2["request_id"].as_str().unwrap();
    age(&t, id2, "request_expires_at").await;
    let origin = keysmith::audit::Origin {
        principal: "keysmith:scheduled-rotation".into(),
        ..Default::default()
    };
    let run = keysmith::jobs::sweep(&t.app, Utc::now(), &origin)
        .await
        .unwrap();
    assert_eq!(run.requests_expired, 1);
    let run = keysmith::jobs::sweep(&t.app, Utc::now(), &origin)
        .await
        .unwrap();
    assert_eq!(run.requests_expired, 0);
    for id in [id, id2] {
        let items = items_of(&t, id).await;
        assert_eq!(
            events_of(&items, "success"),
            ["Access Requested", "Access Request Expired"],
            "{id}"
        );
    }

    // An approved request past its grant issues nothing.
    let r3 = ask(&t, ALICE).await;
    let (s, _) = approve(&t, &approver(1), &r3).await;
    assert_eq!(s, 200);
    age(&t, r3["request_id"].as_str().unwrap(), "grant_expires_at").await;
    let (s, b) = issue(&t, ALICE, &r3["request_id"]).await;
    assert_error(s, &b, 409, "conflict", None);
    assert!(
        b["error"]["message"].as_str().unwrap().contains("expired"),
        "{b}"
    );

    // A grant with less left than AWS's shortest credentials (900 s) issues nothing either, and
    // stays approved.
    let r6 = ask(&t, ALICE).await;
    let (s, _) = approve(&t, &approver(1), &r6).await;
    assert_eq!(s, 200);
    let id6 = r6["request_id"].as_str().unwrap();
    set_time(&t, id6, "grant_expires_at", 600).await;
    let (s, b) = issue(&t, ALICE, &r6["request_id"]).await;
    assert_error(s, &b, 409, "conflict", None);
    assert!(
        b["error"]["message"].as_str().unwrap().contains("900"),
        "{b}"
    );
    let (_, g) = t
        .call("GET", &format!("/v1/requests/{id6}"), None, Some(ALICE))
        .await;
    assert_eq!(g["status"], "approved");

    // Deny and cancel end a request; neither can be undone.
    let r4 = ask(&t, ALICE).await;
    let id4 = r4["request_id"].as_str().unwrap();
    let (s, b) = t
        .call(
            "DELETE",
            &format!("/v1/requests/{id4}"),
            None,
            Some(&approver(1)),
        )
        .await;
    assert_error(s, &b, 403, "forbidden", None);
    let (s, b) = t
        .call(
            "DELETE",
            &format!("/v1/requests/{id4}"),
            Some(r#"{"comment": "not needed"}"#),
            Some(ALICE),
        )
        .await;
    assert_eq!((s, &b["status"]), (200, &json!("cancelled")), "{b}");
    let (s, b) = approve(&t, &approver(1), &r4).await;
    assert_error(s, &b, 409, "conflict", None);
    let r5 = ask(&t, ALICE).await;
    let id5 = r5["request_id"].as_str().unwrap();
    let (s, b) = t
        .call(
            "POST",
            &format!("/v1/requests/{id5}/deny"),
            None,
            Some(ALICE_LAPTOP),
        )
        .await;
    assert_error(s, &b, 403, "forbidden", None);
    let (s, b) = t
        .call(
            "POST",
            &format!("/v1/requests/{id5}/deny"),
            Some(r#"{"comment": "no"}"#),
            Some(&approver(2)),
        )
        .await;
    assert_eq!((s, &b["status"]), (200, &json!("denied")), "{b}");
    let (s, b) = issue(&t, ALICE, &r5["request_id"]).await;
    assert_error(s, &b, 409, "conflict", None);
}

#[tokio::test]
async fn listing_by_status_and_profile_and_who_sees_what() {
    let t = app(1).await;
    let mut other = profile(1);
    other["approval"]["approvers"] = json!(["arn:aws:iam::123456789012:user/other-approver"]);
    t.put_profile("other", other).await;
    let mine: Vec<Value> = futures_util::future::join_all((0..3).map(|_| ask(&t, ALICE))).await;
    let elsewhere = request(&t, ALICE, json!({"profile": "other", "reason": "r"})).await;
    let (s, _) = approve(&t, &approver(1), &mine[0]).await;
    assert_eq!(s, 200);
    let list = |who: String, query: &'static str| {
        let t = &t;
        async move {
            let mut all = Vec::new();
            let mut next: Option<String> = None;
            loop {
                let path = match &next {
                    Some(n) => format!("/v1/requests?{query}limit=2&next={n}"),
                    None => format!("/v1/requests?{query}limit=2"),
                };
                let (s, b) = t.call("GET", &path, None, Some(&who)).await;
                assert_eq!(s, 200, "{b}");
                all.extend(
                    b["requests"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r["request_id"].as_str().unwrap().to_owned()),
                );
                match b["next"].as_str() {
                    Some(n) => next = Some(n.to_owned()),
                    None => return all,
                }
            }
        }
    };
    let ids = |rs: &[&Value]| {
        let mut v: Vec<String> = rs
            .iter()
            .map(|r| r["request_id"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let all = [&mine[0], &mine[1], &mine[2], &elsewhere];
    assert_eq!(sorted(list(ALICE.into(), "").await), ids(&all));
    assert_eq!(
        sorted(list(ALICE_LAPTOP.into(), "").await),
        ids(&all),
        "the same person"
    );
    assert_eq!(
        sorted(list(ALICE.into(), "status=approved&").await),
        ids(&[&mine[0]])
    );
    assert_eq!(
        sorted(list(ALICE.into(), "profile=other&").await),
        ids(&[&elsewhere])
    );
    // An approver sees what they may approve: pending ones of their profiles.
    assert_eq!(
        sorted(list(approver(1), "").await),
        ids(&[&mine[1], &mine[2]])
    );
    assert_eq!(
        sorted(list(approver(1), "profile=deploy&").await),
        ids(&[&mine[0], &mine[1], &mine[2]])
    );
    assert_eq!(
        sorted(
            list(
                "arn:aws:iam::123456789012:user/other-approver".into(),
                "status=pending&"
            )
            .await
        ),
        ids(&[&elsewhere])
    );
    assert!(list(MALLORY.into(), "").await.is_empty());
    assert!(list(MALLORY.into(), "status=pending&").await.is_empty());
    assert_eq!(
        sorted(list(keysmith_tests::api::ADMIN.into(), "").await),
        ids(&all)
    );
    let (s, b) = t
        .call("GET", "/v1/requests?status=open", None, Some(ALICE))
        .await;
    assert_error(s, &b, 400, "invalid_request", Some("status"));
    let (s, b) = t
        .call(
            "GET",
            "/v1/requests?next=bm90LWEtY3Vyc29y",
            None,
            Some(ALICE),
        )
        .await;
    assert_error(s, &b, 400, "invalid_request", Some("next"));
    // A real cursor, but of another query: refused, not sent to DynamoDB.
    let (_, page) = t
        .call(
            "GET",
            "/v1/requests?status=pending&limit=1",
            None,
            Some(ALICE),
        )
        .await;
    let cursor = page["next"].as_str().unwrap().to_owned();
    let path = format!("/v1/requests?profile=deploy&next={cursor}");
    let (s, b) = t.call("GET", &path, None, Some(ALICE)).await;
    assert_error(s, &b, 400, "invalid_request", Some("next"));
}

#[tokio::test]
async fn break_glass_is_loud_immediate_and_reviewed_before_the_next() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let queue = EventQueue::subscribe(&sdk).await;
    let t = TestApp::on(&moto, sdk).await;
    t.put_profile("deploy", profile(2)).await;
    let glass = json!({"profile": "deploy", "reason": "prod is down", "break_glass": true});
    let (s, b) = t
        .call(
            "POST",
            "/v1/requests",
            Some(&glass.to_string()),
            Some(&approver(1)),
        )
        .await;
    assert_error(s, &b, 403, "forbidden", None);
    let r = request(&t, ALICE, glass.clone()).await;
    let id = r["request_id"].as_str().unwrap();
    assert_eq!(r["status"], "approved");
    let (s, c) = issue(&t, ALICE, &r["request_id"]).await;
    assert_eq!(s, 200, "{c}");
    let (s, b) = t
        .call(
            "POST",
            "/v1/requests",
            Some(&glass.to_string()),
            Some(ALICE_LAPTOP),
        )
        .await;
    assert_error(s, &b, 409, "conflict", None);
    assert!(b["error"]["message"].as_str().unwrap().contains(id), "{b}");
    // Not by the one who broke it; not twice; not a request that is no break glass.
    let (s, b) = t
        .call(
            "POST",
            &format!("/v1/requests/{id}/review"),
            None,
            Some(ALICE_LAPTOP),
        )
        .await;
    assert_error(s, &b, 403, "forbidden", None);
    let (s, b) = t
        .call(
            "POST",
            &format!("/v1/requests/{id}/review"),
            Some(r#"{"comment": "ok, incident 42"}"#),
            Some(&approver(1)),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["reviewed_by"], approver(1));
    let (s, b) = t
        .call(
            "POST",
            &format!("/v1/requests/{id}/review"),
            None,
            Some(&approver(2)),
        )
        .await;
    assert_error(s, &b, 409, "conflict", None);
    let again = request(&t, ALICE, glass).await;
    assert_eq!(again["status"], "approved");

    let items = items_of(&t, id).await;
    assert_eq!(
        events_of(&items, "success"),
        [
            "Break Glass Used",
            "AWS STS Temporary",
            "Break Glass Reviewed"
        ]
    );
    assert_eq!(items[0]["level"].as_s().unwrap(), "ERROR");
    let events = queue.drain().await;
    let of = |id: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["detail"]["access_request_id"] == id)
            .map(|e| e["detail-type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        of(id),
        [
            "Break Glass Used",
            "Credentials Issued",
            "Break Glass Reviewed"
        ]
    );
    assert_eq!(
        of(again["request_id"].as_str().unwrap()),
        ["Break Glass Used"]
    );
}

#[tokio::test]
async fn every_transition_is_one_item_and_one_event_and_nothing_secret() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let queue = EventQueue::subscribe(&sdk).await;
    let t = TestApp::on(&moto, sdk.clone()).await;
    t.put_profile("deploy", profile(1)).await;
    let issued = ask(&t, ALICE).await;
    approve(&t, &approver(1), &issued).await;
    let (s, c) = issue(&t, ALICE, &issued["request_id"]).await;
    assert_eq!(s, 200, "{c}");
    let denied = ask(&t, ALICE).await;
    t.call(
        "POST",
        &format!(
            "/v1/requests/{}/deny",
            denied["request_id"].as_str().unwrap()
        ),
        None,
        Some(&approver(1)),
    )
    .await;
    let cancelled = ask(&t, ALICE).await;
    t.call(
        "DELETE",
        &format!("/v1/requests/{}", cancelled["request_id"].as_str().unwrap()),
        None,
        Some(ALICE),
    )
    .await;
    let expired = ask(&t, ALICE).await;
    age(
        &t,
        expired["request_id"].as_str().unwrap(),
        "request_expires_at",
    )
    .await;
    let origin = keysmith::audit::Origin {
        principal: "keysmith:scheduled-rotation".into(),
        ..Default::default()
    };
    keysmith::jobs::sweep(&t.app, Utc::now(), &origin)
        .await
        .unwrap();
    keysmith::jobs::sweep(&t.app, Utc::now(), &origin)
        .await
        .unwrap();

    let events = queue.drain().await;
    for (r, want) in [
        (
            &issued,
            &["Access Requested", "Access Approved", "Credentials Issued"][..],
        ),
        (&denied, &["Access Requested", "Access Denied"][..]),
        (
            &cancelled,
            &["Access Requested", "Access Request Cancelled"][..],
        ),
        (
            &expired,
            &["Access Requested", "Access Request Expired"][..],
        ),
    ] {
        let id = r["request_id"].as_str().unwrap();
        let got: Vec<&str> = events
            .iter()
            .filter(|e| e["detail"]["access_request_id"] == id)
            .map(|e| e["detail-type"].as_str().unwrap())
            .collect();
        assert_eq!(got, want, "events of {id}");
        let items: Vec<String> = events_of(&items_of(&t, id).await, "success")
            .into_iter()
            .map(|e| {
                if e == "AWS STS Temporary" {
                    "Credentials Issued".into()
                } else {
                    e
                }
            })
            .collect();
        assert_eq!(items, want, "items of {id}");
    }
    // The approvers are told who asks for what, why, and how to approve.
    let asked = events
        .iter()
        .find(|e| e["detail-type"] == "Access Requested")
        .unwrap();
    let message = asked["detail"]["message"].as_str().unwrap();
    for part in [ALICE, "deploy", "deploy the hotfix", "keysmith approve"] {
        assert!(message.contains(part), "{message}");
    }
    // No secret in any request item or event.
    let secret = c["secret_access_key"].as_str().unwrap();
    let token = c["session_token"].as_str().unwrap();
    let state = aws_sdk_dynamodb::Client::new(&sdk)
        .scan()
        .table_name(&t.state_table)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let text = format!("{state:?}{events:?}");
    assert!(!text.contains(secret) && !text.contains(token));
    keysmith_tests::leaks::check(&text, "request items and events");
}

#[tokio::test]
async fn a_lease_issued_on_a_request_is_never_renewed_past_the_grant() {
    let t = TestApp::new().await;
    let mut p = json!({"credential_type": "iam_user",
        "permissions_boundary_arn": keysmith_tests::api::LEASE_BOUNDARY,
        "policy_document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]},
        "allowed_principals": ["arn:aws:iam::123456789012:role/Dev"]});
    p["approval"] = profile(1)["approval"].clone();
    p["approval"]["grant_ttl_seconds"] = json!(2000);
    t.put_profile("deploy", p).await;
    let r = request(
        &t,
        ALICE,
        json!({"profile": "deploy", "reason": "r", "duration_seconds": 900}),
    )
    .await;
    let (s, a) = approve(&t, &approver(1), &r).await;
    assert_eq!(s, 200, "{a}");
    let (s, c) = issue(&t, ALICE, &r["request_id"]).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["lease_duration"], 900, "the request's duration");
    let renew = |d: u32| {
        let path = format!("/v1/leases/{}/renew", c["lease_id"].as_str().unwrap());
        let body = json!({ "duration_seconds": d }).to_string();
        let t = &t;
        async move { t.call("POST", &path, Some(&body), Some(ALICE)).await }
    };
    let (s, b) = renew(2100).await;
    assert_error(s, &b, 400, "invalid_request", Some("duration_seconds"));
    assert!(
        b["error"]["message"].as_str().unwrap().contains("grant"),
        "{b}"
    );
    let (s, b) = renew(1500).await;
    assert_eq!(s, 200, "{b}");
}
