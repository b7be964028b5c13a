//! The rotation engine through the Secrets Manager protocol, against moto: every mode from one and
//! from two keys, repeated steps, guards, superseded rotations, a crash after every AWS call, self-
//! and cross-account rotation.

use aws_config::SdkConfig;
use keysmith::rotation::{RotationError, Rotator, Step};
use keysmith_tests::api::TestApp;
use keysmith_tests::aws::{allow_all, caller_arn};
use keysmith_tests::moto::Moto;
use keysmith_tests::proxy::{CaptureProxy, Captured};
use keysmith_tests::rotation::{
    crash_after, event, origin, rotate, rotation_lambda, start_rotation, Snapshot, STEPS,
};
use serde_json::{json, Value};

struct Fixture {
    t: TestApp,
    lambda: String,
    secret: String,
    user: String,
    /// The keys the user started with, oldest first: (id, secret).
    keys: Vec<(String, String)>,
}

impl Fixture {
    /// A user with `start_keys` keys; the secret records the first one.
    async fn new(
        t: TestApp,
        lambda: String,
        mode: &str,
        start_keys: usize,
        extra: Value,
    ) -> Fixture {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let user = format!("rot-{}", &id[..12]);
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
        keysmith_tests::aws::bind(&t.sdk, &user, &format!("keysmith/{user}")).await;
        let value = |key: &(String, String)| {
            let mut value = json!({"user_name": user, "access_key_id": key.0, "secret_access_key": key.1,
                "mode": mode, "owner": "platform-team"});
            if let (Some(v), Some(e)) = (value.as_object_mut(), extra.as_object()) {
                v.extend(e.clone());
            }
            value.to_string()
        };
        // SPEC §6a: graceful never deletes a key no version records; its second key is the one
        // an earlier rotation kept as AWSPREVIOUS. Elsewhere the second key is unrecorded.
        let first = if mode == "graceful" && start_keys == 2 {
            &keys[1]
        } else {
            &keys[0]
        };
        let sm = aws_sdk_secretsmanager::Client::new(&t.sdk);
        let out = sm
            .create_secret()
            .name(format!("keysmith/{user}"))
            .secret_string(value(first))
            .send()
            .await
            .unwrap();
        if first.0 != keys[0].0 {
            sm.put_secret_value()
                .secret_id(out.arn.clone().unwrap())
                .secret_string(value(&keys[0]))
                .send()
                .await
                .unwrap();
        }
        Fixture {
            t,
            lambda,
            secret: out.arn.unwrap(),
            user,
            keys,
        }
    }

    async fn start(&self) -> String {
        start_rotation(&self.t.sdk, &self.secret, &self.lambda).await
    }

    async fn snapshot(&self) -> Snapshot {
        Snapshot::take(&self.t.sdk, &self.t.sdk, &self.secret, &self.user).await
    }

    fn rotator(&self) -> Rotator {
        self.t.app.rotator.clone()
    }
}

async fn shared() -> (TestApp, String) {
    let t = TestApp::new().await;
    let lambda = rotation_lambda(Moto::shared(), &t.sdk).await;
    (t, lambda)
}

/// After a finished rotation: AWSCURRENT works, AWSPREVIOUS holds the old key, at most two keys,
/// every key is recorded, and the old key is gone (replace, delete_first) or still active (graceful).
async fn assert_rotated(f: &Fixture, mode: &str, moto: &Moto, iam_sdk: &SdkConfig) {
    let s = Snapshot::take(&f.t.sdk, iam_sdk, &f.secret, &f.user).await;
    let (id, secret) = s.current_key();
    assert_ne!(id, f.keys[0].0, "a new key is current");
    let arn = caller_arn(moto, id, secret, None)
        .await
        .expect("AWSCURRENT must work");
    assert!(arn.ends_with(&format!(":user/{}", f.user)), "{arn}");
    assert!(s.keys.len() <= 2, "{:?}", s.keys);
    let previous = s.previous.as_ref().expect("AWSPREVIOUS exists");
    assert_eq!(
        previous["access_key_id"],
        f.keys[0].0.as_str(),
        "AWSPREVIOUS holds the old key"
    );
    let recorded: Vec<&str> = [
        Some(id),
        if mode == "graceful" {
            previous["access_key_id"].as_str()
        } else {
            None
        },
    ]
    .into_iter()
    .flatten()
    .collect();
    for key in s.keys.keys() {
        assert!(
            recorded.contains(&key.as_str()),
            "unrecorded key {key} left: {:?}",
            s.keys
        );
    }
    let old_active = s.keys.get(&f.keys[0].0).map(String::as_str) == Some("Active");
    assert_eq!(
        old_active,
        mode == "graceful",
        "old key in {mode} mode: {:?}",
        s.keys
    );
    assert_eq!(s.current["owner"], "platform-team", "other fields are kept");
    assert_eq!(s.current["mode"], mode);
    assert!(s.current["created_at"].as_str().is_some());
    assert!(s.current["removed_access_key_ids"].is_array());
    assert!(
        !s.stages
            .values()
            .any(|st| st.iter().any(|x| x == "AWSPENDING")),
        "no rotation left in progress: {:?}",
        s.stages
    );
}

