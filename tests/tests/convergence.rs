//! Issue 22, SPEC §6a: rotation that can never be wedged or emptied. One test per acceptance
//! bullet, asserting what moto holds (the user's keys, the secret's stages, the audit items); the
//! fault proxy plays what moto cannot (a third key, DynamoDB's idempotency check, a refused put).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use keysmith::rotation::{RotationError, Rotator, Step};
use keysmith_tests::api::{TestApp, ADMIN};
use keysmith_tests::aws::caller_arn;
use keysmith_tests::moto::Moto;
use keysmith_tests::proxy::{CaptureProxy, Fault, Rewriter};
use keysmith_tests::rotation::{event, origin, rotate, rotation_lambda, start_rotation, Snapshot};
use serde_json::{json, Value};

struct Fx {
    t: TestApp,
    lambda: String,
    secret: String,
    user: String,
    keys: Vec<(String, String)>,
}

type Item = HashMap<String, AttributeValue>;

impl Fx {
    /// A user with `start_keys` keys, bound (by the secret's name) to a secret holding the first
    /// key under the given field names.
    async fn new(mode: &str, start_keys: usize, fields: (&str, &str)) -> Fx {
        let t = TestApp::new().await;
        let lambda = rotation_lambda(Moto::shared(), &t.sdk).await;
        let user = format!("cv-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let iam = aws_sdk_iam::Client::new(&t.sdk);
        iam.create_user().user_name(&user).send().await.unwrap();
        let mut keys = Vec::new();
        for _ in 0..start_keys {
            let k = iam
                .create_access_key()
                .user_name(&user)
                .send()
                .await
                .unwrap()
                .access_key
                .unwrap();
            keys.push((k.access_key_id, k.secret_access_key));
        }
        let name = format!("keysmith/{user}");
        keysmith_tests::aws::bind(&t.sdk, &user, &name).await;
        let value =
            json!({"user_name": user, fields.0: keys[0].0, fields.1: keys[0].1, "mode": mode});
        let secret = create_secret(&t, &name, &value).await;
        Fx {
            t,
            lambda,
            secret,
            user,
            keys,
        }
    }

    async fn canonical(mode: &str, start_keys: usize) -> Fx {
        Fx::new(mode, start_keys, ("access_key_id", "secret_access_key")).await
    }

    async fn start(&self) -> String {
        start_rotation(&self.t.sdk, &self.secret, &self.lambda).await
    }

    async fn snapshot(&self) -> Snapshot {
        Snapshot::take(&self.t.sdk, &self.t.sdk, &self.secret, &self.user).await
    }

    fn rotator(&self) -> Rotator {
        self.t
            .app
            .rotator
            .clone()
            .with_test_timeout(Duration::from_millis(500))
    }

    /// A rotator whose every AWS call goes through `proxy`.
    async fn via(&self, proxy: &CaptureProxy) -> Rotator {
        TestApp::with_tables(
            Moto::fast_sdk_config_at(&proxy.endpoint).await,
            &self.t.state_table,
            &self.t.audit_table,
        )
        .app
        .rotator
        .with_test_timeout(Duration::from_millis(500))
    }

    async fn step(&self, r: &Rotator, step: Step, token: &str) -> Result<(), RotationError> {
        r.run(&event(step, &self.secret, token), &origin()).await
    }

    async fn pending_key(&self, token: &str) -> String {
        let out = aws_sdk_secretsmanager::Client::new(&self.t.sdk)
            .get_secret_value()
            .secret_id(&self.secret)
            .version_id(token)
            .version_stage("AWSPENDING")
            .send()
            .await
            .unwrap();
        let v: Value = serde_json::from_str(out.secret_string().unwrap()).unwrap();
        v["access_key_id"].as_str().unwrap().to_owned()
    }

    async fn delete_key(&self, id: &str) {
        aws_sdk_iam::Client::new(&self.t.sdk)
            .delete_access_key()
            .user_name(&self.user)
            .access_key_id(id)
            .send()
            .await
            .unwrap();
    }

    /// This secret's audit items with `event`.
    async fn items(&self, event: &str) -> Vec<Item> {
        self.t
            .audit_items()
            .await
            .into_iter()
            .filter(|i| {
                i["event"].as_s().unwrap() == event
                    && (i["message"].as_s().unwrap().contains(&self.secret)
                        || i.get("lease_id")
                            .and_then(|l| l.as_s().ok())
                            .is_some_and(|l| l.starts_with(&self.secret)))
            })
            .collect()
    }

    async fn works(&self, id: &str, secret: &str) -> bool {
        caller_arn(Moto::shared(), id, secret, None)
            .await
            .is_ok_and(|a| a.ends_with(&format!(":user/{}", self.user)))
    }

    /// The user's key ids, sorted.
    async fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = aws_sdk_iam::Client::new(&self.t.sdk)
            .list_access_keys()
            .user_name(&self.user)
            .send()
            .await
            .unwrap()
            .access_key_metadata
            .into_iter()
            .filter_map(|k| k.access_key_id)
            .collect();
        ids.sort();
        ids
    }

