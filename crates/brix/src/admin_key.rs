//! The admin key `brix up` generates when the fleet file sets none, so the fleet and users
//! APIs are never open on the gateway's port while `brix status` and `brix scale` still work
//! out of the box: the key is written, readable by its owner only (0600, in a 0700
//! directory), to `<state dir>/admin-<port>.key`, where those commands look for it. The file
//! is removed when `brix up` stops.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where keys live: the flag (or `BRIX_STATE_DIR`), else `$XDG_STATE_HOME/brix`, else
/// `~/.local/state/brix`, else `.brix-state` in the working directory.
pub(crate) fn state_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(dir) = flag {
        return dir.to_path_buf();
    }
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env("XDG_STATE_HOME") {
        return d.join("brix");
    }
    match env("HOME") {
        Some(home) => home.join(".local/state/brix"),
        None => PathBuf::from(".brix-state"),
    }
}

/// The key file of the `brix up` whose gateway listens on `port`.
pub(crate) fn path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!("admin-{port}.key"))
}

/// A new random key: 32 bytes from the OS, in hex.
pub(crate) fn generate() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A written key file; removed on drop.
pub(crate) struct KeyFile(PathBuf);

impl KeyFile {
    /// Writes `key` to `path` (owner-only), replacing a stale file of an earlier run.
    pub(crate) fn write(path: PathBuf, key: &str) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        // The mode above is filtered by the umask; make sure of it.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        writeln!(f, "{key}")?;
        Ok(Self(path))
    }

    /// Where it is.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The key in `path`, if the file is there.
pub(crate) fn read(path: &Path) -> Option<String> {
    let key = std::fs::read_to_string(path).ok()?;
    let key = key.trim();
    (!key.is_empty()).then(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_owner_only_and_removed_on_drop() {
        let dir = std::env::temp_dir().join(format!("brix-key-{}", std::process::id()));
        let p = path(&dir.join("state"), 8888);
        let key = generate().unwrap_or_default();
        assert_eq!(key.len(), 64);
        assert_ne!(generate().unwrap_or_default(), key);
        {
            let f = KeyFile::write(p.clone(), &key).unwrap_or_else(|e| panic!("{e}"));
            let mode = std::fs::metadata(f.path()).map(|m| m.permissions().mode());
            assert_eq!(mode.map(|m| m & 0o777).ok(), Some(0o600));
            assert_eq!(read(&p).as_deref(), Some(key.as_str()));
        }
        assert_eq!(read(&p), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