#[tokio::test]
async fn every_mode_rotates_from_one_and_from_two_keys() {
    let (t, lambda) = shared().await;
    let moto = Moto::shared();
    for mode in ["replace", "graceful", "delete_first"] {
        for start_keys in [1, 2] {
            let f = Fixture::new(
                TestApp::with_tables(t.sdk.clone(), &t.state_table, &t.audit_table),
                lambda.clone(),
                mode,
                start_keys,
                json!({}),
            )
            .await;
            let token = f.start().await;
            rotate(&f.rotator(), &f.secret, &token)
                .await
                .unwrap_or_else(|e| panic!("{mode}/{start_keys}: {e}"));
            assert_rotated(&f, mode, moto, &f.t.sdk).await;
            if start_keys == 2 {
                let s = f.snapshot().await;
                assert!(
                    !s.keys.contains_key(&f.keys[1].0),
                    "{mode}: the second key made room"
                );
            }
        }
    }
    // Graceful, twice: the first key goes, the second stays as AWSPREVIOUS.
    let f = Fixture::new(
        TestApp::with_tables(t.sdk.clone(), &t.state_table, &t.audit_table),
        lambda.clone(),
        "graceful",
        1,
        json!({}),
    )
    .await;
    rotate(&f.rotator(), &f.secret, &f.start().await)
        .await
        .unwrap();
    let second = f.snapshot().await.current_key().0.to_owned();
    rotate(&f.rotator(), &f.secret, &f.start().await)
        .await
        .unwrap();
    let s = f.snapshot().await;
    assert!(!s.keys.contains_key(&f.keys[0].0));
    assert_eq!(s.keys.get(&second).map(String::as_str), Some("Active"));
    assert_eq!(s.previous.unwrap()["access_key_id"], second.as_str());
    // The rotation is in the audit trail, without secrets.
    let items = t.audit_items().await;
    let rotated: Vec<_> = items
        .iter()
        .filter(|i| i["event"].as_s().unwrap() == "Access Key Rotated")
        .collect();
    let first_rotation = format!("rotated: {} -> {second}", f.keys[0].0);
    assert!(
        rotated
            .iter()
            .any(|i| i["message"].as_s().unwrap().contains(&first_rotation)),
        "{rotated:?}"
    );
    assert!(!format!("{items:?}").contains(&f.keys[0].1));
}

#[tokio::test]
async fn each_step_run_twice_gives_the_state_of_once() {
    let (t, lambda) = shared().await;
    for mode in ["replace", "graceful", "delete_first"] {
        let f = Fixture::new(
            TestApp::with_tables(t.sdk.clone(), &t.state_table, &t.audit_table),
            lambda.clone(),
            mode,
            2,
            json!({}),
        )
        .await;
        let token = f.start().await;
        let r = f.rotator();
        for step in STEPS {
            r.run(&event(step, &f.secret, &token), &origin())
                .await
                .unwrap();
            let once = f.snapshot().await;
            r.run(&event(step, &f.secret, &token), &origin())
                .await
                .unwrap();
            assert_eq!(f.snapshot().await, once, "{mode}: {step:?} twice");
        }
        assert_rotated(&f, mode, Moto::shared(), &f.t.sdk).await;
    }
}

#[tokio::test]
async fn guards_refuse_what_secrets_manager_would_not_send() {
    let (t, lambda) = shared().await;
    let f = Fixture::new(t, lambda, "replace", 1, json!({})).await;
    let r = f.rotator();
    let err = r
        .run(
            &event(Step::Create, &f.secret, &uuid::Uuid::new_v4().to_string()),
            &origin(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RotationError::NotEnabled(_)), "{err}");
    let token = f.start().await;
    let err = r
        .run(
            &event(Step::Create, &f.secret, &uuid::Uuid::new_v4().to_string()),
            &origin(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RotationError::UnknownToken { .. }), "{err}");
    rotate(&r, &f.secret, &token).await.unwrap();
    let done = f.snapshot().await;
    for step in STEPS {
        r.run(&event(step, &f.secret, &token), &origin())
            .await
            .unwrap();
    }
    assert_eq!(
        f.snapshot().await,
        done,
        "an already-current token changes nothing"
    );
    // The original version is AWSPREVIOUS now: not pending, not current.
    let first = done
        .stages
        .iter()
        .find(|(_, s)| s.contains(&"AWSPREVIOUS".to_owned()))
        .unwrap()
        .0
        .clone();
    let err = r
        .run(&event(Step::Create, &f.secret, &first), &origin())
        .await
        .unwrap_err();
    assert!(matches!(err, RotationError::NotPending { .. }), "{err}");
}

