//! A bundle repository in a directory (docs/PROTOCOL.md §4): what `lockstep publish` writes, what
//! the sandbox serves, and what any static file server can serve in Bintray's place.
//!
//! Under the root, per package:
//!
//! ```text
//! {org}/{repo}/{org}/{package}/versions.json
//! {org}/{repo}/{org}/{package}/{version}/{package}-{version}.zip     version = <tag>-<digest>
//! ```
//!
//! `versions.json` is a JSON array of `{"version": "<tag>-<digest>", "published": "<RFC 3339
//! time>"}`, oldest first; the latest version is the last entry, and the latest with a tag the
//! last entry with that tag. A version published with a configuration (`lockstep publish
//! --configuration`) has it beside its zip, as `{package}-{version}-config.zip`; nothing reads
//! it back today (a deployment takes the running bundle's configuration from ConductR), it is
//! kept for an operator's manual deployment.
//!
//! [`DirRepository::publish_release`] rules:
//!
//! 1. Every write goes to a temporary file in the same directory that is then renamed over the
//!    real name: a reader (a file server, another lockstep) sees the old file or the new one,
//!    never a part.
//! 2. The zips are written before the index: no index entry names a zip that is not there yet.
//! 3. The index is read, changed and written back while holding an exclusive lock
//!    ([`File::lock`]) on [`LOCK_FILE`] beside it, so that publishers in any number of threads
//!    and processes each add their entry: none is lost to another's rename. The lock file stays
//!    (removing it while another publisher waits on it would let a third lock a new one).
//! 4. Publishing a version again changes nothing that is already right: an index entry stays
//!    with its first publication time, a zip that already holds the bytes is not rewritten.
//! 5. A version already published with another configuration is refused, not overwritten.
//! 6. A publish that fails after writing a zip removes the files and directory it created.
//!
//! Every organisation, repository, package and tag is checked as a [`Segment`] before it
//! becomes part of a path: nothing outside the root is ever named.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use lockstep_core::bundle::{
    Digest, DigestPrefix, Segment, SegmentError, Version, VersionSelector,
};

use crate::time::{TimeOutOfRange, rfc3339};
use crate::zip;

/// The index file of a package's versions.
pub const INDEX_FILE: &str = "versions.json";

/// The file beside [`INDEX_FILE`] that publishers lock while they change the index.
pub const LOCK_FILE: &str = ".versions.json.lock";

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Which part of a package's coordinates a [`RepoError::Segment`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// The organisation.
    Org,
    /// The repository.
    Repo,
    /// The package (the bundle name).
    Package,
    /// The tag of a version.
    Tag,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Org => "organisation",
            Self::Repo => "repository",
            Self::Package => "package",
            Self::Tag => "tag",
        })
    }
}

/// What is wrong with a `versions.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexError {
    /// Not JSON (or not UTF-8).
    NotJson,
    /// JSON, but not an array.
    NotAnArray,
    /// The element at this position (from 0) is not an object with a `version` string of the
    /// form `<tag>-<64 hex>` and a `published` string.
    BadEntry(usize),
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson => f.write_str("not JSON"),
            Self::NotAnArray => f.write_str("not a JSON array"),
            Self::BadEntry(i) => write!(
                f,
                "entry {i} is not {{\"version\": \"<tag>-<64 hex digest>\", \"published\": \"<time>\"}}"
            ),
        }
    }
}

/// Why a repository operation failed. Nothing was changed unless the variant says so.
#[derive(Debug)]
#[non_exhaustive]
pub enum RepoError {
    /// An organisation, repository, package or tag that is not a valid [`Segment`].
    Segment {
        /// Which one.
        field: Field,
        /// What is wrong with it.
        error: SegmentError,
    },
    /// Reading, writing or locking a file failed. A publish that fails removes what it
    /// created; a zip it rewrote with the bytes its name promises stays.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
    /// A `versions.json` that cannot be read as an index; a publish leaves it as it is.
    BadIndex {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        error: IndexError,
    },
    /// A publication time outside the years 0000 to 9999, which RFC 3339 cannot write.
    TimeOutOfRange,
    /// No published version matches.
    NotFound,
    /// More than one published version with the tag has a digest starting with the prefix.
    Ambiguous {
        /// How many.
        count: usize,
    },
    /// The version is already published with another configuration, this file.
    OtherConfiguration {
        /// The configuration zip already there.
        path: PathBuf,
    },
}

impl fmt::Display for RepoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Segment { field, error } => write!(f, "the {field} {error}"),
            Self::Io { path, error } => write!(f, "{}: {error}", path.display()),
            Self::BadIndex { path, error } => write!(f, "{}: {error}", path.display()),
            Self::TimeOutOfRange => {
                f.write_str("the publication time is outside the years 0000 to 9999")
            }
            Self::NotFound => f.write_str("no published version matches"),
            Self::Ambiguous { count } => write!(
                f,
                "the digest prefix matches {count} published versions: give more of it"
            ),
            Self::OtherConfiguration { path } => write!(
                f,
                "this version is already published with another configuration, {}: publish \
                 the bundle under another tag, or remove that file first",
                path.display()
            ),
        }
    }
}

impl std::error::Error for RepoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

