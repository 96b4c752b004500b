//! Where the agent keeps a deployment's files, and where it gets bundles from.

use core::fmt;

use embedded_io_async::Write;

use super::TlsError;
use crate::archive::RandomAccess;
use crate::bundle::{Digest, Segment};
use crate::deployer::DeploymentId;

/// Which file of a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FileKind {
    /// The bundle zip being deployed.
    Bundle,
    /// The configuration zip carried over from the old bundle.
    Configuration,
}

/// A file of the store: a deployment's bundle or configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FileKey {
    /// The deployment it belongs to.
    pub deployment: DeploymentId,
    /// Which of its files.
    pub kind: FileKind,
}

/// A store of files: a directory on a std host, flash on a microcontroller. Written while
/// downloading (the agent hashes as it writes), read back at random through
/// [`RandomAccess`] (bundle.conf out of the zip) and in order (the zip sent to ConductR).
#[allow(
    async_fn_in_trait,
    reason = "single-threaded executors: no Send bound is wanted"
)]
pub trait Store {
    /// A file being written.
    type Writer: Write;
    /// A file being read.
    type Reader: RandomAccess;

    /// Creates (or truncates) a file.
    async fn create(&self, key: FileKey) -> Result<Self::Writer, StoreError>;

    /// Opens a file written before.
    async fn open(&self, key: FileKey) -> Result<Self::Reader, StoreError>;

    /// Removes a deployment's files (those that exist); called when it ends.
    async fn remove(&self, deployment: DeploymentId);
}

/// The store failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StoreError;

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the bundle store failed")
    }
}

impl core::error::Error for StoreError {}

/// Where a published version lives (docs/PROTOCOL.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Location<'a> {
    /// The organisation.
    pub org: Segment<'a>,
    /// The repository.
    pub repo: Segment<'a>,
    /// The package.
    pub package: Segment<'a>,
    /// The version's tag.
    pub tag: Segment<'a>,
    /// The version's digest.
    pub digest: Digest,
}

/// Where a package's index of versions lives: `{org}/{repo}/{org}/{package}/versions.json`
/// (docs/PROTOCOL.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct IndexLocation<'a> {
    /// The organisation.
    pub org: Segment<'a>,
    /// The repository.
    pub repo: Segment<'a>,
    /// The package.
    pub package: Segment<'a>,
}

/// Why a bundle could not be fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FetchError {
    /// The repository has no such version (or, for an index, no index of the package).
    NotFound,
    /// The repository could not be reached, or the transfer broke off.
    Unreachable,
    /// The repository answered this error status.
    Status(u16),
    /// The repository's answer could not be read.
    Protocol,
    /// Writing the file failed (the writer's error: the size cap, the store).
    Write,
    /// The TLS handshake with the repository (or a host it redirected to) failed.
    Tls(TlsError),
    /// More redirects than [`MAX_REDIRECTS`](super::http::MAX_REDIRECTS).
    TooManyRedirects,
    /// A redirect from `https://` to `http://`, refused.
    InsecureRedirect,
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("the repository has no such version"),
            Self::Unreachable => f.write_str("the repository could not be reached"),
            Self::Status(code) => write!(f, "the repository answered status {code}"),
            Self::Protocol => f.write_str("the repository's answer could not be read"),
            Self::Write => f.write_str("writing the bundle failed"),
            Self::Tls(e) => write!(f, "the repository: {e}"),
            Self::TooManyRedirects => f.write_str("the repository redirected too many times"),
            Self::InsecureRedirect => {
                f.write_str("the repository redirected from https to http (refused)")
            }
        }
    }
}

impl core::error::Error for FetchError {}

/// Where bundles come from: an HTTP repository ([`super::http`]) or a directory.
#[allow(
    async_fn_in_trait,
    reason = "single-threaded executors: no Send bound is wanted"
)]
pub trait Repository {
    /// Writes the zip of the version at `location` to `out`, using `buf` for the transfer;
    /// returns how many bytes were written.
    async fn fetch<W: Write>(
        &self,
        location: &Location<'_>,
        out: &mut W,
        buf: &mut [u8],
    ) -> Result<u64, FetchError>;

    /// Writes the body of the package's `versions.json` at `at` to `out`, using `buf` for the
    /// transfer; returns how many bytes were written. [`FetchError::NotFound`] when the package
    /// has none (an absent index is an empty one).
    async fn fetch_index<W: Write>(
        &self,
        at: &IndexLocation<'_>,
        out: &mut W,
        buf: &mut [u8],
    ) -> Result<u64, FetchError>;
}
