//! The audit query is bounded like the rest of the API (issue 26): a `since` in the future, a
//! cursor outside the window and an index query wider than the cap are `400`s naming the field; a
//! 10 KB user agent is cut when written; a page stops at a size Lambda can return; and a day's 16
//! shards (plus the pre-sharding partition) merge newest first with the same paging.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chrono::{Duration, Utc};
use keysmith::audit::{AuditRecord, Category, Origin, Outcome, FREE_TEXT, PAGE_BYTES};
use keysmith_tests::api::{assert_error, TestApp, ADMIN};
use serde_json::Value;

async fn get(t: &TestApp, query: &str) -> (u16, Value) {
    t.call("GET", &format!("/v1/audit?{query}"), None, Some(ADMIN))
        .await
}

#[tokio::test]
async fn bad_windows_and_cursors_are_400s_naming_the_field() {
    let t = TestApp::new().await;
    let fmt = |d: chrono::DateTime<Utc>| d.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let future = fmt(Utc::now() + Duration::days(1));
    let (s, b) = get(&t, &format!("since={future}")).await;
    assert_error(s, &b, 400, "invalid_request", Some("since"));
    let (s, b) = get(&t, &format!("since={future}&principal=x")).await;
    assert_error(s, &b, 400, "invalid_request", Some("since"));
    // Index queries get the same cap as time-range queries.
    let old = fmt(Utc::now() - Duration::days(800));
    let (s, b) = get(&t, &format!("since={old}&principal=x")).await;
    assert_error(s, &b, 400, "invalid_request", Some("since"));
    let far = format!("9999-12-31T00:00:00.000000Z%23{}", uuid::Uuid::new_v4());
    let (s, b) = get(&t, &format!("next={far}")).await;
    assert_error(s, &b, 400, "invalid_request", Some("next"));
    let (s, b) = get(&t, "next=2026-01-01T00:00:00Z").await;
    assert_error(s, &b, 400, "invalid_request", Some("next"));
    let (s, b) = t
        .call(
            "GET",
            &format!("/v1/audit/checkpoints?since={future}"),
            None,
            Some(ADMIN),
        )
        .await;
    assert_error(s, &b, 400, "invalid_request", Some("since"));
    let (s, b) = t
        .call(
            "GET",
            "/v1/audit/checkpoints?next=yesterday",
            None,
            Some(ADMIN),
        )
        .await;
    assert_error(s, &b, 400, "invalid_request", Some("next"));
}

#[tokio::test]
async fn long_free_text_is_cut_and_a_page_fits_a_lambda_response() {
    let t = TestApp::new().await;
    // Through Keysmith: a 10 KB user agent is cut when written.
    let origin = Origin {
        principal: "arn:aws:iam::123456789012:user/agent".into(),
        user_agent: "a".repeat(10_240),
        ..Origin::default()
    };
    let r = AuditRecord::new(&origin, Category::Data, "Probe", Outcome::Denied, "m");
    t.app.audit.write(&r).await.unwrap();
    let (s, page) = get(&t, "principal=arn:aws:iam::123456789012:user/agent").await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(
        page["items"][0]["user_agent"].as_str().unwrap().len(),
        FREE_TEXT
    );

    // Written around Keysmith (whoever can write the table): 1,000 items of 10 KB each, spread
    // over one day's shards and the pre-sharding partition. A page stops below Lambda's 6 MB,
    // and following `next` returns every item once, newest first.
    let db = aws_sdk_dynamodb::Client::new(&t.sdk);
    let base = Utc::now() - Duration::minutes(30);
    let day = base.format("%Y-%m-%d").to_string();
    let mut ids = Vec::new();
    let requests: Vec<WriteRequest> = (0..1000)
        .map(|n| {
            let id = uuid::Uuid::new_v4().to_string();
            let time = keysmith::audit::format_time(base + Duration::milliseconds(n));
            ids.push(id.clone());
            let partition = if n % 10 == 0 {
                day.clone()
            } else {
                keysmith::audit::partition(&day, &id)
            };
            let s = |v: &str| AttributeValue::S(v.to_owned());
            let item = HashMap::from([
                ("day".to_owned(), s(&partition)),
                ("sk".to_owned(), s(&format!("{time}#{id}"))),
                ("id".to_owned(), s(&id)),
                ("time".to_owned(), s(&time)),
                ("event".to_owned(), s("Bulk")),
                ("user_agent".to_owned(), s(&"u".repeat(10_240))),
            ]);
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                .build()
        })
        .collect();
    for chunk in requests.chunks(25) {
        db.batch_write_item()
            .request_items(&t.audit_table, chunk.to_vec())
            .send()
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let cursor = next
            .as_ref()
            .map(|n| format!("&next={}", n.replace('#', "%23")))
            .unwrap_or_default();
        let (s, page) = get(&t, &format!("event=Bulk&limit=1000{cursor}")).await;
        assert_eq!(
            s,
            200,
            "{}",
            &page.to_string()[..200.min(page.to_string().len())]
        );
        let body = page.to_string();
        assert!(body.len() <= PAGE_BYTES + 64 * 1024, "{} bytes", body.len());
        pages += 1;
        let items = page["items"].as_array().unwrap();
        seen.extend(items.iter().map(|i| {
            (
                i["time"].as_str().unwrap().to_owned(),
                i["id"].as_str().unwrap().to_owned(),
            )
        }));
        match page["next"].as_str() {
            Some(n) => next = Some(n.to_owned()),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert!(pages >= 3, "10 MB cannot come in {pages} page(s)");
    assert_eq!(seen.len(), 1000, "every item once");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first across shards and pages");
    let mut found: Vec<&String> = seen.iter().map(|(_, id)| id).collect();
    found.sort();
    ids.sort();
    assert_eq!(found, ids.iter().collect::<Vec<_>>());
}