fn segment(field: Field, s: &str) -> Result<Segment<'_>, RepoError> {
    Segment::parse(s).map_err(|error| RepoError::Segment { field, error })
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> RepoError + '_ {
    move |error| RepoError::Io {
        path: path.to_path_buf(),
        error,
    }
}

// ---------------------------------------------------------------------------------------------
// Versions
// ---------------------------------------------------------------------------------------------

/// One entry of a package's `versions.json`: a version and when it was published.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublishedVersion {
    /// A valid [`Segment`]: checked wherever one is made.
    tag: String,
    digest: Digest,
    published: String,
}

impl PublishedVersion {
    /// The tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The SHA-256 of the bundle zip.
    pub const fn digest(&self) -> Digest {
        self.digest
    }

    /// When it was published, RFC 3339, as the index holds it.
    pub fn published(&self) -> &str {
        &self.published
    }

    /// The version, `<tag>-<digest>`.
    pub fn version(&self) -> Version<'_> {
        Version {
            // Every constructor checks the tag.
            tag: Segment::parse(&self.tag).expect("a published version's tag is a segment"),
            digest: self.digest,
        }
    }
}

impl fmt::Display for PublishedVersion {
    /// `<tag>-<digest>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.tag, self.digest)
    }
}

impl fmt::Debug for PublishedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublishedVersion({self} at {})", self.published)
    }
}

// ---------------------------------------------------------------------------------------------
// The repository
// ---------------------------------------------------------------------------------------------

/// What to publish: a bundle zip under a tag, and the configuration zip to keep beside it.
///
/// Its `Debug` shows only the lengths: a configuration holds secrets.
#[derive(Clone, Copy)]
pub struct Release<'a> {
    /// The tag of the version, a [`Segment`].
    pub tag: &'a str,
    /// The bundle zip; the version's digest is its SHA-256.
    pub bundle: &'a [u8],
    /// The configuration zip, if any.
    pub configuration: Option<&'a [u8]>,
}

impl fmt::Debug for Release<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Release")
            .field("tag", &self.tag)
            .field("bundle_len", &self.bundle.len())
            .field("configuration_len", &self.configuration.map(<[u8]>::len))
            .finish()
    }
}

/// A file of a publication: where it is, and whether this publication wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The file.
    pub path: PathBuf,
    /// `false` when it already held these bytes, and was left as it was.
    pub written: bool,
}

/// What [`DirRepository::publish_release`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    /// The index entry: the new one, or the one already there with its first publication time.
    pub entry: PublishedVersion,
    /// Whether the index gained the entry (`false`: it was there already).
    pub indexed: bool,
    /// The bundle zip.
    pub bundle: Stored,
    /// The configuration zip, when one was published.
    pub configuration: Option<Stored>,
}

impl Publication {
    /// Whether anything changed: `false` for a republish of what is already there.
    pub fn changed(&self) -> bool {
        self.indexed
            || self.bundle.written
            || self.configuration.as_ref().is_some_and(|c| c.written)
    }
}

/// A repository in the directory `root`; see the module doc for its layout and rules.
#[derive(Debug)]
pub struct DirRepository {
    root: PathBuf,
}

impl DirRepository {
    /// The repository under `root`, which [`publish`](Self::publish) creates when needed.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of a package: `{root}/{org}/{repo}/{org}/{package}`.
    fn package_dir(&self, org: Segment<'_>, repo: Segment<'_>, package: Segment<'_>) -> PathBuf {
        let mut dir = self.root.clone();
        for part in [org, repo, org, package] {
            dir.push(part.as_str());
        }
        dir
    }

    /// Where a package's index lives: `{root}/{org}/{repo}/{org}/{package}/versions.json`.
    pub fn index_path(&self, org: Segment<'_>, repo: Segment<'_>, package: Segment<'_>) -> PathBuf {
        self.package_dir(org, repo, package).join(INDEX_FILE)
    }

    /// Where a version's zip lives:
    /// `{root}/{org}/{repo}/{org}/{package}/{version}/{package}-{version}.zip`.
    pub fn path_of(
        &self,
        org: Segment<'_>,
        repo: Segment<'_>,
        package: Segment<'_>,
        version: &Version<'_>,
    ) -> PathBuf {
        let mut path = self.package_dir(org, repo, package);
        path.push(version.to_string());
        path.push(format!("{package}-{version}.zip"));
        path
    }

    /// Publishes `zip` as version `<tag>-<sha256 of zip>` of the package, at time `published`:
    /// [`publish_release`](Self::publish_release) without a configuration, answering the index
    /// entry (the one already there, with its first publication time, for a republish).
    pub fn publish(
        &self,
        org: &str,
        repo: &str,
        package: &str,
        tag: &str,
        zip: &[u8],
        published: SystemTime,
    ) -> Result<PublishedVersion, RepoError> {
        let release = Release {
            tag,
            bundle: zip,
            configuration: None,
        };
        self.publish_release(org, repo, package, release, published)
            .map(|publication| publication.entry)
    }

