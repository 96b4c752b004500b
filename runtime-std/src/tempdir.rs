//! The temporary directories lockstep makes for itself (`serve`, `sandbox` and `demo` without
//! `--data-dir`, and the unit tests).
//!
//! Each is new, under the system's temporary directory (`TMPDIR`), named with 64 random bits,
//! and private to the user (0700): the webhook secret of the demo and downloaded bundles are
//! kept there. It is removed when its [`TempDir`] is dropped, which is why the commands return
//! from their `run` on SIGTERM and SIGINT ([`crate::signals`]) rather than exit the process
//! from where they are: `std::process::exit` runs no destructor.

use std::io;
use std::path::{Path, PathBuf};

/// A new directory, removed with everything in it when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<temporary directory>/<prefix>-<16 hex digits>`. It must not exist yet: an
    /// existing one (another user's, say) is never taken over.
    pub fn new(prefix: &str) -> io::Result<Self> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
        let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let path = std::env::temp_dir().join(format!("{prefix}-{name}"));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&path)?;
        Ok(Self { path })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A command's data directory: the one it was given, or a [`TempDir`] of its own, removed when
/// this is dropped.
#[derive(Debug)]
pub enum DataDir {
    /// Given (`--data-dir`): kept.
    Given(PathBuf),
    /// Made for this run.
    Temporary(TempDir),
}

impl DataDir {
    /// `dir` when given (not created here), else a new [`TempDir`] named with `prefix`.
    pub fn given_or_new(dir: Option<&Path>, prefix: &str) -> io::Result<Self> {
        match dir {
            Some(dir) => Ok(Self::Given(dir.to_path_buf())),
            None => TempDir::new(prefix).map(Self::Temporary),
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        match self {
            Self::Given(path) => path,
            Self::Temporary(dir) => dir.path(),
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Nothing to report to at this point; what cannot be removed stays behind.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_tempdir_is_fresh_private_and_removed_on_drop() {
        let a = TempDir::new("lockstep-tempdir-test").unwrap();
        let b = TempDir::new("lockstep-tempdir-test").unwrap();
        assert_ne!(a.path(), b.path());
        assert!(a.path().starts_with(std::env::temp_dir()));
        assert_eq!(std::fs::read_dir(a.path()).unwrap().count(), 0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(a.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        }
        std::fs::create_dir_all(a.path().join("sub")).unwrap();
        std::fs::write(a.path().join("sub/file"), b"x").unwrap();
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists());
        assert!(b.path().exists());
    }
}
