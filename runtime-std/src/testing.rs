//! What the unit tests of this crate share.

use crate::tempdir::TempDir;

/// A directory of a test's own, removed when dropped.
pub(crate) fn temp_dir() -> TempDir {
    TempDir::new("lockstep-unit-test").expect("create a temporary directory")
}