    /// Publishes `release.bundle` as version `<tag>-<sha256 of the zip>` of the package, with
    /// its configuration if any, at time `published`, by the module doc's rules: the zips, then
    /// the index entry, under the index's lock; what is already there as it should be is left
    /// alone, so that a republish changes nothing.
    ///
    /// The zips are stored as given: whether they are a bundle and a configuration, and whether
    /// the tag is the bundle's, is the caller's to check.
    pub fn publish_release(
        &self,
        org: &str,
        repo: &str,
        package: &str,
        release: Release<'_>,
        published: SystemTime,
    ) -> Result<Publication, RepoError> {
        let (org, repo, package) = coordinates(org, repo, package)?;
        let tag = segment(Field::Tag, release.tag)?;
        let published = rfc3339(published).map_err(|TimeOutOfRange| RepoError::TimeOutOfRange)?;
        let version = Version {
            tag,
            digest: zip::digest(release.bundle),
        };
        let dir = self.package_dir(org, repo, package);
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let _lock = lock(&dir)?;

        let index = dir.join(INDEX_FILE);
        let mut entries = read_index(&index)?;
        let existing = entries
            .iter()
            .find(|e| e.tag == tag.as_str() && e.digest == version.digest)
            .cloned();
        let bundle_path = self.path_of(org, repo, package, &version);
        let config_path = bundle_path.with_file_name(format!("{package}-{version}-config.zip"));
        if let Some(configuration) = release.configuration
            && fs::exists(&config_path).map_err(io_error(&config_path))?
            && !holds(&config_path, configuration)?
        {
            return Err(RepoError::OtherConfiguration { path: config_path });
        }

        let mut undo = Undo::default();
        let written = (|| {
            let version_dir = bundle_path.parent().unwrap_or(&dir);
            if !version_dir.is_dir() {
                fs::create_dir(version_dir).map_err(io_error(version_dir))?;
                undo.dir = Some(version_dir.to_path_buf());
            }
            let bundle = undo.store(&bundle_path, release.bundle)?;
            let configuration = release
                .configuration
                .map(|bytes| undo.store(&config_path, bytes))
                .transpose()?;
            let indexed = existing.is_none();
            let entry = match existing {
                Some(entry) => entry,
                None => {
                    let entry = PublishedVersion {
                        tag: tag.as_str().to_owned(),
                        digest: version.digest,
                        published,
                    };
                    entries.push(entry.clone());
                    write_atomically(&index, render_index(&entries).as_bytes())?;
                    entry
                }
            };
            Ok(Publication {
                entry,
                indexed,
                bundle,
                configuration,
            })
        })();
        // An index write can fail after its rename (syncing the directory): then the index names
        // the zip, which must stay (rule 2).
        let named = || {
            read_index(&index).is_ok_and(|entries| {
                entries
                    .iter()
                    .any(|e| e.tag == tag.as_str() && e.digest == version.digest)
            })
        };
        if written.is_err() && !named() {
            undo.run();
        }
        written
    }

    /// The package's versions, oldest first; none when it has no index.
    pub fn versions(
        &self,
        org: &str,
        repo: &str,
        package: &str,
    ) -> Result<Vec<PublishedVersion>, RepoError> {
        let (org, repo, package) = coordinates(org, repo, package)?;
        read_index(&self.index_path(org, repo, package))
    }

    /// The latest version (the index's last entry), or with `tag` the latest version with that
    /// tag; `None` when there is none.
    pub fn latest(
        &self,
        org: &str,
        repo: &str,
        package: &str,
        tag: Option<&str>,
    ) -> Result<Option<PublishedVersion>, RepoError> {
        let tag = tag.map(|tag| segment(Field::Tag, tag)).transpose()?;
        let selector = tag.map_or(VersionSelector::Latest, VersionSelector::Tag);
        match self.resolve(org, repo, package, &selector) {
            Err(RepoError::NotFound) => Ok(None),
            found => found.map(Some),
        }
    }

    /// The one version with `tag` whose digest starts with `digest` (docs/PROTOCOL.md §3: a prefix
    /// of at least 7 hex characters, or the whole digest). [`RepoError::NotFound`] when there
    /// is none, [`RepoError::Ambiguous`] when there are several.
    pub fn resolve_prefix(
        &self,
        org: &str,
        repo: &str,
        package: &str,
        tag: &str,
        digest: &DigestPrefix,
    ) -> Result<PublishedVersion, RepoError> {
        let tag = segment(Field::Tag, tag)?;
        let selector = VersionSelector::Exact {
            tag,
            digest: *digest,
        };
        self.resolve(org, repo, package, &selector)
    }

    /// The version a bundle shorthand selects (docs/PROTOCOL.md §3): the latest, the latest with a
    /// tag, or the one with a tag and digest (prefix). [`RepoError::NotFound`] when there is
    /// none.
    pub fn resolve(
        &self,
        org: &str,
        repo: &str,
        package: &str,
        selector: &VersionSelector<'_>,
    ) -> Result<PublishedVersion, RepoError> {
        select(&self.versions(org, repo, package)?, selector)
    }
}

/// The version `selector` names among `versions` (a package's index, oldest first): the
/// latest, the latest with a tag, or the one with a tag whose digest starts with a prefix.
/// [`RepoError::NotFound`] when there is none, [`RepoError::Ambiguous`] when a prefix matches
/// several.
pub fn select(
    versions: &[PublishedVersion],
    selector: &VersionSelector<'_>,
) -> Result<PublishedVersion, RepoError> {
    let with_tag = |tag: &Segment<'_>, v: &&PublishedVersion| v.tag == tag.as_str();
    match selector {
        VersionSelector::Latest => versions.last().cloned().ok_or(RepoError::NotFound),
        VersionSelector::Tag(tag) => versions
            .iter()
            .rev()
            .find(|v| with_tag(tag, v))
            .cloned()
            .ok_or(RepoError::NotFound),
        VersionSelector::Exact { tag, digest } => {
            let mut matches = versions
                .iter()
                .filter(|v| with_tag(tag, v) && digest.matches(&v.digest));
            match (matches.next(), matches.count()) {
                (None, _) => Err(RepoError::NotFound),
                (Some(version), 0) => Ok(version.clone()),
                (Some(_), others) => Err(RepoError::Ambiguous {
                    count: others.saturating_add(1),
                }),
            }
        }
    }
}