#[tokio::test]
async fn a_new_rotation_supersedes_an_unfinished_one() {
    let (t, lambda) = shared().await;
    let f = Fixture::new(t, lambda, "replace", 1, json!({})).await;
    let r = f.rotator();
    let abandoned = f.start().await;
    r.run(&event(Step::Create, &f.secret, &abandoned), &origin())
        .await
        .unwrap();
    let s = f.snapshot().await;
    assert_eq!(s.keys.len(), 2, "the abandoned rotation's key exists");
    // Secrets Manager starts over with a new token; AWSPENDING moves to it.
    let token = f.start().await;
    rotate(&r, &f.secret, &token).await.unwrap();
    assert_rotated(&f, "replace", Moto::shared(), &f.t.sdk).await;
    // The abandoned version is not pending any more: its steps are refused.
    let err = r
        .run(&event(Step::Finish, &f.secret, &abandoned), &origin())
        .await
        .unwrap_err();
    assert!(matches!(err, RotationError::NotPending { .. }), "{err}");
}

/// Runs a rotation through the fault proxy with the process dying after call number `crash_at`
/// (0-based, over all steps), then the whole rotation again as Secrets Manager would retry it;
/// returns the operations of the crashed run (of the whole run when nothing crashed).
async fn crash_and_retry(
    f: &Fixture,
    proxy: &CaptureProxy,
    via_proxy: &Rotator,
    token: &str,
    crash_at: Option<usize>,
) -> Vec<String> {
    let from = proxy.requests().len();
    proxy.set_faults(crash_at.map(crash_after));
    let first = rotate(via_proxy, &f.secret, token).await;
    proxy.set_faults(None);
    let crashed_requests: Vec<Captured> = proxy.requests()[from..].to_vec();
    let crashed: Vec<String> = crashed_requests.iter().map(|r| r.operation()).collect();
    // What reached AWS: the calls up to the crash point, then all of the retry's.
    let mut reached = match crash_at {
        None => {
            first.unwrap();
            crashed.clone()
        }
        Some(at) => {
            assert!(first.is_err(), "a crash after call {at} must fail the run");
            assert!(
                at < crashed.len(),
                "the run ended before call {at}: {first:?} {crashed:?}"
            );
            crashed[..=at].to_vec()
        }
    };
    let mut reached_requests: Vec<Captured> = match crash_at {
        None => crashed_requests.clone(),
        Some(at) => crashed_requests[..=at.min(crashed_requests.len() - 1)].to_vec(),
    };
    if let Some(at) = crash_at {
        let retry_from = proxy.requests().len();
        rotate(via_proxy, &f.secret, token)
            .await
            .unwrap_or_else(|e| panic!("retry after crash at {at} ({}): {e}", crashed[at]));
        reached.extend(proxy.requests()[retry_from..].iter().map(|r| r.operation()));
        reached_requests.extend(proxy.requests()[retry_from..].iter().cloned());
    }
    // IAM itself refuses a third key, so counting keys proves nothing: count the keys Keysmith
    // made. One, and a second only when the crash lost the first before it was recorded.
    // One per SDK invocation: the SDK's own retry of an attempt that timed out under load is the
    // same call (same `amz-sdk-invocation-id`), not a second decision to make a key.
    let created = reached_requests
        .iter()
        .filter(|r| r.operation() == "CreateAccessKey")
        .map(|r| {
            r.header("amz-sdk-invocation-id")
                .unwrap_or_default()
                .to_owned()
        })
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let lost = usize::from(crash_at.is_some_and(|at| crashed[at] == "CreateAccessKey"));
    assert_eq!(created, 1 + lost, "crash after {crash_at:?}: {reached:?}");
    crashed
}

