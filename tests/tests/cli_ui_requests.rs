//! Approving an access request (SPEC §12) through `keysmith ui` in a real headless browser.

use keysmith_tests::browser::{self, shown, Page};
use keysmith_tests::cli::CliStack;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approver_approves_a_request_through_the_page() {
    let s = CliStack::start().await;
    let sdk = s.moto.sdk_config().await;
    let role =
        keysmith_tests::aws::assumable_role(&sdk, "/keysmith/", &format!("guarded-{}", s.id)).await;
    s.put_profile(
        "guarded",
        &json!({"credential_type": "assumed_role", "role_arn": role,
            "allowed_principals": [s.alice.arn],
            "approval": {"approvers": [s.admin.arn], "min_approvals": 1}}),
    );
    let (status, request) = s
        .signed(
            &s.alice,
            "POST",
            "/v1/requests",
            Some(&json!({"profile": "guarded", "reason": "hotfix for the checkout outage"})),
        )
        .await;
    assert_eq!(status, 201, "{request}");
    let id = request["request_id"].as_str().unwrap().to_owned();
    let digest = request["digest"].as_str().unwrap().to_owned();

    let page = Page::start(&s, &s.admin);
    let dir = browser::screenshot_dir();
    let shot = |name: &str| json!({"screenshot": dir.join(name).display().to_string()});
    let row = format!("[data-request=\"{id}\"]");
    let steps = vec![
        json!({"goto": page.view("requests")}),
        shown("requests", &["enabled"]),
        json!({"wait": format!("!!document.querySelector('{row}')")}),
        json!({"eval": format!("document.querySelector('{row}').innerText")}),
        shot("requests-pending.png"),
        json!({"type": [format!("{row} input.comment"), "looks right"]}),
        json!({"click": format!("{row} button.approve")}),
        json!({"wait": format!("document.getElementById('status').textContent.includes('Approved request {id}')")}),
        shot("requests-approved.png"),
    ];
    let results = tokio::task::block_in_place(|| browser::run(&steps));
    let shown_row = results[0].as_str().unwrap();
    assert!(
        shown_row.contains(&digest) && shown_row.contains("hotfix for the checkout outage"),
        "{shown_row}"
    );
    let (status, after) = s
        .signed(&s.alice, "GET", &format!("/v1/requests/{id}"), None)
        .await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["status"], "approved", "{after}");
    s.scan();
}