fn coordinates<'a>(
    org: &'a str,
    repo: &'a str,
    package: &'a str,
) -> Result<(Segment<'a>, Segment<'a>, Segment<'a>), RepoError> {
    Ok((
        segment(Field::Org, org)?,
        segment(Field::Repo, repo)?,
        segment(Field::Package, package)?,
    ))
}

/// Takes the exclusive lock of the package directory `dir`'s index: held until the file is
/// dropped (closing it releases the lock, even when the process dies).
fn lock(dir: &Path) -> Result<File, RepoError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error(&path))?;
    file.lock().map_err(io_error(&path))?;
    Ok(file)
}

/// Whether the file at `path` holds exactly `bytes`; `false` when there is no such file.
fn holds(path: &Path, bytes: &[u8]) -> Result<bool, RepoError> {
    match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(path)(e)),
        Ok(meta) if meta.len() != u64::try_from(bytes.len()).unwrap_or(u64::MAX) => {
            return Ok(false);
        }
        Ok(_) => {}
    }
    Ok(fs::read(path).map_err(io_error(path))? == bytes)
}

/// What a publish created, removed again when it fails (rule 6).
#[derive(Default)]
struct Undo {
    /// The version directory, when the publish made it.
    dir: Option<PathBuf>,
    /// Files that were not there before.
    files: Vec<PathBuf>,
}

impl Undo {
    /// Writes `bytes` to `path` unless it holds them already.
    fn store(&mut self, path: &Path, bytes: &[u8]) -> Result<Stored, RepoError> {
        let existed = fs::exists(path).map_err(io_error(path))?;
        let written = !(existed && holds(path, bytes)?);
        if written {
            write_atomically(path, bytes)?;
            if !existed {
                self.files.push(path.to_path_buf());
            }
        }
        Ok(Stored {
            path: path.to_path_buf(),
            written,
        })
    }

    /// Removes what was created, files first; best effort, as the publish has failed already.
    fn run(self) {
        for file in &self.files {
            let _ = fs::remove_file(file);
        }
        if let Some(dir) = &self.dir {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// The entries of the index at `path`; none when there is no such file.
fn read_index(path: &Path) -> Result<Vec<PublishedVersion>, RepoError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(path)(e)),
    };
    parse_index(&bytes).map_err(|error| RepoError::BadIndex {
        path: path.to_path_buf(),
        error,
    })
}

/// The entries of a `versions.json`, oldest first (a file's, or an HTTP repository's).
pub fn parse_index(bytes: &[u8]) -> Result<Vec<PublishedVersion>, IndexError> {
    let json: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| IndexError::NotJson)?;
    let array = json.as_array().ok_or(IndexError::NotAnArray)?;
    array
        .iter()
        .enumerate()
        .map(|(i, entry)| parse_entry(entry).ok_or(IndexError::BadEntry(i)))
        .collect()
}

fn parse_entry(entry: &serde_json::Value) -> Option<PublishedVersion> {
    let version = Version::parse(entry.get("version")?.as_str()?).ok()?;
    let published = entry.get("published")?.as_str()?;
    Some(PublishedVersion {
        tag: version.tag.as_str().to_owned(),
        digest: version.digest,
        published: published.to_owned(),
    })
}

/// The index text: one entry per line, fields in the order docs/PROTOCOL.md §4 gives them. Other
/// fields an entry may have had are not kept.
fn render_index(entries: &[PublishedVersion]) -> String {
    let lines: Vec<String> = entries
        .iter()
        .map(|e| {
            // Display of a JSON string value writes it quoted and escaped.
            let version = serde_json::Value::from(e.to_string());
            let published = serde_json::Value::from(e.published.as_str());
            format!("  {{\"version\": {version}, \"published\": {published}}}")
        })
        .collect();
    if lines.is_empty() {
        "[]\n".to_owned()
    } else {
        format!("[\n{}\n]\n", lines.join(",\n"))
    }
}