    /// A rotation policy for this secret, requested now (rotate-now), then one scheduled run.
    async fn rotate_now_then_scheduled_run(&self) -> keysmith::jobs::RunReport {
        let name = format!("p{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let body = json!({"secret_id": self.secret, "interval_days": 30}).to_string();
        let path = format!("/v1/rotations/{name}");
        let (s, b) = self.t.call("PUT", &path, Some(&body), Some(ADMIN)).await;
        assert_eq!(s, 201, "{b}");
        let (s, b) = self
            .t
            .call("POST", &format!("{path}/rotate"), None, Some(ADMIN))
            .await;
        assert_eq!(s, 202, "{b}");
        let o = keysmith::audit::Origin {
            principal: "keysmith:scheduled-rotation".into(),
            ..Default::default()
        };
        let report = keysmith::jobs::run_rotations(&self.t.app, chrono::Utc::now(), &o)
            .await
            .unwrap();
        assert_eq!(report.rotated.len(), 1, "{:?}", report.failed);
        report
    }
}

async fn create_secret(t: &TestApp, name: &str, value: &Value) -> String {
    aws_sdk_secretsmanager::Client::new(&t.sdk)
        .create_secret()
        .name(name)
        .secret_string(value.to_string())
        .send()
        .await
        .unwrap()
        .arn
        .unwrap()
}

fn has_pending(s: &Snapshot) -> bool {
    s.stages
        .values()
        .any(|st| st.iter().any(|x| x == "AWSPENDING"))
}

/// Hook `createSecret`, pending key deleted out of band, then rotate-now and one scheduled run:
/// a new working key, neither the old nor the deleted one; one `Abandoned` item.
#[tokio::test]
async fn a_deleted_pending_key_is_abandoned_and_rotate_now_rotates_afresh() {
    let f = Fx::canonical("replace", 1).await;
    let token = f.start().await;
    f.step(&f.rotator(), Step::Create, &token).await.unwrap();
    let gone = f.pending_key(&token).await;
    f.delete_key(&gone).await;
    f.rotate_now_then_scheduled_run().await;
    let s = f.snapshot().await;
    let (id, secret) = s.current_key();
    assert!(id != gone && id != f.keys[0].0, "{id}");
    assert!(f.works(id, secret).await);
    assert!(!has_pending(&s), "{:?}", s.stages);
    let abandoned = f.items("Access Key Rotation Abandoned").await;
    assert_eq!(abandoned.len(), 1, "{abandoned:?}");
    assert_eq!(abandoned[0]["level"].as_s().unwrap(), "WARN");
    assert!(abandoned[0]["message"].as_s().unwrap().contains(&gone));
}

/// The hook dies after `createSecret` (its key exists): one scheduled run finishes that version.
#[tokio::test]
async fn a_scheduled_run_finishes_the_version_a_dead_hook_left() {
    let f = Fx::canonical("graceful", 1).await;
    let token = f.start().await;
    f.step(&f.rotator(), Step::Create, &token).await.unwrap();
    let pending = f.pending_key(&token).await;
    let report = f.rotate_now_then_scheduled_run().await;
    assert_eq!(report.rotated[0].1.new_access_key_id, pending);
    let s = f.snapshot().await;
    assert_eq!(s.stages[&token], ["AWSCURRENT"], "{:?}", s.stages);
    assert_eq!(s.current_key().0, pending);
    assert!(f.works(&pending, s.current_key().1).await);
    assert!(f.items("Access Key Rotation Abandoned").await.is_empty());
    assert_eq!(s.keys.len(), 2, "graceful keeps the old key: {:?}", s.keys);
}

/// The pending key deleted between `testSecret` and `finishSecret`: `AWSCURRENT` unchanged and
/// working, no key deleted.
#[tokio::test]
async fn a_pending_key_gone_at_finish_moves_nothing_and_deletes_nothing() {
    let f = Fx::canonical("replace", 1).await;
    let r = f.rotator();
    let token = f.start().await;
    for step in [Step::Create, Step::Set, Step::Test] {
        f.step(&r, step, &token).await.unwrap();
    }
    let before = f.snapshot().await;
    let gone = f.pending_key(&token).await;
    f.delete_key(&gone).await;
    let err = f.step(&r, Step::Finish, &token).await.unwrap_err();
    assert!(matches!(err, RotationError::Abandoned { .. }), "{err}");
    let s = f.snapshot().await;
    assert_eq!(s.current, before.current, "AWSCURRENT unchanged");
    assert_eq!(f.key_ids().await, [f.keys[0].0.clone()], "no key deleted");
    assert!(f.works(&f.keys[0].0, &f.keys[0].1).await);
    assert!(!has_pending(&s));
}

/// DynamoDB refuses a `ClientRequestToken` reused with other items for 10 minutes; moto does not,
/// so the proxy does it. The same step delivered twice: one audit item, no failure item.
#[tokio::test]
async fn the_same_step_delivered_twice_writes_one_audit_item() {
    let f = Fx::canonical("replace", 1).await;
    let proxy = CaptureProxy::start(&Moto::shared().endpoint).await;
    let seen: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    proxy.set_faults(Some(Arc::new(move |r| {
        if r.operation() != "TransactWriteItems" {
            return Fault::Pass;
        }
        let body: Value = serde_json::from_str(&r.body).unwrap_or_default();
        let Some(token) = body["ClientRequestToken"].as_str() else {
            return Fault::Pass;
        };
        let mut seen = seen.lock().unwrap();
        match seen.get(token) {
            Some(earlier) if *earlier != r.body => Fault::Answer(
                400,
                json!({"__type": "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
                    "message": "the token was used with another request"})
                .to_string(),
            ),
            _ => {
                seen.insert(token.to_owned(), r.body.clone());
                Fault::Pass
            }
        }
    })));
    let r = f.via(&proxy).await;
    let token = f.start().await;
    for step in [
        Step::Create,
        Step::Create,
        Step::Set,
        Step::Test,
        Step::Test,
    ] {
        f.step(&r, step, &token).await.unwrap();
    }
    let steps = f.items("Access Key Rotation Step").await;
    for step in ["#createSecret", "#testSecret"] {
        let n = steps
            .iter()
            .filter(|i| i["lease_id"].as_s().unwrap().ends_with(step))
            .count();
        assert_eq!(n, 1, "{step}: {steps:?}");
    }
    assert!(f.items("Access Key Rotation Failed").await.is_empty());
}

/// A secret deleted and re-created under the same name: no key of the bound user is written into
/// it, and the attempt is audited as a binding failure.
#[tokio::test]
async fn a_recreated_secret_of_the_same_name_gets_no_key() {
    let f = Fx::canonical("replace", 1).await;
    let token = f.start().await;
    rotate(&f.rotator(), &f.secret, &token).await.unwrap();
    let keys = f.key_ids().await;
    let sm = aws_sdk_secretsmanager::Client::new(&f.t.sdk);
    sm.delete_secret()
        .secret_id(&f.secret)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    let name = format!("keysmith/{}", f.user);
    let impostor = create_secret(&f.t, &name, &json!({"user_name": f.user})).await;
    assert_ne!(impostor, f.secret);
    let token = start_rotation(&f.t.sdk, &impostor, &f.lambda).await;
    let err = f
        .rotator()
        .run(&event(Step::Create, &impostor, &token), &origin())
        .await
        .unwrap_err();
    assert!(matches!(err, RotationError::Unbound { .. }), "{err}");
    let pending = sm
        .get_secret_value()
        .secret_id(&impostor)
        .version_id(&token)
        .version_stage("AWSPENDING")
        .send()
        .await;
    assert!(pending.is_err(), "nothing was written into the impostor");
    assert_eq!(f.key_ids().await, keys, "the user's keys are unchanged");
    let failed: Vec<String> =
        f.t.audit_items()
            .await
            .iter()
            .filter(|i| i["event"].as_s().unwrap() == "Access Key Rotation Failed")
            .map(|i| i["message"].as_s().unwrap().clone())
            .filter(|m| m.contains(&impostor))
            .collect();
    assert!(
        failed.iter().any(|m| m.contains("UserNotBound")),
        "{failed:?}"
    );
}

const PHANTOM: &str = "AKIAPHANTOMKEY000001";

/// IAM's two-key limit is not atomic; moto's is. The proxy plays IAM after a burst: once the
/// rotation's `CreateAccessKey` ran, the user also has a third key, until it is deleted.
#[tokio::test]
async fn a_third_key_after_create_access_key_is_deleted_and_audited() {
    let f = Fx::canonical("graceful", 1).await;
    let proxy = CaptureProxy::start(&Moto::shared().endpoint).await;
    let (created, deleted) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let user = f.user.clone();
    let rewrite = Rewriter(Arc::new(|body: &str| {
        let member = format!("<member><UserName>x</UserName><AccessKeyId>{PHANTOM}</AccessKeyId><Status>Active</Status><CreateDate>{}</CreateDate></member>",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"));
        body.replacen(
            "</AccessKeyMetadata>",
            &format!("{member}</AccessKeyMetadata>"),
            1,
        )
    }));
    proxy.set_faults(Some(Arc::new(move |r| {
        let for_user = r.form("UserName").as_deref() == Some(user.as_str());
        match r.operation().as_str() {
            "CreateAccessKey" if for_user => {
                created.store(true, Ordering::SeqCst);
                Fault::Pass
            }
            "ListAccessKeys" if for_user && created.load(Ordering::SeqCst) && !deleted.load(Ordering::SeqCst) => {
                Fault::Rewrite(rewrite.clone())
            }
            "DeleteAccessKey" if r.form("AccessKeyId").as_deref() == Some(PHANTOM) => {
                deleted.store(true, Ordering::SeqCst);
                Fault::Answer(200, "<DeleteAccessKeyResponse><ResponseMetadata><RequestId>x</RequestId></ResponseMetadata></DeleteAccessKeyResponse>".into())
            }
            _ => Fault::Pass,
        }
    })));
    let token = f.start().await;
    rotate(&f.via(&proxy).await, &f.secret, &token)
        .await
        .unwrap();
    let deletes: Vec<String> = proxy
        .requests()
        .iter()
        .filter(|r| r.operation() == "DeleteAccessKey")
        .filter_map(|r| r.form("AccessKeyId"))
        .collect();
    assert_eq!(deletes, [PHANTOM], "only the third key was deleted");
    let s = f.snapshot().await;
    assert!(s.keys.len() <= 2, "{:?}", s.keys);
    let (id, secret) = s.current_key();
    assert!(f.works(id, secret).await, "the current key is intact");
    assert!(
        s.keys.contains_key(&f.keys[0].0),
        "graceful keeps AWSPREVIOUS"
    );
    let audited = f.items("Orphan Access Key Deleted").await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0]["access_key_id"].as_s().unwrap(), PHANTOM);
}

