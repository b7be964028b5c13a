//! The credentials cache: one file per (API, profile, caller, options), named by the SHA-256 of
//! that key, in a `0700` directory; files are `0600`, written to a temporary file in the same
//! directory and renamed over the old one (a reader never sees half a file), and refreshed under an
//! exclusive lock on a sibling `.lock` file. A file that does not parse is a miss, then replaced.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::credential::Issued;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("no cache directory: set KEYSMITH_CACHE_DIR, XDG_CACHE_HOME or HOME")]
    NoDirectory,
    #[error("cache directory {} is open to others (mode {mode:o}): make it 0700, or set KEYSMITH_CACHE_DIR", path.display())]
    Loose { path: PathBuf, mode: u32 },
    #[error("cache directory {} is a symbolic link: keysmith does not follow it; use the real directory, or set KEYSMITH_CACHE_DIR", path.display())]
    Symlink { path: PathBuf },
    #[error("cache directory {} is not a directory", path.display())]
    NotDirectory { path: PathBuf },
    #[error("cache directory {} is owned by uid {owner}, not by you (uid {me}): whoever owns it could plant credentials; set KEYSMITH_CACHE_DIR to a directory of your own", path.display())]
    Owner { path: PathBuf, owner: u32, me: u32 },
    #[error("cache {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct Cache {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `KEYSMITH_CACHE_DIR`, else `$XDG_CACHE_HOME/keysmith`, else `~/.cache/keysmith`.
pub fn directory() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(d) = var("KEYSMITH_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("keysmith"));
    }
    var("HOME").map(|h| PathBuf::from(h).join(".cache").join("keysmith"))
}

impl Cache {
    /// The cache directory, created `0700` (an existing one must be a real directory, yours, and
    /// closed to others).
    pub fn open() -> Result<Cache, CacheError> {
        let dir = directory().ok_or(CacheError::NoDirectory)?;
        Self::at(dir)
    }

    pub fn at(dir: PathBuf) -> Result<Cache, CacheError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io(&dir))?;
        // The directory itself, not what a symbolic link there points to: a link is refused (it
        // may lead into someone else's directory), and so is a directory another user owns.
        let meta = std::fs::symlink_metadata(&dir).map_err(io(&dir))?;
        if meta.file_type().is_symlink() {
            return Err(CacheError::Symlink { path: dir });
        }
        if !meta.is_dir() {
            return Err(CacheError::NotDirectory { path: dir });
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(CacheError::Owner {
                path: dir,
                owner: meta.uid(),
                me,
            });
        }
        let mode = meta.permissions().mode();
        // An existing directory others can read or write is refused, not changed: it may be a
        // shared one (`/tmp`), and whoever can write to it could plant credentials.
        if mode & 0o077 != 0 {
            return Err(CacheError::Loose {
                path: dir,
                mode: mode & 0o777,
            });
        }
        Ok(Cache { dir })
    }

    /// The file name of a key: the hex SHA-256 of its parts (length-prefixed, so parts cannot
    /// run into each other).
    pub fn entry_name(parts: &[&str]) -> String {
        let mut hash = Sha256::new();
        hash.update(b"keysmith-cache-v1");
        for p in parts {
            hash.update((p.len() as u64).to_be_bytes());
            hash.update(p.as_bytes());
        }
        format!("{}.json", hex::encode(hash.finalize()))
    }

    /// The cached credentials, or `None` when absent or unreadable (a corrupt file is a miss).
    pub fn read(&self, name: &str) -> Option<Issued> {
        let bytes = std::fs::read(self.dir.join(name)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Replaces the entry atomically; the temporary file is created `0600`.
    pub fn write(&self, name: &str, issued: &Issued) -> Result<(), CacheError> {
        let path = self.dir.join(name);
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(&self.dir)
            .map_err(io(&self.dir))?;
        let bytes = serde_json::to_vec(issued).map_err(|e| CacheError::Io {
            path: path.clone(),
            source: e.into(),
        })?;
        tmp.write_all(&bytes).map_err(io(&path))?;
        tmp.as_file().sync_all().map_err(io(&path))?;
        tmp.persist(&path).map_err(|e| CacheError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        Ok(())
    }

    /// Removes every cached entry of lease `lease_id` (after it is revoked: a revoked lease's keys
    /// must not be served until they near expiry). Returns how many were removed.
    pub fn forget_lease(&self, lease_id: &str) -> Result<usize, CacheError> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            if self
                .read(name)
                .is_some_and(|i| i.lease_id.as_deref() == Some(lease_id))
            {
                std::fs::remove_file(&path).map_err(io(&path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// An exclusive lock for refreshing `name`, held until the file is dropped.
    pub fn lock(&self, name: &str) -> Result<File, CacheError> {
        let path = self.dir.join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(file)
    }
}

use std::os::unix::fs::OpenOptionsExt;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn sample() -> Issued {
        Issued {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("s3cr3t-s3cr3t-s3cr3t"),
            session_token: None,
            expiration: "2030-01-01T00:00:00Z".into(),
            credential_type: "iam_user".into(),
            lease_id: None,
        }
    }

    #[test]
    fn entries_are_0600_in_a_0700_directory_and_corrupt_ones_are_misses() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = root.path().join("keysmith");
        let cache = Cache::at(dir.clone()).unwrap_or_else(|e| panic!("{e}"));
        let name = Cache::entry_name(&["https://api", "deploy", "AKIA1"]);
        assert!(cache.read(&name).is_none());
        cache
            .write(&name, &sample())
            .unwrap_or_else(|e| panic!("{e}"));
        let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode(&dir).ok(), Some(0o700));
        assert_eq!(mode(&dir.join(&name)).ok(), Some(0o600));
        assert_eq!(
            cache.read(&name).map(|i| i.access_key_id).as_deref(),
            Some("ASIAEXAMPLE")
        );
        std::fs::write(dir.join(&name), b"{not json").unwrap_or_else(|e| panic!("{e}"));
        assert!(cache.read(&name).is_none());
        cache
            .write(&name, &sample())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(cache.read(&name).is_some());
    }

    #[test]
    fn a_directory_open_to_others_is_refused() {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = Cache::at(root.path().to_owned()).err().unwrap();
        assert!(e.to_string().contains("mode 755"), "{e}");
    }

    #[test]
    fn a_symlinked_directory_is_refused_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = Cache::at(link.clone()).err().unwrap().to_string();
        assert!(
            e.contains(&link.display().to_string()) && e.contains("symbolic link"),
            "{e}"
        );
        // The real directory itself is fine.
        assert!(Cache::at(real).is_ok());
    }

    #[test]
    fn a_directory_owned_by_another_user_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("theirs");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let me = rustix::process::geteuid().as_raw();
        // Root can give the directory away; anyone else tries a root-owned one.
        let dir = if std::os::unix::fs::chown(&dir, Some(me.wrapping_add(4242)), None).is_ok() {
            dir
        } else {
            PathBuf::from("/root")
        };
        let e = Cache::at(dir.clone()).err().unwrap().to_string();
        assert!(
            e.contains(&dir.display().to_string()) && e.contains("owned by"),
            "{e}"
        );
    }

    #[test]
    fn names_differ_per_key_part() {
        let a = Cache::entry_name(&["api", "deploy", "AKIA1"]);
        assert_ne!(a, Cache::entry_name(&["api", "deploy", "AKIA2"]));
        assert_ne!(
            Cache::entry_name(&["ab", "c"]),
            Cache::entry_name(&["a", "bc"])
        );
        assert_eq!(a.len(), 64 + ".json".len());
    }
}
