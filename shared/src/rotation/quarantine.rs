//! Deactivating one key of a rotated secret's user at once (SPEC §15, the quarantine response),
//! through the same identity and binding check as a rotation — with Keysmith's own identity
//! ([`Rotator::acting_as_itself`]), since the quarantine policy denies the user acting on its keys.

use super::{RotationError, Rotator};

impl Rotator {
    /// Sets `key` of the secret's (bound) user `Inactive` (a key that is not the user's, or is
    /// gone, is left alone). Returns whether `key` is the secret's current key, which then needs
    /// rotating.
    pub async fn deactivate_key(&self, secret: &str, key: &str) -> Result<bool, RotationError> {
        let versions = self.versions(secret).await?;
        let value = self.current_value(secret).await?;
        let current = value.key_id() == Some(key);
        let admin = self.admin(&value, &versions).await?;
        self.check_binding(&admin, &value.user_name, &versions)
            .await?;
        let keys = self.keys(&admin, &value.user_name).await?;
        if !keys.iter().any(|k| k.access_key_id() == Some(key)) {
            return Ok(current);
        }
        self.set_inactive(&admin, &value.user_name, key).await?;
        Ok(current)
    }
}