/// A key nobody recorded (a shadow): outside `replace` it is reported (`ERROR`) and never
/// deleted, and when it leaves no room the rotation says which keys and which mode would make it;
/// `replace` deletes it, audited.
#[tokio::test]
async fn a_shadow_key_is_reported_outside_replace_and_deleted_audited_in_replace() {
    let f = Fx::canonical("graceful", 2).await;
    let shadow = f.keys[1].0.clone();
    let before = f.key_ids().await;
    let token = f.start().await;
    let err = f
        .step(&f.rotator(), Step::Create, &token)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RotationError::NoRoom { .. }), "{err}");
    for part in [f.keys[0].0.as_str(), shadow.as_str(), "replace"] {
        assert!(text.contains(part), "{text}");
    }
    assert_eq!(f.key_ids().await, before, "nothing deleted");
    let detected = f.items("Shadow Access Key Detected").await;
    assert_eq!(detected.len(), 1, "{detected:?}");
    assert_eq!(detected[0]["level"].as_s().unwrap(), "ERROR");
    assert_eq!(detected[0]["access_key_id"].as_s().unwrap(), &shadow);

    let f = Fx::canonical("replace", 2).await;
    let shadow = f.keys[1].0.clone();
    let token = f.start().await;
    rotate(&f.rotator(), &f.secret, &token).await.unwrap();
    assert!(!f.key_ids().await.contains(&shadow));
    let deleted = f.items("Shadow Access Key Deleted").await;
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0]["level"].as_s().unwrap(), "WARN");
    assert_eq!(deleted[0]["access_key_id"].as_s().unwrap(), &shadow);
}