/// Each step's audit item exactly once for this fixture's secret, and no failure item.
async fn assert_audited_once(f: &Fixture, context: &str) {
    let items = f.t.audit_items().await;
    // The steps and failures; key checks (a crashed attempt's key deleted, a shadow key) are
    // items of their own.
    let mine: Vec<_> = items
        .iter()
        .filter(|i| {
            i.get("lease_id")
                .and_then(|l| l.as_s().ok())
                .is_some_and(|l| l.starts_with(&format!("{}#", f.secret)))
                && [
                    "Access Key Rotation Step",
                    "Access Key Rotated",
                    "Access Key Rotation Failed",
                ]
                .contains(&i["event"].as_s().unwrap().as_str())
        })
        .collect();
    let count = |event: &str, step: &str| {
        mine.iter()
            .filter(|i| {
                i["event"].as_s().unwrap() == event && i["lease_id"].as_s().unwrap().ends_with(step)
            })
            .count()
    };
    assert_eq!(
        count("Access Key Rotation Step", "#createSecret"),
        1,
        "{context}: {mine:?}"
    );
    assert_eq!(
        count("Access Key Rotation Step", "#testSecret"),
        1,
        "{context}: {mine:?}"
    );
    assert_eq!(
        count("Access Key Rotated", "#finishSecret"),
        1,
        "{context}: {mine:?}"
    );
    assert_eq!(mine.len(), 3, "{context}: {mine:?}");
}

async fn crash_everywhere(mode: &str, extra: impl Fn(&Fixture) -> Value) {
    let (t, lambda) = shared().await;
    let moto = Moto::shared();
    let proxy = CaptureProxy::start(&moto.endpoint).await;
    // The rotation under test talks to AWS through the proxy; fixtures and checks go direct.
    let via_proxy = TestApp::with_tables(
        Moto::fast_sdk_config_at(&proxy.endpoint).await,
        &t.state_table,
        &t.audit_table,
    )
    .app
    .rotator
    .with_test_timeout(std::time::Duration::from_millis(300));
    for start_keys in [1, 2] {
        let new = || async {
            let f = Fixture::new(
                TestApp::with_tables(t.sdk.clone(), &t.state_table, &t.audit_table),
                lambda.clone(),
                mode,
                start_keys,
                json!({}),
            )
            .await;
            let extra = extra(&f);
            if extra.as_object().is_some_and(|e| !e.is_empty()) {
                let mut v = f.snapshot().await.current;
                v.as_object_mut()
                    .unwrap()
                    .extend(extra.as_object().unwrap().clone());
                aws_sdk_secretsmanager::Client::new(&f.t.sdk)
                    .put_secret_value()
                    .secret_id(&f.secret)
                    .secret_string(v.to_string())
                    .send()
                    .await
                    .unwrap();
            }
            f
        };
        let f = new().await;
        let token = f.start().await;
        let sites = crash_and_retry(&f, &proxy, &via_proxy, &token, None).await;
        assert!(sites.len() >= 10, "{sites:?}");
        assert_audited_once(&f, "clean run").await;
        for (at, site) in sites.iter().enumerate() {
            let f = new().await;
            let token = f.start().await;
            crash_and_retry(&f, &proxy, &via_proxy, &token, Some(at)).await;
            assert_rotated(&f, mode, moto, &f.t.sdk).await;
            assert_audited_once(&f, &format!("{mode}/{start_keys}: crash after {site}")).await;
        }
    }
}

#[tokio::test]
async fn replace_converges_after_a_crash_after_any_call() {
    crash_everywhere("replace", |_| json!({})).await;
}

#[tokio::test]
async fn graceful_converges_after_a_crash_after_any_call() {
    crash_everywhere("graceful", |_| json!({})).await;
}

#[tokio::test]
async fn delete_first_converges_after_a_crash_after_any_call() {
    crash_everywhere("delete_first", |_| json!({})).await;
}

/// The admin path's own call sites: reading `admin_secret_id` and `AssumeRole`.
#[tokio::test]
async fn rotation_through_an_admin_secret_and_role_converges_after_any_crash() {
    let admin_id = format!("keysmith/admin-{}", uuid::Uuid::new_v4().simple());
    let sdk = Moto::shared().sdk_config().await;
    let (key, secret) =
        keysmith_tests::aws::user_with_key(&sdk, &admin_id.replace('/', "-"), &allow_all()).await;
    keysmith_tests::aws::secret(
        &sdk,
        &admin_id,
        &json!({"AccessKeyId": key, "SecretAccessKey": secret}),
    )
    .await;
    let extra = json!({"admin_secret_id": admin_id, "assume_role_arn": "arn:aws:iam::123456789012:role/keysmith/rotator"});
    crash_everywhere("replace", move |_| extra.clone()).await;
}

