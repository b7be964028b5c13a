//! Seeding moto with the IAM users, keys, roles and secrets a test needs.

use aws_config::SdkConfig;
use aws_sdk_sts::config::Credentials;
use serde_json::json;

/// Creates IAM user `name` with an inline policy and one access key; returns the key pair.
pub async fn user_with_key(
    sdk: &SdkConfig,
    name: &str,
    policy: &serde_json::Value,
) -> (String, String) {
    let iam = aws_sdk_iam::Client::new(sdk);
    iam.create_user().user_name(name).send().await.unwrap();
    iam.put_user_policy()
        .user_name(name)
        .policy_name("test")
        .policy_document(policy.to_string())
        .send()
        .await
        .unwrap();
    let key = iam
        .create_access_key()
        .user_name(name)
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    (key.access_key_id, key.secret_access_key)
}

/// Binds IAM user `user` to the secret `secret` (its name or ARN): SPEC §6 rotates only users
/// tagged `keysmith:rotation-secret` with their secret.
pub async fn bind(sdk: &SdkConfig, user: &str, secret: &str) {
    aws_sdk_iam::Client::new(sdk)
        .tag_user()
        .user_name(user)
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("keysmith:rotation-secret")
                .value(secret)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

pub fn allow_all() -> serde_json::Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
}

/// A role anyone may assume (moto matches trust policies only on "*" or the exact caller).
pub async fn assumable_role(sdk: &SdkConfig, path: &str, name: &str) -> String {
    let iam = aws_sdk_iam::Client::new(sdk);
    let trust = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"]}]});
    let role = iam
        .create_role()
        .path(path)
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .max_session_duration(43_200)
        .send()
        .await
        .unwrap()
        .role
        .unwrap();
    iam.put_role_policy()
        .role_name(name)
        .policy_name("whoami")
        .policy_document(allow_all().to_string())
        .send()
        .await
        .unwrap();
    role.arn
}

pub async fn secret(sdk: &SdkConfig, name: &str, value: &serde_json::Value) {
    aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(name)
        .secret_string(value.to_string())
        .send()
        .await
        .unwrap();
}

/// `sts:GetCallerIdentity` with the given credentials: the ARN, or the HTTP status of the refusal.
pub async fn caller_arn(
    moto: &crate::moto::Moto,
    key: &str,
    secret: &str,
    token: Option<&str>,
) -> Result<String, u16> {
    let creds = Credentials::new(key, secret, token.map(str::to_owned), None, "test");
    let sdk = moto.sdk_config_with(creds).await;
    match aws_sdk_sts::Client::new(&sdk)
        .get_caller_identity()
        .send()
        .await
    {
        Ok(out) => Ok(out.arn.unwrap_or_default()),
        Err(e) => Err(e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0)),
    }
}

/// An asymmetric KMS key as the template's `AuditSigningKey` (ECC_NIST_P256, SIGN_VERIFY); its ARN.
pub async fn signing_key(sdk: &SdkConfig) -> String {
    aws_sdk_kms::Client::new(sdk)
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap()
}

/// The status of `key` of IAM user `user`: `Active`, `Inactive`, or `Deleted` when IAM no longer
/// lists it.
pub async fn key_status(iam: &aws_sdk_iam::Client, user: &str, key: &str) -> String {
    iam.list_access_keys()
        .user_name(user)
        .send()
        .await
        .unwrap()
        .access_key_metadata
        .into_iter()
        .find(|k| k.access_key_id.as_deref() == Some(key))
        .map(|k| k.status.unwrap().as_str().to_owned())
        .unwrap_or_else(|| "Deleted".into())
}