/// `PutSecretValue` denied at `createSecret`: the user's keys are exactly those before it.
#[tokio::test]
async fn a_refused_put_leaves_the_users_keys_as_they_were() {
    for mode in ["replace", "graceful"] {
        let f = Fx::canonical(mode, 1).await;
        let proxy = CaptureProxy::start(&Moto::shared().endpoint).await;
        proxy.set_faults(Some(Arc::new(|r| {
            if r.operation() == "PutSecretValue" {
                Fault::Denied
            } else {
                Fault::Pass
            }
        })));
        let before = f.key_ids().await;
        let token = f.start().await;
        let err = f.step(&f.via(&proxy).await, Step::Create, &token).await;
        assert!(err.is_err(), "{mode}");
        let created = proxy
            .requests()
            .iter()
            .filter(|r| r.operation() == "CreateAccessKey")
            .count();
        assert_eq!(created, 1, "{mode}: the attempt made a key");
        assert_eq!(f.key_ids().await, before, "{mode}");
    }
}

/// Secrets in the `AccessKeyId` and `aws_access_key_id` spellings, with one and with two keys,
/// rotate like the canonical spelling; the live key outlives `createSecret`.
#[tokio::test]
async fn every_key_spelling_rotates_like_the_canonical_one() {
    for fields in [
        ("AccessKeyId", "SecretAccessKey"),
        ("aws_access_key_id", "aws_secret_access_key"),
    ] {
        for start_keys in [1, 2] {
            let f = Fx::new("replace", start_keys, fields).await;
            let r = f.rotator();
            let token = f.start().await;
            f.step(&r, Step::Create, &token).await.unwrap();
            assert!(
                f.key_ids().await.contains(&f.keys[0].0),
                "{fields:?}/{start_keys}: the live key survives createSecret"
            );
            for step in [Step::Set, Step::Test, Step::Finish] {
                f.step(&r, step, &token).await.unwrap();
            }
            let s = f.snapshot().await;
            let (id, secret) = s.current_key();
            assert!(
                id.starts_with("AKIA") && id != f.keys[0].0,
                "{:?}",
                s.current
            );
            assert!(f.works(id, secret).await);
            assert!(s.current.get(fields.0).is_none() && s.current.get(fields.1).is_none());
            assert_eq!(
                f.key_ids().await,
                [id.to_owned()],
                "{fields:?}/{start_keys}"
            );
            let previous = s.previous.unwrap();
            assert_eq!(previous[fields.0], f.keys[0].0.as_str());
        }
    }
}