/// Writes `bytes` to a new temporary file beside `path`, flushes it to disk and renames it
/// over `path`; the temporary file is removed when anything fails.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .map_err(io_error(&temporary))
        .and_then(|()| fs::rename(&temporary, path).map_err(io_error(path)));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written?;
    // The rename itself reaches the disk with the directory (Unix; elsewhere a directory cannot
    // be opened, and the rename is as durable as the platform makes it).
    if cfg!(unix) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::os::unix::fs::MetadataExt;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    use crate::testing::temp_dir;

    /// Every file under `root`, relative, `/`-separated.
    fn files(root: &Path) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let relative = path.strip_prefix(root).unwrap();
                    let parts: Vec<_> = relative.iter().map(|p| p.to_str().unwrap()).collect();
                    found.insert(parts.join("/"));
                }
            }
        }
        found
    }

    fn at(millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    fn seg(s: &str) -> Segment<'_> {
        Segment::parse(s).unwrap()
    }

    // docs/PROTOCOL.md §1's `released` example.
    const T0: u64 = 1_481_882_462_345;

    // ---- publishing ---------------------------------------------------------------------

    #[test]
    fn test_publish_layout_and_index() {
        let tmp = temp_dir();
        let repo = DirRepository::new(tmp.path());
        let first = repo
            .publish("typesafe", "bundle", "visualizer", "v1", b"one", at(T0))
            .unwrap();
        let second = repo
            .publish(
                "typesafe",
                "bundle",
                "visualizer",
                "v2-rc-1",
                b"two",
                at(T0 + 1000),
            )
            .unwrap();
        let (d1, d2) = (zip::digest(b"one"), zip::digest(b"two"));
        assert_eq!(first.to_string(), format!("v1-{d1}"));
        assert_eq!((first.tag(), first.digest()), ("v1", d1));
        assert_eq!(first.published(), "2016-12-16T10:01:02.345Z");
        assert_eq!(second.version().tag.as_str(), "v2-rc-1");

        let base = "typesafe/bundle/typesafe/visualizer";
        let expected: BTreeSet<String> = [
            format!("{base}/versions.json"),
            format!("{base}/.versions.json.lock"),
            format!("{base}/v1-{d1}/visualizer-v1-{d1}.zip"),
            format!("{base}/v2-rc-1-{d2}/visualizer-v2-rc-1-{d2}.zip"),
        ]
        .into();
        assert_eq!(files(tmp.path()), expected);
        let zip_path = repo.path_of(
            seg("typesafe"),
            seg("bundle"),
            seg("visualizer"),
            &second.version(),
        );
        assert_eq!(fs::read(&zip_path).unwrap(), b"two");
        assert_eq!(
            zip_path,
            tmp.path()
                .join(base)
                .join(format!("v2-rc-1-{d2}"))
                .join(format!("visualizer-v2-rc-1-{d2}.zip"))
        );

        let index = repo.index_path(seg("typesafe"), seg("bundle"), seg("visualizer"));
        assert_eq!(
            fs::read_to_string(index).unwrap(),
            format!(
                "[\n  {{\"version\": \"v1-{d1}\", \"published\": \"2016-12-16T10:01:02.345Z\"}},\n  \
                 {{\"version\": \"v2-rc-1-{d2}\", \"published\": \"2016-12-16T10:01:03.345Z\"}}\n]\n"
            )
        );
        assert_eq!(
            repo.versions("typesafe", "bundle", "visualizer").unwrap(),
            [first, second]
        );
    }

    #[test]
    fn test_publish_is_idempotent() {
        let tmp = temp_dir();
        let repo = DirRepository::new(tmp.path());
        let first = repo.publish("o", "r", "p", "v1", b"one", at(T0)).unwrap();
        let index = repo.index_path(seg("o"), seg("r"), seg("p"));
        let before = fs::read(&index).unwrap();
        // Later, the same version again: the first publication stands.
        let again = repo
            .publish("o", "r", "p", "v1", b"one", at(T0 + 60_000))
            .unwrap();
        assert_eq!(again, first);
        assert_eq!(fs::read(&index).unwrap(), before);
        // The same zip under another tag is another version.
        repo.publish("o", "r", "p", "v1-again", b"one", at(T0 + 1))
            .unwrap();
        assert_eq!(repo.versions("o", "r", "p").unwrap().len(), 2);
        // Two zips, the index and its lock file.
        assert_eq!(files(tmp.path()).len(), 4);
    }

    #[test]
    fn test_republish_writes_nothing() {
        let tmp = temp_dir();
        let repo = DirRepository::new(tmp.path());
        let release = Release {
            tag: "v1",
            bundle: b"one",
            configuration: Some(b"config"),
        };
        let first = repo
            .publish_release("o", "r", "p", release, at(T0))
            .unwrap();
        assert!(first.changed() && first.indexed && first.bundle.written);
        let config = first.configuration.clone().unwrap();
        assert!(config.written);
        assert_eq!(
            config.path,
            tmp.path()
                .join(format!("o/r/o/p/{}", first.entry))
                .join(format!("p-{}-config.zip", first.entry))
        );
        assert_eq!(fs::read(&config.path).unwrap(), b"config");
        let snapshot = || {
            files(tmp.path())
                .into_iter()
                .map(|f| {
                    let meta = fs::metadata(tmp.path().join(&f)).unwrap();
                    (f, meta.modified().unwrap(), meta.ino())
                })
                .collect::<Vec<_>>()
        };
        let before = snapshot();

        // Again, later: nothing is written, not even a file's time.
        let again = repo
            .publish_release("o", "r", "p", release, at(T0 + 60_000))
            .unwrap();
        assert!(!again.changed(), "{again:?}");
        assert_eq!(again.entry, first.entry);
        assert_eq!(snapshot(), before);
        // Without the configuration: the one there stays.
        let bare = Release {
            configuration: None,
            ..release
        };
        let again = repo.publish_release("o", "r", "p", bare, at(T0)).unwrap();
        assert!(!again.changed() && again.configuration.is_none());
        assert_eq!(snapshot(), before);

        // Another configuration for the version: refused, nothing changed.
        let other = Release {
            configuration: Some(b"other"),
            ..release
        };
        let e = repo
            .publish_release("o", "r", "p", other, at(T0))
            .unwrap_err();
        assert!(matches!(e, RepoError::OtherConfiguration { ref path } if *path == config.path));
        assert!(
            e.to_string()
                .contains("already published with another configuration")
        );
        assert_eq!(snapshot(), before);
    }

    #[test]
    fn test_republish_repairs_a_missing_or_wrong_zip() {
        let tmp = temp_dir();
        let repo = DirRepository::new(tmp.path());
        let entry = repo.publish("o", "r", "p", "v1", b"one", at(T0)).unwrap();
        let path = repo.path_of(seg("o"), seg("r"), seg("p"), &entry.version());
        fs::write(&path, b"bad").unwrap();
        let release = Release {
            tag: "v1",
            bundle: b"one",
            configuration: None,
        };
        let again = repo
            .publish_release("o", "r", "p", release, at(T0))
            .unwrap();
        assert!(!again.indexed && again.bundle.written);
        assert_eq!(fs::read(&path).unwrap(), b"one");
        fs::remove_file(&path).unwrap();
        let again = repo
            .publish_release("o", "r", "p", release, at(T0))
            .unwrap();
        assert!(!again.indexed && again.bundle.written);
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(repo.versions("o", "r", "p").unwrap(), [entry]);
    }

    #[test]
    fn test_undo_removes_only_what_it_created() {
        let tmp = temp_dir();
        let dir = tmp.path().join("v");
        fs::create_dir(&dir).unwrap();
        let old = dir.join("old.zip");
        fs::write(&old, b"wrong").unwrap();
        let mut undo = Undo {
            dir: Some(dir.clone()),
            ..Undo::default()
        };
        let new = undo.store(&dir.join("new.zip"), b"new").unwrap();
        assert!(new.written);
        assert!(undo.store(&old, b"right").unwrap().written);
        assert!(!undo.store(&old, b"right").unwrap().written);
        undo.run();
        // The new file is gone; the rewritten one keeps its right bytes, so the directory stays.
        assert!(!new.path.exists());
        assert_eq!(fs::read(&old).unwrap(), b"right");
        assert!(dir.is_dir());
    }

    #[test]
    fn test_publish_bad_index_writes_nothing() {
        let tmp = temp_dir();
        let repo = DirRepository::new(tmp.path());
        let dir = tmp.path().join("o/r/o/p");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(INDEX_FILE), "[").unwrap();
        let release = Release {
            tag: "v1",
            bundle: b"one",
            configuration: Some(b"c"),
        };
        assert!(matches!(
            repo.publish_release("o", "r", "p", release, at(T0)),
            Err(RepoError::BadIndex { .. })
        ));
        assert_eq!(
            files(tmp.path()),
            BTreeSet::from([
                "o/r/o/p/.versions.json.lock".to_owned(),
                "o/r/o/p/versions.json".to_owned()
            ])
        );
    }

    #[test]
    fn test_versions_of_unknown_package() {
        let tmp = temp_dir();
        let repo = DirRepository::new(tmp.path().join("not-yet"));
        assert_eq!(repo.versions("o", "r", "p").unwrap(), []);
        assert_eq!(repo.latest("o", "r", "p", None).unwrap(), None);
        assert!(matches!(
            repo.resolve("o", "r", "p", &VersionSelector::Latest),
            Err(RepoError::NotFound)
        ));
    }

    #[test]
    fn test_latest_with_and_without_tag() {
        let tmp = temp_dir();
        let repo = DirRepository::new(tmp.path());
        let publish = |tag: &str, zip: &[u8], t| repo.publish("o", "r", "p", tag, zip, at(t));
        let a1 = publish("a", b"1", T0).unwrap();
        let b1 = publish("b", b"2", T0 + 1).unwrap();
        let a2 = publish("a", b"3", T0 + 2).unwrap();
        let latest = |tag| repo.latest("o", "r", "p", tag).unwrap();
        assert_eq!(latest(None), Some(a2.clone()));
        assert_eq!(latest(Some("a")), Some(a2.clone()));
        assert_eq!(latest(Some("b")), Some(b1.clone()));
        assert_eq!(latest(Some("c")), None);
        // The index's order decides, not the publication times it records.
        let b0 = publish("b", b"4", T0 - 1000).unwrap();
        assert_eq!(latest(None), Some(b0.clone()));
        assert_eq!(latest(Some("b")), Some(b0));
        assert_eq!(repo.versions("o", "r", "p").unwrap()[0], a1);
        assert!(matches!(
            repo.latest("o", "r", "p", Some("a/b")),
            Err(RepoError::Segment {
                field: Field::Tag,
                ..
            })
        ));
        assert_eq!(
            repo.resolve("o", "r", "p", &VersionSelector::Tag(seg("a")))
                .unwrap(),
            a2
        );
    }

    #[test]
    fn test_resolve_prefix() {
        let tmp = temp_dir();
        let repo = DirRepository::new(tmp.path());
        let one = repo.publish("o", "r", "p", "t", b"one", at(T0)).unwrap();
        let other_tag = repo.publish("o", "r", "p", "u", b"two", at(T0)).unwrap();
        let hex = one.digest().to_string();
        let resolve = |tag: &str, prefix: &str| {
            repo.resolve_prefix("o", "r", "p", tag, &DigestPrefix::parse(prefix).unwrap())
        };
        // Unique: 7 characters, either case, or all 64.
        assert_eq!(resolve("t", &hex[..7]).unwrap(), one);
        assert_eq!(resolve("t", &hex[..7].to_ascii_uppercase()).unwrap(), one);
        assert_eq!(resolve("t", &hex).unwrap(), one);
        // Missing: another digest, or the right digest under another tag.
        let wrong = if hex.starts_with('0') {
            "1111111"
        } else {
            "0000000"
        };
        assert!(matches!(resolve("t", wrong), Err(RepoError::NotFound)));
        let two = other_tag.digest().to_string();
        assert!(matches!(resolve("t", &two[..7]), Err(RepoError::NotFound)));
        assert_eq!(resolve("u", &two[..7]).unwrap(), other_tag);
        // Too short: not a prefix at all (a shorthand reads it as part of the tag).
        assert_eq!(DigestPrefix::parse(&hex[..6]), None);
        assert!(matches!(
            repo.resolve_prefix("o", "r", "p", "..", &DigestPrefix::parse(&hex).unwrap()),
            Err(RepoError::Segment { .. })
        ));
        let exact = VersionSelector::Exact {
            tag: seg("t"),
            digest: DigestPrefix::parse(&hex[..10]).unwrap(),
        };
        assert_eq!(repo.resolve("o", "r", "p", &exact).unwrap(), one);
    }

    #[test]
    fn test_resolve_prefix_ambiguous_in_index() {
        // An index written by hand, with two digests sharing their first 7 characters.
        let tmp = temp_dir();
        let repo = DirRepository::new(tmp.path());
        let dir = tmp.path().join("o/r/o/p");
        fs::create_dir_all(&dir).unwrap();
        let d1 = format!("abcdef0{}", "1".repeat(57));
        let d2 = format!("abcdef0{}", "2".repeat(57));
        let d3 = format!("abcdef1{}", "3".repeat(57));
        fs::write(
            dir.join(INDEX_FILE),
            format!(
                r#"[{{"version": "t-{d1}", "published": "x"}},
                    {{"version": "t-{d2}", "published": "y", "extra": 1}},
                    {{"version": "t-{d3}", "published": "z"}}]"#
            ),
        )
        .unwrap();
        let resolve =
            |p: &str| repo.resolve_prefix("o", "r", "p", "t", &DigestPrefix::parse(p).unwrap());
        assert!(matches!(
            resolve("abcdef0"),
            Err(RepoError::Ambiguous { count: 2 })
        ));
        assert_eq!(resolve("abcdef01").unwrap().published(), "x");
        assert_eq!(resolve("ABCDEF02").unwrap().published(), "y");
        assert_eq!(resolve("abcdef1").unwrap().published(), "z");
        assert!(matches!(resolve("abcdef2"), Err(RepoError::NotFound)));
        assert_eq!(
            RepoError::Ambiguous { count: 2 }.to_string(),
            "the digest prefix matches 2 published versions: give more of it"
        );
    }

    #[test]
    fn test_reject_bad_segments() {
        let tmp = temp_dir();
        let repo = DirRepository::new(tmp.path());
        let cases = [
            (["..", "r", "p", "t"], Field::Org, SegmentError::Dots),
            (["o", "a/b", "p", "t"], Field::Repo, SegmentError::BadChar),
            (
                ["o", "r", "a/b", "t"],
                Field::Package,
                SegmentError::BadChar,
            ),
            (["o", "r", "p", ".."], Field::Tag, SegmentError::Dots),
            (["o", "r", "p", ""], Field::Tag, SegmentError::Empty),
            (
                ["o", "r", "a%2e", "t"],
                Field::Package,
                SegmentError::BadChar,
            ),
            (
                ["o", "r", "..\\x", "t"],
                Field::Package,
                SegmentError::BadChar,
            ),
        ];
        for ([org, r, package, tag], field, error) in cases {
            let result = repo.publish(org, r, package, tag, b"zip", at(T0));
            match result {
                Err(RepoError::Segment { field: f, error: e }) => {
                    assert_eq!((f, e), (field, error), "{org} {r} {package} {tag}");
                }
                other => panic!("{other:?}"),
            }
            if field != Field::Tag {
                assert!(repo.versions(org, r, package).is_err());
            }
        }
        // Nothing was written.
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
        assert_eq!(
            repo.publish("o", "r", "p", "..", b"", at(T0))
                .unwrap_err()
                .to_string(),
            "the tag may not be `.` or `..`"
        );
    }

    #[test]
    fn test_reject_bad_index() {
        let tmp = temp_dir();
        let repo = DirRepository::new(tmp.path());
        let dir = tmp.path().join("o/r/o/p");
        fs::create_dir_all(&dir).unwrap();
        let digest = zip::digest(b"");
        let cases = [
            ("[", IndexError::NotJson),
            ("\u{feff}[]", IndexError::NotJson),
            ("{}", IndexError::NotAnArray),
            ("[1]", IndexError::BadEntry(0)),
            (
                &format!(r#"[{{"version": "v1-{digest}", "published": "x"}}, {{}}]"#),
                IndexError::BadEntry(1),
            ),
            (
                r#"[{"version": "v1", "published": "x"}]"#,
                IndexError::BadEntry(0),
            ),
            (
                &format!(r#"[{{"version": "v1-{digest}"}}]"#),
                IndexError::BadEntry(0),
            ),
            (
                &format!(r#"[{{"version": "v1-{digest}", "published": 3}}]"#),
                IndexError::BadEntry(0),
            ),
            (
                &format!(r#"[{{"version": "../x-{digest}", "published": "x"}}]"#),
                IndexError::BadEntry(0),
            ),
        ];
        let index = dir.join(INDEX_FILE);
        for (text, expected) in cases {
            fs::write(&index, text).unwrap();
            match repo.versions("o", "r", "p") {
                Err(RepoError::BadIndex { path, error }) => {
                    assert_eq!(
                        (path.as_path(), error),
                        (index.as_path(), expected),
                        "{text}"
                    );
                }
                other => panic!("{text}: {other:?}"),
            }
            // A publish refuses it too, and leaves it as it was.
            assert!(matches!(
                repo.publish("o", "r", "p", "v2", b"z", at(T0)),
                Err(RepoError::BadIndex { .. })
            ));
            assert_eq!(fs::read_to_string(&index).unwrap(), text);
        }
        let e = RepoError::BadIndex {
            path: index.clone(),
            error: IndexError::BadEntry(1),
        };
        assert!(e.to_string().ends_with(
            "versions.json: entry 1 is not {\"version\": \"<tag>-<64 hex digest>\", \"published\": \"<time>\"}"
        ));
    }

    #[test]
    fn test_index_escapes_what_it_reads() {
        // A hand-written published time with characters JSON must escape survives a rewrite.
        let tmp = temp_dir();
        let repo = DirRepository::new(tmp.path());
        let dir = tmp.path().join("o/r/o/p");
        fs::create_dir_all(&dir).unwrap();
        let digest = zip::digest(b"");
        fs::write(
            dir.join(INDEX_FILE),
            format!(r#"[{{"version": "v1-{digest}", "published": "a \"b\"\n"}}]"#),
        )
        .unwrap();
        repo.publish("o", "r", "p", "v2", b"z", at(T0)).unwrap();
        let versions = repo.versions("o", "r", "p").unwrap();
        assert_eq!(versions[0].published(), "a \"b\"\n");
        assert_eq!(versions.len(), 2);
    }

    #[test]
    fn test_publish_time_out_of_range() {
        let tmp = temp_dir();
        let repo = DirRepository::new(tmp.path());
        // 10000-01-01T00:00:00Z: a year of five digits.
        let far = UNIX_EPOCH + Duration::from_secs(253_402_300_800);
        assert!(matches!(
            repo.publish("o", "r", "p", "t", b"", far),
            Err(RepoError::TimeOutOfRange)
        ));
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn test_publish_io_error() {
        // The root is a file: nothing can be created under it.
        let tmp = temp_dir();
        let root = tmp.path().join("file");
        fs::write(&root, b"").unwrap();
        let repo = DirRepository::new(&root);
        let e = repo.publish("o", "r", "p", "t", b"", at(T0)).unwrap_err();
        assert!(matches!(e, RepoError::Io { .. }), "{e:?}");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn test_publish_concurrently() {
        let tmp = temp_dir();
        let repo = DirRepository::new(tmp.path());
        let index = repo.index_path(seg("o"), seg("r"), seg("p"));
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            // A reader that must never see a partial index.
            let reader = s.spawn(|| {
                let mut reads = 0;
                while !done.load(Ordering::Relaxed) {
                    if let Ok(text) = fs::read(&index) {
                        let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
                        assert!(json.is_array());
                        reads += 1;
                    }
                }
                reads
            });
            let writers: Vec<_> = (0..8u8)
                .map(|t| {
                    let repo = &repo;
                    s.spawn(move || {
                        for i in 0..10u8 {
                            let tag = format!("t{t}");
                            repo.publish("o", "r", "p", &tag, &[t, i], at(T0)).unwrap();
                        }
                    })
                })
                .collect();
            for writer in writers {
                writer.join().unwrap();
            }
            done.store(true, Ordering::Relaxed);
            reader.join().unwrap();
        });
        assert_eq!(repo.versions("o", "r", "p").unwrap().len(), 80);
        // 80 zips, the index and its lock file; no temporary file left behind.
        let files = files(tmp.path());
        assert_eq!(files.len(), 82);
        assert!(files.iter().all(|f| !f.ends_with(".tmp")), "{files:?}");
    }

    #[test]
    fn test_publish_samples() {
        // The sandbox's demo set, published in order: the layout a deploy resolves from.
        let tmp = temp_dir();
        let repo = DirRepository::new(tmp.path());
        let set = crate::samples::demo_set();
        for (i, bundle) in set.bundles().into_iter().enumerate() {
            let published = repo
                .publish(
                    "typesafe",
                    "bundle",
                    &bundle.name,
                    &bundle.tag,
                    &bundle.zip,
                    at(T0 + i as u64),
                )
                .unwrap();
            assert_eq!(published.to_string(), bundle.version());
            assert_eq!(published.digest(), bundle.digest);
        }
        let latest = repo
            .latest("typesafe", "bundle", "visualizer", None)
            .unwrap();
        assert_eq!(latest.unwrap().tag(), "2.0.0");
    }
}