#[tokio::test]
async fn self_rotation_signs_with_the_secrets_own_key() {
    let moto = Moto::start();
    let root = moto.sdk_config().await;
    // The function may use Secrets Manager and DynamoDB, but not IAM: every IAM call must be made
    // with the secret's own key.
    let no_iam = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["secretsmanager:*", "dynamodb:*", "sts:GetCallerIdentity"], "Resource": "*"}]});
    let (fk, fs) = keysmith_tests::aws::user_with_key(&root, "keysmith-function", &no_iam).await;
    let fn_sdk = moto
        .sdk_config_with(aws_sdk_sts::config::Credentials::new(
            &fk, &fs, None, None, "t",
        ))
        .await;
    let t = TestApp::on(&moto, fn_sdk.clone()).await;
    let lambda = rotation_lambda(&moto, &root).await;
    let iam = aws_sdk_iam::Client::new(&root);
    iam.create_user()
        .user_name("self-rotating")
        .send()
        .await
        .unwrap();
    iam.put_user_policy()
        .user_name("self-rotating")
        .policy_name("own-keys")
        .policy_document(allow_all().to_string())
        .send()
        .await
        .unwrap();
    let k = iam
        .create_access_key()
        .user_name("self-rotating")
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    keysmith_tests::aws::bind(&root, "self-rotating", "keysmith/self-rotating").await;
    let sm = aws_sdk_secretsmanager::Client::new(&root);
    let secret = sm
        .create_secret()
        .name("keysmith/self-rotating")
        .secret_string(
            json!({"user_name": "self-rotating", "access_key_id": k.access_key_id,
            "secret_access_key": k.secret_access_key, "admin_secret_id": "keysmith/self-rotating"})
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let token = start_rotation(&root, &secret, &lambda).await;
    moto.enable_auth().await;
    let denied = aws_sdk_iam::Client::new(&fn_sdk)
        .list_access_keys()
        .user_name("self-rotating")
        .send()
        .await;
    assert_eq!(
        denied
            .unwrap_err()
            .raw_response()
            .map(|r| r.status().as_u16()),
        Some(403),
        "the function has no IAM rights"
    );

    rotate(&t.app.rotator, &secret, &token).await.unwrap();
    let s = Snapshot::take(
        &fn_sdk,
        &moto_iam_sdk(&moto, &fn_sdk, &secret).await,
        &secret,
        "self-rotating",
    )
    .await;
    let (id, key) = s.current_key();
    assert_ne!(id, k.access_key_id);
    assert_eq!(
        caller_arn(&moto, id, key, None).await.unwrap(),
        "arn:aws:iam::123456789012:user/self-rotating"
    );
    assert_eq!(
        s.keys.keys().collect::<Vec<_>>(),
        [id],
        "the old key was deleted, by the new one"
    );
    assert_eq!(
        caller_arn(&moto, &k.access_key_id, &k.secret_access_key, None).await,
        Err(403)
    );
}

/// IAM credentials for inspecting a self-rotating user: its own current key.
async fn moto_iam_sdk(moto: &Moto, sdk: &SdkConfig, secret: &str) -> SdkConfig {
    let out = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(secret)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(out.secret_string().unwrap()).unwrap();
    moto.sdk_config_with(aws_sdk_sts::config::Credentials::new(
        v["access_key_id"].as_str().unwrap(),
        v["secret_access_key"].as_str().unwrap(),
        None,
        None,
        "t",
    ))
    .await
}

#[tokio::test]
async fn cross_account_rotation_goes_through_the_assumed_role() {
    let (t, lambda) = shared().await;
    let moto = Moto::shared();
    // moto keeps one backend per account: credentials of a role in account 111111111111 act there.
    let role = "arn:aws:iam::111111111111:role/keysmith-rotator";
    let assumed = aws_sdk_sts::Client::new(&t.sdk)
        .assume_role()
        .role_arn(role)
        .role_session_name("setup")
        .send()
        .await
        .unwrap();
    let c = assumed.credentials.unwrap();
    let other = moto
        .sdk_config_with(aws_sdk_sts::config::Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            None,
            "t",
        ))
        .await;
    let user = format!("xacct-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let iam = aws_sdk_iam::Client::new(&other);
    iam.create_user().user_name(&user).send().await.unwrap();
    let k = iam
        .create_access_key()
        .user_name(&user)
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    let secret = aws_sdk_secretsmanager::Client::new(&t.sdk).create_secret().name(format!("keysmith/{user}"))
        .secret_string(json!({"user_name": user, "access_key_id": k.access_key_id, "secret_access_key": k.secret_access_key,
            "assume_role_arn": role}).to_string())
        .send().await.unwrap().arn.unwrap();
    // Bound by ARN, in the account where the user lives.
    keysmith_tests::aws::bind(&other, &user, &secret).await;
    let token = start_rotation(&t.sdk, &secret, &lambda).await;
    rotate(&t.app.rotator, &secret, &token).await.unwrap();
    let s = Snapshot::take(&t.sdk, &other, &secret, &user).await;
    let (id, key) = s.current_key();
    assert_eq!(s.keys.keys().collect::<Vec<_>>(), [id]);
    assert_eq!(
        caller_arn(moto, id, key, None).await.unwrap(),
        format!("arn:aws:iam::111111111111:user/{user}")
    );
    let home = aws_sdk_iam::Client::new(&t.sdk)
        .get_user()
        .user_name(&user)
        .send()
        .await;
    assert!(home.is_err(), "the user exists only in the other account");
}