/// The same `createSecret` delivered twice at once, 20 times: never a second key, never a failure
/// item for the duplicate.
#[tokio::test]
async fn a_create_secret_delivered_twice_at_once_makes_one_key() {
    for trial in 0..20 {
        let f = Fx::canonical("replace", 1).await;
        let r = f.rotator();
        let token = f.start().await;
        let e = event(Step::Create, &f.secret, &token);
        let (a, b) = (
            keysmith::audit::Origin {
                request_id: format!("first-{trial}"),
                ..origin()
            },
            keysmith::audit::Origin {
                request_id: format!("second-{trial}"),
                ..origin()
            },
        );
        let (one, two) = tokio::join!(r.run(&e, &a), r.run(&e, &b));
        assert!(one.is_ok() && two.is_ok(), "{trial}: {one:?} {two:?}");
        let keys = f.key_ids().await;
        assert_eq!(keys.len(), 2, "{trial}: one new key: {keys:?}");
        assert!(keys.contains(&f.pending_key(&token).await));
        assert!(f.items("Access Key Rotation Failed").await.is_empty());
        assert_eq!(f.items("Access Key Rotation Step").await.len(), 1);
    }
}

/// IAM compares user names case-insensitively and STS answers with IAM's spelling: a secret
/// whose `user_name` differs in case still passes `testSecret`. moto is case-sensitive, so the
/// proxy answers `GetCallerIdentity` with another spelling.
#[tokio::test]
async fn a_user_name_in_another_case_passes_test_secret() {
    let f = Fx::canonical("replace", 1).await;
    let proxy = CaptureProxy::start(&Moto::shared().endpoint).await;
    let (from, to) = (
        format!(":user/{}", f.user),
        format!(":user/{}", f.user.to_uppercase()),
    );
    let rewrite = Rewriter(Arc::new(move |body: &str| body.replace(&from, &to)));
    proxy.set_faults(Some(Arc::new(move |r| {
        if r.operation() == "GetCallerIdentity" {
            Fault::Rewrite(rewrite.clone())
        } else {
            Fault::Pass
        }
    })));
    let token = f.start().await;
    rotate(&f.via(&proxy).await, &f.secret, &token)
        .await
        .unwrap();
    assert_eq!(f.snapshot().await.stages[&token], ["AWSCURRENT"]);
}
