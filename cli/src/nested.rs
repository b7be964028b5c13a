//! A run of keysmith inside a run of keysmith. With `credential_process = keysmith credentials P`
//! in AWS profile `P` and `AWS_PROFILE=P`, keysmith's own SDK chain would run keysmith to sign,
//! which would run keysmith again, without end. Each run records the AWS profile it signs with in
//! `KEYSMITH_NESTED` before resolving its identity (the SDK's `credential_process` child inherits
//! the environment); a run whose signing profile is already there refuses at once.

/// The AWS profiles the enclosing keysmith runs sign with, one a line.
pub const VARIABLE: &str = "KEYSMITH_NESTED";

/// The start of the refusal: the enclosing run recognises it in its SDK's error.
const MARKER: &str = "keysmith is running itself";

#[derive(Debug, thiserror::Error)]
#[error("keysmith is running itself: the AWS profile '{profile}' it signs its requests with gets its credentials from a credential_process that runs keysmith, which would sign with '{profile}' again, without end. Sign with another profile: AWS_PROFILE for keysmith must not be the profile whose credential_process is keysmith (for example `credential_process = env AWS_PROFILE=base keysmith credentials {profile}`, where profile 'base' holds your own credentials)")]
pub struct Nested {
    pub profile: String,
}

/// The AWS profile the SDK's chain reads: `AWS_PROFILE`, else `default`.
pub fn signing_profile() -> String {
    std::env::var_os("AWS_PROFILE")
        .filter(|p| !p.is_empty())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "default".to_owned())
}

/// Whether the error of the SDK's chain is a nested run's refusal.
pub fn is_refusal(error_text: &str) -> bool {
    error_text.contains(MARKER)
}

/// Refuses a run nested in a run that signs with the same profile; otherwise records this run's
/// profile for any keysmith the SDK starts. Call before any thread is started.
pub fn enter() -> Result<(), Nested> {
    let outer = std::env::var_os(VARIABLE)
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    let env_keys = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        .iter()
        .all(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
    let profile = signing_profile();
    check(&outer, &profile, env_keys)?;
    std::env::set_var(VARIABLE, record(&outer, &profile));
    Ok(())
}

/// Keys in the environment come first in the SDK's chain: no profile is read, nothing loops.
fn check(outer: &str, profile: &str, env_keys: bool) -> Result<(), Nested> {
    if !env_keys && outer.lines().any(|p| p == profile) {
        return Err(Nested {
            profile: profile.to_owned(),
        });
    }
    Ok(())
}

fn record(outer: &str, profile: &str) -> String {
    if outer.is_empty() {
        profile.to_owned()
    } else {
        format!("{outer}\n{profile}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_inside_one_signing_with_the_same_profile_is_refused() {
        assert!(check("", "p", false).is_ok());
        assert!(check("other", "p", false).is_ok());
        let e = check("base\np", "p", false).unwrap_err();
        assert!(is_refusal(&e.to_string()));
        assert!(e.to_string().contains("'p'") && e.to_string().contains("AWS_PROFILE"));
        // Keys in the environment come before any profile: no loop.
        assert!(check("p", "p", true).is_ok());
        assert_eq!(record("", "p"), "p");
        assert_eq!(record("base", "p"), "base\np");
    }
}