/// The built `secret-rotation` binary, driven through the Lambda Runtime API with the sample step
/// events, logging at DEBUG: the rotation completes and no secret access key reaches the logs.
#[tokio::test]
async fn the_secret_rotation_binary_rotates_without_logging_secrets() {
    let (t, lambda) = shared().await;
    let moto = Moto::shared();
    let f = Fixture::new(
        TestApp::with_tables(t.sdk.clone(), &t.state_table, &t.audit_table),
        lambda,
        "replace",
        1,
        json!({}),
    )
    .await;
    let token = f.start().await;
    let function = keysmith_tests::runtime::FunctionProcess::start(
        &keysmith_tests::function_binary("secret-rotation"),
        &[
            ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
            ("AWS_REGION", keysmith_tests::moto::REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("KEYSMITH_STATE_TABLE", &t.state_table),
            ("KEYSMITH_AUDIT_TABLE", &t.audit_table),
            ("KEYSMITH_ADMINS", "arn:aws:iam::123456789012:user/admin"),
            ("RUST_LOG", "debug"),
        ],
    )
    .await;
    for name in ["create", "set", "test", "finish"] {
        let mut e = keysmith_tests::event(&format!("secret-rotation-{name}.json"));
        e["SecretId"] = f.secret.clone().into();
        e["ClientRequestToken"] = token.clone().into();
        let out = function.invoke(&e).await;
        assert_eq!(out, Ok(Value::Null), "{name}: {}", function.logs());
    }
    assert_rotated(&f, "replace", moto, &f.t.sdk).await;
    // An unknown token is refused with an error, as Secrets Manager expects.
    let mut e = keysmith_tests::event("secret-rotation-create.json");
    e["SecretId"] = f.secret.clone().into();
    let refused = function.invoke(&e).await.unwrap_err();
    assert!(refused.contains("is not a version of secret"), "{refused}");

    let new_secret = f.snapshot().await.current["secret_access_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let logs = function.logs();
    assert!(logs.contains("DEBUG"), "logs were not captured at DEBUG");
    for secret in [&new_secret, &f.keys[0].1] {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret access key appears in the logs"
        );
        assert!(!refused.contains(secret.as_str()));
    }
}

async fn key_exists(f: &Fixture, id: &str) -> bool {
    f.snapshot().await.keys.contains_key(id)
}

/// The pending key a step created, from the `AWSPENDING` version `token`.
async fn pending_key(f: &Fixture, token: &str) -> String {
    let out = aws_sdk_secretsmanager::Client::new(&f.t.sdk)
        .get_secret_value()
        .secret_id(&f.secret)
        .version_id(token)
        .version_stage("AWSPENDING")
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(out.secret_string().unwrap()).unwrap();
    v["access_key_id"].as_str().unwrap().to_owned()
}

/// After a race: AWSCURRENT works, at most two keys, and a further full rotation succeeds.
async fn assert_converged(f: &Fixture) {
    let s = f.snapshot().await;
    let (id, secret) = s.current_key();
    let arn = caller_arn(Moto::shared(), id, secret, None)
        .await
        .expect("AWSCURRENT must work");
    assert!(arn.ends_with(&format!(":user/{}", f.user)), "{arn}");
    assert!(s.keys.len() <= 2, "{:?}", s.keys);
    let token = f.start().await;
    rotate(&f.rotator(), &f.secret, &token)
        .await
        .expect("a further full rotation succeeds");
    let after = f.snapshot().await;
    let (id, secret) = after.current_key();
    assert!(caller_arn(Moto::shared(), id, secret, None).await.is_ok());
}

fn failures(
    items: &[std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>],
    secret: &str,
) -> Vec<String> {
    items
        .iter()
        .filter(|i| {
            i["event"].as_s().unwrap() == "Access Key Rotation Failed"
                && i["message"].as_s().unwrap().contains(secret)
        })
        .map(|i| {
            assert_eq!(i["outcome"].as_s().unwrap(), "failed");
            assert_eq!(i["level"].as_s().unwrap(), "ERROR");
            i["message"].as_s().unwrap().clone()
        })
        .collect()
}

/// Issue 12: rotation 1 finishes, rotation 2 creates its key, then Secrets Manager delivers
/// rotation 1's `finishSecret` again. It fails (another rotation holds the secret), audited, and
/// deletes nothing; rotation 2 completes.
#[tokio::test]
async fn a_late_duplicate_finish_cannot_delete_the_newer_rotations_key() {
    let (t, lambda) = shared().await;
    let f = Fixture::new(t, lambda, "replace", 1, json!({})).await;
    let r = f.rotator();
    let first = f.start().await;
    rotate(&r, &f.secret, &first).await.unwrap();
    let second = f.start().await;
    r.run(&event(Step::Create, &f.secret, &second), &origin())
        .await
        .unwrap();
    let newer = pending_key(&f, &second).await;
    let err = r
        .run(&event(Step::Finish, &f.secret, &first), &origin())
        .await
        .unwrap_err();
    assert!(matches!(err, RotationError::Locked { .. }), "{err}");
    assert!(
        key_exists(&f, &newer).await,
        "the newer rotation's key survives"
    );
    let failed = failures(&f.t.audit_items().await, &f.secret);
    assert!(
        failed
            .iter()
            .any(|m| m.contains("finishSecret") && m.contains("RotationInProgress")),
        "{failed:?}"
    );
    for step in [Step::Set, Step::Test, Step::Finish] {
        r.run(&event(step, &f.secret, &second), &origin())
            .await
            .unwrap();
    }
    assert_eq!(f.snapshot().await.current_key().0, newer);
    // The same late delivery after rotation 2 is done: the version is not pending any more.
    assert!(r
        .run(&event(Step::Finish, &f.secret, &first), &origin())
        .await
        .is_err());
    assert!(key_exists(&f, &newer).await);
    assert_converged(&f).await;
}

/// Issue 12: the Secrets Manager hook and a scheduled (in-process) rotation of the same secret at
/// the same moment: one wins the secret's lock, the other changes nothing.
#[tokio::test]
async fn the_hook_racing_a_scheduled_run_converges() {
    let (t, lambda) = shared().await;
    for mode in ["replace", "graceful", "delete_first"] {
        let f = Fixture::new(
            TestApp::with_tables(t.sdk.clone(), &t.state_table, &t.audit_table),
            lambda.clone(),
            mode,
            1,
            json!({}),
        )
        .await;
        let token = f.start().await;
        let r = f.rotator();
        let o = origin();
        let (hook, run) = tokio::join!(
            rotate(&r, &f.secret, &token),
            r.rotate_now(&f.secret, &o, "race", chrono::Utc::now()),
        );
        assert!(hook.is_ok() || run.is_ok(), "{mode}: {hook:?} {run:?}");
        for lost in [hook.err(), run.err()].into_iter().flatten() {
            assert!(
                matches!(lost, RotationError::Locked { .. }),
                "{mode}: {lost}"
            );
        }
        assert_converged(&f).await;
    }
}

/// Issue 12, amended by SPEC §6a (issue 22): rotate-now (the scheduled path) while a hook
/// rotation is pending continues that rotation under its token instead of answering "in
/// progress"; the hook's late steps are no-ops; the next run rotates again.
#[tokio::test]
async fn rotate_now_while_a_hook_rotation_is_pending() {
    let (t, lambda) = shared().await;
    let f = Fixture::new(t, lambda, "graceful", 1, json!({})).await;
    let r = f.rotator();
    let token = f.start().await;
    r.run(&event(Step::Create, &f.secret, &token), &origin())
        .await
        .unwrap();
    let pending = pending_key(&f, &token).await;
    let rotated = r
        .rotate_now(&f.secret, &origin(), "now", chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(
        rotated.new_access_key_id, pending,
        "the hook's version is finished"
    );
    let done = f.snapshot().await;
    assert_eq!(done.current_key().0, pending);
    for step in [Step::Set, Step::Test, Step::Finish] {
        r.run(&event(step, &f.secret, &token), &origin())
            .await
            .unwrap();
    }
    assert_eq!(
        f.snapshot().await,
        done,
        "the hook's late steps change nothing"
    );
    let rotated = r
        .rotate_now(&f.secret, &origin(), "now", chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(rotated.old_access_key_id.as_deref(), Some(pending.as_str()));
    assert!(key_exists(&f, &pending).await, "graceful keeps AWSPREVIOUS");
    assert_converged(&f).await;
}

/// Issue 12: a pending key deleted out of band. The hook's testSecret abandons the version
/// instead of failing forever, and the next scheduled run completes with a new working key; a run
/// that finds such a version first abandons it itself.
#[tokio::test]
async fn a_pending_key_deleted_out_of_band_never_leaves_a_rotation_stuck() {
    let (t, lambda) = shared().await;
    for hook_first in [true, false] {
        let f = Fixture::new(
            TestApp::with_tables(t.sdk.clone(), &t.state_table, &t.audit_table),
            lambda.clone(),
            "replace",
            1,
            json!({}),
        )
        .await;
        let r = f
            .rotator()
            .with_test_timeout(std::time::Duration::from_millis(300));
        let token = f.start().await;
        r.run(&event(Step::Create, &f.secret, &token), &origin())
            .await
            .unwrap();
        let gone = pending_key(&f, &token).await;
        aws_sdk_iam::Client::new(&f.t.sdk)
            .delete_access_key()
            .user_name(&f.user)
            .access_key_id(&gone)
            .send()
            .await
            .unwrap();
        let mut now = chrono::Utc::now();
        if hook_first {
            let err = r
                .run(&event(Step::Test, &f.secret, &token), &origin())
                .await
                .unwrap_err();
            assert!(matches!(err, RotationError::Abandoned { .. }), "{err}");
            assert!(
                !f.snapshot()
                    .await
                    .stages
                    .values()
                    .any(|s| s.contains(&"AWSPENDING".to_owned())),
                "AWSPENDING removed"
            );
        } else {
            // The hook's lock expires; the next hourly run comes after that.
            now += chrono::Duration::minutes(16);
        }
        let rotated = r.rotate_now(&f.secret, &origin(), "p", now).await.unwrap();
        assert_ne!(rotated.new_access_key_id, gone);
        let s = f.snapshot().await;
        assert_eq!(s.current_key().0, rotated.new_access_key_id);
        assert_converged(&f).await;
    }
}

/// Issue 12: Secrets Manager may add fields to the event; every step still runs.
#[tokio::test]
async fn a_rotation_event_with_an_extra_field_runs_every_step() {
    let (t, lambda) = shared().await;
    let f = Fixture::new(t, lambda, "replace", 1, json!({})).await;
    let token = f.start().await;
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let e: keysmith::rotation::RotationEvent = serde_json::from_value(json!({
            "Step": step, "SecretId": f.secret, "ClientRequestToken": token,
            "RotationToken": "opaque", "SomethingNew": {"x": 1}}))
        .unwrap();
        f.rotator().run(&e, &origin()).await.unwrap();
    }
    assert_rotated(&f, "replace", Moto::shared(), &f.t.sdk).await;
}

/// Issue 11: a secret naming an untagged user, or a user tagged for another secret, fails at
/// createSecret, leaves the user's keys unchanged, and writes a failed audit item.
#[tokio::test]
async fn a_user_not_bound_to_the_secret_is_never_rotated() {
    let (t, lambda) = shared().await;
    for (tag, mode) in [
        (None, "replace"),
        (Some("keysmith/someone-else"), "delete_first"),
    ] {
        let f = Fixture::new(
            TestApp::with_tables(t.sdk.clone(), &t.state_table, &t.audit_table),
            lambda.clone(),
            mode,
            2,
            json!({}),
        )
        .await;
        let iam = aws_sdk_iam::Client::new(&f.t.sdk);
        iam.untag_user()
            .user_name(&f.user)
            .tag_keys("keysmith:rotation-secret")
            .send()
            .await
            .unwrap();
        if let Some(other) = tag {
            keysmith_tests::aws::bind(&f.t.sdk, &f.user, other).await;
        }
        let before = f.snapshot().await;
        let token = f.start().await;
        let err = f
            .rotator()
            .run(&event(Step::Create, &f.secret, &token), &origin())
            .await
            .unwrap_err();
        assert!(matches!(err, RotationError::Unbound { .. }), "{err}");
        let err = f
            .rotator()
            .rotate_now(
                &f.secret,
                &origin(),
                "p",
                chrono::Utc::now() + chrono::Duration::minutes(16),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RotationError::Unbound { .. }), "{err}");
        assert_eq!(
            f.snapshot().await.keys,
            before.keys,
            "{tag:?}: keys unchanged"
        );
        let failed = failures(&f.t.audit_items().await, &f.secret);
        assert!(
            failed
                .iter()
                .any(|m| m.contains("createSecret") && m.contains("UserNotBound")),
            "{failed:?}"
        );
    }
}
