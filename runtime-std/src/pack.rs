//! `lockstep bundle`: lockstep itself as a ConductR bundle, and a folder as a bundle
//! configuration, so that an operator installs lockstep with `conduct load` and `conduct run`
//! (docs/PROTOCOL.md §4, "lockstep's own bundle").
//!
//! The bundle is `lockstep-<version>/bundle.conf` ([`bundle_conf`]) and
//! `lockstep-<version>/lockstep/bin/lockstep`, the running binary itself, executable: ConductR
//! expands a bundle and runs a component's `start-command` from the bundle's one top directory,
//! where sbt-conductr puts each component in a folder of its name (`visualizer/bin/visualizer`).
//!
//! A configuration is a folder's files under one top directory named after the folder, as
//! conductr-cli's `shazar` lays it out: `runtime-config.sh` is required (ConductR sources it
//! before it starts the component: the webhook secret is exported there), `bundle.conf` is an
//! optional overlay and the only file allowed to end with `bundle.conf` (readers take the
//! first such entry), and the rest is carried as it is. Secrets live there: nothing of a file's
//! contents is ever printed, only paths. Symbolic links are followed only to regular files
//! inside the folder; at most [`Limits::files`] files, [`Limits::bytes`] bytes in all,
//! [`Limits::depth`] folders deep.
//!
//! Both zips are written the same way: entries in a fixed order with the zip writer's fixed
//! timestamps (the same input gives the same bytes, so the same digest and id), to a temporary
//! file in the output's directory that is flushed to disk and then renamed to
//! `<name>-<sha256 digest>.zip`, ConductR's name for a bundle file: a failure leaves nothing,
//! and a reader never sees a part.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use lockstep_core::bundle::{BundleId, Digest, Segment};
use sha2::{Digest as _, Sha256};

use crate::zip::{Entry, ZipError, ZipWriter};

/// The bundle's name, system, component and binary.
pub const NAME: &str = "lockstep";
/// The version written into the bundle: this binary's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The file a configuration must hold.
pub const RUNTIME_CONFIG: &str = "runtime-config.sh";
/// A configuration's overlay.
pub const OVERLAY: &str = "bundle.conf";
/// The top directory of a configuration whose folder's name is not a [`Segment`].
pub const DEFAULT_CONFIGURATION_NAME: &str = "config";

/// `memory`: 64 MiB. `lockstep serve` idles at about 5 MB resident, and what grows with load is
/// bounded and small: downloads are streamed to disk, never held, each connection's buffers
/// are a few KiB (at most 256 connections), the deployment table and the journal's index hold
/// at most 1,000 ended deployments. Over ten times the idle figure leaves room for a burst.
pub const MEMORY: u64 = 64 * MIB;
/// `nrOfCpus`: lockstep waits on sockets nearly all the time.
pub const NR_OF_CPUS: &str = "0.1";
/// What `diskSpace` adds to the binary's size: the expanded configuration and a margin. The
/// journal and the downloads go to lockstep's data directory, outside the bundle.
pub const DISK_HEADROOM: u64 = 64 * MIB;
const MIB: u64 = 1024 * 1024;

/// How much of a folder a configuration takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Files, at most.
    pub files: usize,
    /// Bytes of all files together, at most.
    pub bytes: u64,
    /// Folders below the top one, at most.
    pub depth: usize,
}

impl Default for Limits {
    /// 256 files, 16 MiB, 8 levels: a configuration is a script and a few small files, and all
    /// of it is read into memory before anything is written.
    fn default() -> Self {
        Self {
            files: 256,
            bytes: 16 * MIB,
            depth: 8,
        }
    }
}

/// What `lockstep bundle` is asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// A file to write, or an existing directory to write the default name into; the current
    /// directory when `None`.
    pub output: Option<PathBuf>,
    /// Make a configuration of this folder instead of the bundle.
    pub configuration: Option<PathBuf>,
    /// The configuration's limits.
    pub limits: Limits,
}

/// What kind of zip was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// lockstep's bundle.
    Bundle,
    /// A bundle configuration.
    Configuration,
}

/// A zip written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// Bundle or configuration.
    pub kind: Kind,
    /// Where it is.
    pub path: PathBuf,
    /// The SHA-256 of the file.
    pub digest: Digest,
}

impl Written {
    /// Its part of a ConductR bundle id: the first 32 hex characters of the digest (for a
    /// configuration, the part after the `-`).
    pub fn id_part(&self) -> String {
        BundleId::of(&self.digest, None).to_string()
    }
}

/// What `lockstep bundle` prints: the path, then `digest <64 hex>`, then `id <32 hex>`.
impl fmt::Display for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.path.display())?;
        writeln!(f, "digest {}", self.digest)?;
        writeln!(f, "id {}", self.id_part())
    }
}

/// Why no zip was written (and nothing is left behind).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The running binary cannot be read.
    Executable(io::Error),
    /// The configuration folder is not a folder (or is not there).
    NotAFolder {
        /// The folder given.
        path: PathBuf,
        /// Why, when the system said.
        error: Option<io::Error>,
    },
    /// The configuration folder holds no `runtime-config.sh`.
    NoRuntimeConfig {
        /// The folder.
        folder: PathBuf,
    },
    /// A file of the folder cannot be read.
    Read {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// A symbolic link that leads out of the folder, nowhere, or to anything but a regular
    /// file.
    Link {
        /// The link.
        path: PathBuf,
    },
    /// Something that is neither a file, a folder nor a link (a socket, a device).
    Special {
        /// It.
        path: PathBuf,
    },
    /// A name that is not UTF-8, or holds `\`: it cannot be a zip entry's.
    Name {
        /// The file.
        path: PathBuf,
    },
    /// A file other than the top `bundle.conf` whose name ends with `bundle.conf`: ConductR
    /// would take the first such entry as the overlay.
    StrayOverlay {
        /// The file.
        path: PathBuf,
    },
    /// More than [`Limits::files`] files.
    TooManyFiles {
        /// The limit.
        limit: usize,
    },
    /// More than [`Limits::bytes`] bytes.
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// Folders nested deeper than [`Limits::depth`].
    TooDeep {
        /// The first folder too deep.
        path: PathBuf,
    },
    /// The zip cannot be written there.
    Write {
        /// The file being written.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The zip writer refused (an archive that would need ZIP64).
    Zip(ZipError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Executable(e) => write!(f, "cannot read the running binary: {e}"),
            Self::NotAFolder { path, error } => {
                write!(f, "--configuration {}: not a folder", path.display())?;
                error.as_ref().map_or(Ok(()), |e| write!(f, " ({e})"))
            }
            Self::NoRuntimeConfig { folder } => write!(
                f,
                "{}: holds no {RUNTIME_CONFIG}, which a configuration needs (ConductR sources it \
                 before it starts lockstep: export BINTRAY_WEBHOOK_SECRET and \
                 LOCKSTEP_REPOSITORY there)",
                folder.display()
            ),
            Self::Read { path, error } => write!(f, "{}: {error}", path.display()),
            Self::Link { path } => write!(
                f,
                "{}: a symbolic link is followed only to a regular file inside the folder",
                path.display()
            ),
            Self::Special { path } => write!(
                f,
                "{}: neither a file nor a folder (a configuration holds files)",
                path.display()
            ),
            Self::Name { path } => write!(
                f,
                "{}: a name in a zip must be UTF-8 without `\\`",
                path.display()
            ),
            Self::StrayOverlay { path } => write!(
                f,
                "{}: only the top {OVERLAY} may end with `{OVERLAY}` (ConductR would read the \
                 first such file as the overlay)",
                path.display()
            ),
            Self::TooManyFiles { limit } => {
                write!(f, "a configuration holds at most {limit} files")
            }
            Self::TooLarge { limit } => {
                write!(f, "a configuration holds at most {limit} bytes in all")
            }
            Self::TooDeep { path } => write!(
                f,
                "{}: folders nested too deep for a configuration",
                path.display()
            ),
            Self::Write { path, error } => write!(f, "cannot write {}: {error}", path.display()),
            Self::Zip(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Executable(e) | Self::Read { error: e, .. } | Self::Write { error: e, .. } => {
                Some(e)
            }
            Self::Zip(e) => Some(e),
            _ => None,
        }
    }
}

/// Writes the bundle, or the configuration of [`Options::configuration`].
pub fn run(options: &Options) -> Result<Written, Error> {
    let target = Target::of(options.output.as_deref());
    match &options.configuration {
        None => {
            let binary = read_running_binary().map_err(Error::Executable)?;
            write_bundle(&binary, &target)
        }
        Some(folder) => {
            let configuration = Configuration::read(folder, options.limits)?;
            configuration.write(&target)
        }
    }
}

// ---- the bundle ------------------------------------------------------------------------------

/// The compatibilityVersion of a version, as sbt-conductr derives it: the major version
/// (`1.4.2` → `1`), but for a `0.y.z` version the `0.y` (`0.1.0` → `0.1`): before 1.0, Cargo's
/// semver makes every minor version a breaking one, and lockstep replaces a running bundle
/// only by one of the same compatibilityVersion.
pub fn compatibility_version(version: &str) -> &str {
    let end = match version.strip_prefix("0.") {
        Some(rest) => "0.".len() + rest.find('.').unwrap_or(rest.len()),
        None => version.find('.').unwrap_or(version.len()),
    };
    &version[..end]
}

/// The bundle.conf of lockstep `version` whose binary is `binary_len` bytes: every field
/// ConductR needs (docs/PROTOCOL.md §4), one component `lockstep` that runs `lockstep serve`,
/// and the endpoint `deployments` that ConductR-HAProxy routes `/deployments` to on port 9000
/// (ConductR passes its address as `DEPLOYMENTS_BIND_IP` and `DEPLOYMENTS_BIND_PORT`, which
/// `lockstep serve` listens on). The repository and the secret come from the configuration's
/// `runtime-config.sh` (`LOCKSTEP_REPOSITORY`, `BINTRAY_WEBHOOK_SECRET`).
pub fn bundle_conf(version: &str, binary_len: u64) -> String {
    let compatibility = compatibility_version(version);
    let disk_space = binary_len.div_ceil(MIB).saturating_mul(MIB) + DISK_HEADROOM;
    format!(
        r#"# {NAME} {version} as a ConductR bundle, written by `lockstep bundle`.
version              = "1"
name                 = "{NAME}"
compatibilityVersion = "{compatibility}"
system               = "{NAME}"
systemVersion        = "{compatibility}"
nrOfCpus             = {NR_OF_CPUS}
memory               = {MEMORY}
diskSpace            = {disk_space}
roles                = ["web"]
tags                 = ["{version}"]
annotations          = {{}}
components = {{
  {NAME} = {{
    description      = "lockstep: a continuous-delivery deployer for ConductR clusters"
    file-system-type = "universal"
    start-command    = ["{NAME}/bin/{NAME}", "serve"]
    endpoints = {{
      deployments = {{
        bind-protocol = "http"
        bind-port     = 0
        service-name  = "deployments"
        acls          = [{{ http = {{ requests = [{{ path-beg = "/deployments" }}] }} }}]
      }}
    }}
  }}
}}
"#
    )
}

/// The bundle's top directory, `lockstep-<version>`.
fn bundle_folder() -> String {
    format!("{NAME}-{VERSION}")
}

/// The path of the binary inside the bundle, as the start command names it below the top
/// directory.
fn binary_entry() -> String {
    format!("{}/{NAME}/bin/{NAME}", bundle_folder())
}

/// The binary this process runs. On Linux through `/proc/self/exe`, which opens the very file
/// being run even if its path was replaced since (a rebuild) or removed.
fn read_running_binary() -> io::Result<Vec<u8>> {
    if cfg!(target_os = "linux")
        && let Ok(bytes) = fs::read("/proc/self/exe")
    {
        return Ok(bytes);
    }
    fs::read(std::env::current_exe()?)
}

fn write_bundle(binary: &[u8], target: &Target) -> Result<Written, Error> {
    let len = u64::try_from(binary.len()).unwrap_or(u64::MAX);
    let conf = bundle_conf(VERSION, len);
    let folder = bundle_folder();
    let conf_entry = format!("{folder}/bundle.conf");
    let binary_entry = binary_entry();
    let entries = [
        Entry::deflated(&conf_entry, conf.as_bytes()),
        // Stored: deflating a debug build's 40 MB takes some 20 s (miniz_oxide unoptimised),
        // and would save about half of a release build's few MB.
        Entry::stored(&binary_entry, binary).executable(),
    ];
    write_zip(target, &folder, &entries, Kind::Bundle)
}

// ---- the configuration -----------------------------------------------------------------------

/// A configuration folder, read and checked: the files in the order they are written.
#[derive(Clone, PartialEq, Eq)]
struct Configuration {
    /// The top directory in the zip, and the prefix of its file name.
    top: String,
    files: Vec<ConfigFile>,
}

/// Only the names and sizes: the contents are secrets.
impl fmt::Debug for Configuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Configuration")
            .field("top", &self.top)
            .field(
                "files",
                &self
                    .files
                    .iter()
                    .map(|file| (&file.name, file.data.len(), file.executable))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[derive(Clone, PartialEq, Eq)]
struct ConfigFile {
    /// `/`-separated, relative to the folder.
    name: String,
    data: Vec<u8>,
    executable: bool,
}

impl Configuration {
    fn read(folder: &Path, limits: Limits) -> Result<Self, Error> {
        let not_a_folder = |error| Error::NotAFolder {
            path: folder.to_path_buf(),
            error,
        };
        let root = folder.canonicalize().map_err(|e| not_a_folder(Some(e)))?;
        if !root.is_dir() {
            return Err(not_a_folder(None));
        }
        // Checked first, so that a folder without it is told so whatever else it holds.
        if !root.join(RUNTIME_CONFIG).is_file() {
            return Err(Error::NoRuntimeConfig {
                folder: folder.to_path_buf(),
            });
        }
        let top = root
            .file_name()
            .and_then(|name| name.to_str())
            .filter(|name| Segment::parse(name).is_ok())
            .unwrap_or(DEFAULT_CONFIGURATION_NAME)
            .to_owned();
        let mut walk = Walk {
            root: &root,
            shown: folder,
            limits,
            bytes: 0,
            files: Vec::new(),
        };
        walk.folder(&root, "", 0)?;
        let mut files = walk.files;
        // The overlay first (readers take the first entry that ends with bundle.conf), the
        // script next, then the rest by name: the same folder always gives the same zip.
        files.sort_by(|a, b| (rank(&a.name), &a.name).cmp(&(rank(&b.name), &b.name)));
        if !files.iter().any(|file| file.name == RUNTIME_CONFIG) {
            return Err(Error::NoRuntimeConfig {
                folder: folder.to_path_buf(),
            });
        }
        Ok(Self { top, files })
    }

    fn write(&self, target: &Target) -> Result<Written, Error> {
        let names: Vec<String> = self
            .files
            .iter()
            .map(|file| format!("{}/{}", self.top, file.name))
            .collect();
        let entries: Vec<Entry<'_>> = self
            .files
            .iter()
            .zip(&names)
            .map(|(file, name)| Entry {
                executable: file.executable,
                ..Entry::deflated(name, &file.data)
            })
            .collect();
        write_zip(target, &self.top, &entries, Kind::Configuration)
    }
}

fn rank(name: &str) -> u8 {
    match name {
        OVERLAY => 0,
        RUNTIME_CONFIG => 1,
        _ => 2,
    }
}

/// A walk of a configuration folder.
struct Walk<'a> {
    /// The folder, canonical: links must stay below it.
    root: &'a Path,
    /// The folder as given, for the messages.
    shown: &'a Path,
    limits: Limits,
    bytes: u64,
    files: Vec<ConfigFile>,
}

impl Walk<'_> {
    /// Takes the files of `dir`, whose name relative to the root is `prefix` (`""` or ending
    /// with `/`), `depth` folders below the root.
    fn folder(&mut self, dir: &Path, prefix: &str, depth: usize) -> Result<(), Error> {
        let read = |error| Error::Read {
            path: self.shown.join(prefix),
            error,
        };
        let mut entries = fs::read_dir(dir)
            .map_err(read)?
            .collect::<io::Result<Vec<_>>>()
            .map_err(read)?;
        entries.sort_by_key(fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name();
            let shown = self.shown.join(prefix).join(&name);
            let name = name
                .to_str()
                .filter(|n| !n.contains('\\'))
                .ok_or_else(|| Error::Name {
                    path: shown.clone(),
                })?;
            let relative = format!("{prefix}{name}");
            let kind = entry.file_type().map_err(|error| Error::Read {
                path: shown.clone(),
                error,
            })?;
            if kind.is_dir() {
                if depth >= self.limits.depth {
                    return Err(Error::TooDeep { path: shown });
                }
                self.folder(&path, &format!("{relative}/"), depth + 1)?;
            } else if kind.is_file() {
                self.file(&path, relative, shown)?;
            } else if kind.is_symlink() {
                let inside = path
                    .canonicalize()
                    .ok()
                    .filter(|target| target.starts_with(self.root) && target.is_file());
                let Some(target) = inside else {
                    return Err(Error::Link { path: shown });
                };
                self.file(&target, relative, shown)?;
            } else {
                return Err(Error::Special { path: shown });
            }
        }
        Ok(())
    }

    fn file(&mut self, path: &Path, name: String, shown: PathBuf) -> Result<(), Error> {
        if name != OVERLAY && name.ends_with(OVERLAY) {
            return Err(Error::StrayOverlay { path: shown });
        }
        if self.files.len() >= self.limits.files {
            return Err(Error::TooManyFiles {
                limit: self.limits.files,
            });
        }
        let read = |error| Error::Read {
            path: shown.clone(),
            error,
        };
        let metadata = fs::metadata(path).map_err(read)?;
        let too_large = Error::TooLarge {
            limit: self.limits.bytes,
        };
        if self.bytes.saturating_add(metadata.len()) > self.limits.bytes {
            return Err(too_large);
        }
        let data = fs::read(path).map_err(read)?;
        // Read again in case it grew meanwhile.
        self.bytes = self
            .bytes
            .saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX));
        if self.bytes > self.limits.bytes {
            return Err(too_large);
        }
        self.files.push(ConfigFile {
            name,
            data,
            executable: is_executable(&metadata),
        });
        Ok(())
    }
}

#[cfg(unix)]
fn is_executable(metadata: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &fs::Metadata) -> bool {
    false
}

// ---- writing ---------------------------------------------------------------------------------

/// Where a zip goes: a directory to write it into under its default name, or a file.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// `<dir>/<name>-<digest>.zip`; the bare file name for the current directory.
    Dir(Option<PathBuf>),
    /// This file.
    File(PathBuf),
}

impl Target {
    fn of(output: Option<&Path>) -> Self {
        match output {
            None => Self::Dir(None),
            Some(dir) if dir.is_dir() => Self::Dir(Some(dir.to_path_buf())),
            Some(file) => Self::File(file.to_path_buf()),
        }
    }

    /// The directory the file goes into (where the temporary file is made, so that the rename
    /// stays on one file system).
    fn dir(&self) -> &Path {
        let dir = match self {
            Self::Dir(dir) => dir.as_deref(),
            Self::File(file) => file.parent(),
        };
        dir.filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    /// The file asked for, or the directory.
    fn shown(&self) -> &Path {
        match self {
            Self::Dir(_) => self.dir(),
            Self::File(file) => file,
        }
    }

    fn path(&self, prefix: &str, digest: &Digest) -> PathBuf {
        let name = format!("{prefix}-{digest}.zip");
        match self {
            Self::Dir(None) => PathBuf::from(name),
            Self::Dir(Some(dir)) => dir.join(name),
            Self::File(file) => file.clone(),
        }
    }
}

/// A file being written under a temporary name; removed when dropped unless renamed.
#[derive(Debug)]
struct Staged {
    path: PathBuf,
    done: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes `entries` to a temporary file in the target's directory, flushes it to disk and
/// renames it to its name, `<prefix>-<digest>.zip` unless the target names a file.
fn write_zip(
    target: &Target,
    prefix: &str,
    entries: &[Entry<'_>],
    kind: Kind,
) -> Result<Written, Error> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = target.dir();
    let temporary = dir.join(format!(
        ".{prefix}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    // A failure names what was asked for: the file, or the directory.
    let shown = target.shown();
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |error| Error::Write { path, error }
    };
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .map_err(write_error(shown))?;
    let mut staged = Staged {
        path: temporary,
        done: false,
    };
    let mut zip = ZipWriter::new(BufWriter::new(Hashing::new(file)));
    for entry in entries {
        zip.add(entry).map_err(|e| zip_error(e, shown))?;
    }
    let hashing = zip
        .finish()
        .map_err(|e| zip_error(e, shown))?
        .into_inner()
        .map_err(|e| Error::Write {
            path: shown.to_path_buf(),
            error: e.into_error(),
        })?;
    let (file, digest) = hashing.finish();
    file.sync_all().map_err(write_error(shown))?;
    drop(file);
    let path = target.path(prefix, &digest);
    fs::rename(&staged.path, &path).map_err(write_error(&path))?;
    staged.done = true;
    // The rename reaches the disk with the directory.
    if cfg!(unix) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_error(dir))?;
    }
    Ok(Written { kind, path, digest })
}

fn zip_error(e: ZipError, path: &Path) -> Error {
    match e {
        ZipError::Io(error) => Error::Write {
            path: path.to_path_buf(),
            error,
        },
        other => Error::Zip(other),
    }
}

/// A writer that hashes what it passes on.
struct Hashing<W> {
    inner: W,
    sha: Sha256,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            sha: Sha256::new(),
        }
    }

    fn finish(self) -> (W, Digest) {
        (self.inner, Digest::from_bytes(self.sha.finalize().into()))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> fmt::Debug for Hashing<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hashing").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use lockstep_core::archive::{Archive, Inflater};
    use lockstep_core::hocon::{Document, Value};

    use super::*;
    use crate::tempdir::TempDir;
    use crate::zip::tests::{assert_external_tools_accept, read_conf};

    /// `(name, mode)` of each entry, in central directory order, read from the central headers.
    fn central(zip: &[u8]) -> Vec<(String, u32)> {
        let u16_at = |at: usize| usize::from(u16::from_le_bytes([zip[at], zip[at + 1]]));
        let u32_at = |at: usize| u32::from_le_bytes(zip[at..at + 4].try_into().unwrap());
        let end = zip.len() - 22;
        assert_eq!(u32_at(end), 0x0605_4b50, "the end record");
        let mut at = u32_at(end + 16) as usize;
        let mut entries = vec![];
        for _ in 0..u16_at(end + 10) {
            assert_eq!(u32_at(at), 0x0201_4b50, "a central header");
            let name_len = u16_at(at + 28);
            let name = String::from_utf8(zip[at + 46..at + 46 + name_len].to_vec()).unwrap();
            entries.push((name, u32_at(at + 38) >> 16));
            at += 46 + name_len + u16_at(at + 30) + u16_at(at + 32);
        }
        entries
    }

    /// The content of the first entry whose name ends with `suffix`, through core's reader.
    fn content(zip: &[u8], suffix: &str) -> Vec<u8> {
        let mut reader: &[u8] = zip;
        let mut archive = Archive::open(&mut reader).unwrap();
        let entry = archive.find(suffix.as_bytes()).unwrap();
        let mut out = vec![0; zip.len() * 2 + 1024];
        let mut inflater = Box::new(Inflater::new());
        archive
            .read(&entry, &mut inflater, &mut out)
            .unwrap()
            .to_vec()
    }

    fn text<'a>(doc: &Document<'a>, path: &str) -> String {
        doc.get_str::<256>(path)
            .unwrap_or_else(|| panic!("{path} is missing"))
            .unwrap()
            .to_string()
    }

    /// What `dir` holds, sorted by name.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn write(dir: &Path, name: &str, content: &str) {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    #[cfg(unix)]
    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    // ---- the bundle --------------------------------------------------------------------------

    // sbt-conductr's rule (the major version) with Cargo's for 0.y (the minor breaks).
    #[test]
    fn test_pack_compatibility_version_vectors() {
        for (version, compatibility) in [
            ("0.1.0", "0.1"),
            ("0.12.3", "0.12"),
            ("0.0.7", "0.0"),
            ("1.0.0", "1"),
            ("2.3.4-rc.1", "2"),
            ("10.0.1", "10"),
            ("3", "3"),
            ("0.4", "0.4"),
        ] {
            assert_eq!(compatibility_version(version), compatibility, "{version}");
        }
    }

    #[test]
    fn test_pack_bundle_conf_parses_with_what_conductr_needs() {
        let conf = bundle_conf("0.1.0", 3 * MIB + 1);
        let doc = Document::parse(&conf).unwrap();
        assert_eq!(text(&doc, "version"), "1");
        assert_eq!(text(&doc, "name"), "lockstep");
        assert_eq!(text(&doc, "compatibilityVersion"), "0.1");
        assert_eq!(text(&doc, "system"), "lockstep");
        assert_eq!(text(&doc, "systemVersion"), "0.1");
        assert_eq!(text(&doc, "nrOfCpus"), "0.1");
        assert_eq!(doc.get_u64("memory"), Some(64 * MIB));
        assert_eq!(doc.get_u64("diskSpace"), Some(4 * MIB + DISK_HEADROOM));
        let list = |path: &str| match doc.get(path) {
            Some(Value::Array(array)) => array
                .iter()
                .map(|v| {
                    v.as_text()
                        .unwrap()
                        .to_heapless::<64>()
                        .unwrap()
                        .to_string()
                })
                .collect::<Vec<_>>(),
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(list("roles"), ["web"]);
        assert_eq!(list("tags"), ["0.1.0"]);
        assert_eq!(
            list("components.lockstep.start-command"),
            ["lockstep/bin/lockstep", "serve"]
        );
        let endpoint = "components.lockstep.endpoints.deployments";
        assert_eq!(text(&doc, &format!("{endpoint}.bind-protocol")), "http");
        assert_eq!(doc.get_u64(&format!("{endpoint}.bind-port")), Some(0));
        assert_eq!(
            text(&doc, &format!("{endpoint}.service-name")),
            "deployments"
        );
        match doc.get(&format!("{endpoint}.acls")) {
            Some(Value::Array(acls)) => assert_eq!(acls.len(), 1),
            other => panic!("acls: {other:?}"),
        }
        // The ACL as the README shows it, byte for byte.
        assert!(conf.contains(
            r#"acls          = [{ http = { requests = [{ path-beg = "/deployments" }] } }]"#
        ));
        // A 1.x version: the major version.
        let doc_text = bundle_conf("1.2.3", 0);
        let doc = Document::parse(&doc_text).unwrap();
        assert_eq!(text(&doc, "compatibilityVersion"), "1");
        assert_eq!(doc.get_u64("diskSpace"), Some(DISK_HEADROOM));
    }

    #[test]
    fn test_pack_bundle_zip_entries_and_permissions() {
        let dir = TempDir::new("lockstep-pack-test").unwrap();
        let binary = b"\x7fELF not really a binary".repeat(100);
        let written = write_bundle(&binary, &Target::of(Some(dir.path()))).unwrap();
        let zip = fs::read(&written.path).unwrap();
        assert_eq!(written.kind, Kind::Bundle);
        assert_eq!(written.digest, crate::zip::digest(&zip));
        let name = format!("lockstep-{VERSION}-{}.zip", written.digest);
        assert_eq!(written.path, dir.path().join(&name));
        assert_eq!(
            listing(dir.path()),
            [name.as_str()],
            "no temporary file left"
        );
        let top = format!("lockstep-{VERSION}");
        assert_eq!(
            central(&zip),
            [
                (format!("{top}/bundle.conf"), 0o100_644),
                (format!("{top}/lockstep/bin/lockstep"), 0o100_755),
            ]
        );
        assert_eq!(content(&zip, "/lockstep/bin/lockstep"), binary);
        let conf = read_conf(&zip);
        assert_eq!(conf, bundle_conf(VERSION, binary.len() as u64).as_bytes());
        assert_external_tools_accept(&zip);
        // What the command prints.
        let id = &written.digest.to_string()[..32];
        assert_eq!(
            written.to_string(),
            format!(
                "{}\ndigest {}\nid {id}\n",
                written.path.display(),
                written.digest
            )
        );
        // The same binary again: the same bytes, under the same name.
        let again = write_bundle(&binary, &Target::of(Some(dir.path()))).unwrap();
        assert_eq!(again, written);
        assert_eq!(listing(dir.path()), [name]);
    }

    #[test]
    fn test_pack_output_file_and_current_directory() {
        let dir = TempDir::new("lockstep-pack-test").unwrap();
        let file = dir.path().join("mine.zip");
        let written = write_bundle(b"x", &Target::of(Some(&file))).unwrap();
        assert_eq!(written.path, file);
        assert_eq!(listing(dir.path()), ["mine.zip"]);
        // No directory: the bare name, in the current directory.
        let digest = written.digest;
        assert_eq!(
            Target::of(None).path("lockstep-0.1.0", &digest),
            PathBuf::from(format!("lockstep-0.1.0-{digest}.zip"))
        );
        assert_eq!(Target::of(None).dir(), Path::new("."));
        assert_eq!(Target::of(Some(Path::new("x.zip"))).dir(), Path::new("."));
    }

    #[test]
    fn test_reject_pack_unwritable_output_leaves_nothing() {
        let dir = TempDir::new("lockstep-pack-test").unwrap();
        write(dir.path(), "file", "not a directory");
        for output in [
            dir.path().join("missing/out.zip"),
            dir.path().join("file/out.zip"),
        ] {
            let e = write_bundle(b"x", &Target::of(Some(&output))).unwrap_err();
            assert!(matches!(e, Error::Write { .. }), "{e}");
            let named = format!("cannot write {}: ", output.display());
            assert!(e.to_string().starts_with(&named), "{e}");
        }
        assert_eq!(listing(dir.path()), ["file"]);
    }

    #[test]
    fn test_pack_staged_file_is_removed_unless_renamed() {
        let dir = TempDir::new("lockstep-pack-test").unwrap();
        let path = dir.path().join("staged");
        fs::write(&path, b"part").unwrap();
        drop(Staged {
            path: path.clone(),
            done: false,
        });
        assert!(!path.exists());
        fs::write(&path, b"whole").unwrap();
        drop(Staged {
            path: path.clone(),
            done: true,
        });
        assert!(path.exists());
    }

    #[test]
    fn test_pack_hashing_writer_hashes_what_it_writes() {
        let mut hashing = Hashing::new(Vec::new());
        hashing.write_all(b"ab").unwrap();
        hashing.write_all(b"c").unwrap();
        let (bytes, digest) = hashing.finish();
        assert_eq!(bytes, b"abc");
        // FIPS 180-4's example.
        assert_eq!(
            digest.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    // ---- the configuration -------------------------------------------------------------------

    fn configuration_dir(name: &str) -> (TempDir, PathBuf) {
        let dir = TempDir::new("lockstep-pack-test").unwrap();
        let folder = dir.path().join(name);
        fs::create_dir(&folder).unwrap();
        (dir, folder)
    }

    fn options(folder: &Path, output: &Path) -> Options {
        Options {
            output: Some(output.to_path_buf()),
            configuration: Some(folder.to_path_buf()),
            limits: Limits::default(),
        }
    }

    #[test]
    fn test_pack_configuration_layout() {
        let (dir, folder) = configuration_dir("lockstep-prod");
        write(
            &folder,
            "runtime-config.sh",
            "export BINTRAY_WEBHOOK_SECRET=s3cret\n",
        );
        write(&folder, "bundle.conf", "nrOfCpus = 0.2\n");
        write(&folder, "a/notes.txt", "notes\n");
        write(&folder, "z.txt", "z\n");
        #[cfg(unix)]
        {
            chmod(&folder.join("runtime-config.sh"), 0o700);
            std::os::unix::fs::symlink("z.txt", folder.join("link.txt")).unwrap();
        }
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let written = run(&options(&folder, &out)).unwrap();
        assert_eq!(written.kind, Kind::Configuration);
        let name = format!("lockstep-prod-{}.zip", written.digest);
        assert_eq!(written.path, out.join(&name));
        assert_eq!(listing(&out), [name]);
        let zip = fs::read(&written.path).unwrap();
        assert_eq!(written.digest, crate::zip::digest(&zip));
        let mut expected = vec![
            ("lockstep-prod/bundle.conf".to_owned(), 0o100_644),
            ("lockstep-prod/runtime-config.sh".to_owned(), 0o100_755),
            ("lockstep-prod/a/notes.txt".to_owned(), 0o100_644),
        ];
        if cfg!(unix) {
            expected.push(("lockstep-prod/link.txt".to_owned(), 0o100_644));
        }
        expected.push(("lockstep-prod/z.txt".to_owned(), 0o100_644));
        assert_eq!(central(&zip), expected);
        assert_eq!(read_conf(&zip), b"nrOfCpus = 0.2\n");
        assert_eq!(
            content(&zip, "/runtime-config.sh"),
            b"export BINTRAY_WEBHOOK_SECRET=s3cret\n"
        );
        assert_eq!(content(&zip, "/link.txt"), b"z\n");
        assert_external_tools_accept(&zip);
        // Neither what it prints nor its Debug shows a secret.
        let configuration = Configuration::read(&folder, Limits::default()).unwrap();
        assert!(!format!("{configuration:?}").contains("s3cret"));
        assert!(!written.to_string().contains("s3cret"));
        // The same folder again: the same zip.
        let again = run(&options(&folder, &out)).unwrap();
        assert_eq!(again.digest, written.digest);
    }

    #[test]
    fn test_pack_configuration_without_overlay_and_odd_folder_name() {
        let (dir, folder) = configuration_dir("my config");
        write(&folder, "runtime-config.sh", "export A=1\n");
        let out = dir.path().join("c.zip");
        let written = run(&options(&folder, &out)).unwrap();
        assert_eq!(written.path, out);
        let zip = fs::read(&out).unwrap();
        assert_eq!(
            central(&zip),
            [("config/runtime-config.sh".to_owned(), 0o100_644)]
        );
    }

    #[test]
    fn test_reject_pack_configuration_without_runtime_config() {
        let (dir, folder) = configuration_dir("conf");
        write(&folder, "bundle.conf", "a = 1\n");
        write(&folder, "sub/runtime-config.sh", "export A=1\n");
        let e = run(&options(&folder, dir.path())).unwrap_err();
        assert!(matches!(e, Error::NoRuntimeConfig { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("{}: holds no runtime-config.sh", folder.display())),
            "{e}"
        );
        assert_eq!(listing(dir.path()), ["conf"], "nothing written");
        // Not a folder at all.
        for path in [dir.path().join("missing"), folder.join("bundle.conf")] {
            let e = run(&options(&path, dir.path())).unwrap_err();
            assert!(matches!(e, Error::NotAFolder { .. }), "{e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn test_reject_pack_configuration_links_out_and_specials() {
        use std::os::unix::fs::symlink;

        let (dir, folder) = configuration_dir("conf");
        write(&folder, "runtime-config.sh", "export A=1\n");
        write(dir.path(), "outside", "secret of another\n");
        let refused = |link: &str| {
            let e = run(&options(&folder, dir.path())).unwrap_err();
            assert!(matches!(e, Error::Link { .. }), "{link}: {e}");
            assert!(e.to_string().contains(link), "{e}");
            fs::remove_file(folder.join(link)).unwrap();
        };
        symlink(dir.path().join("outside"), folder.join("out")).unwrap();
        refused("out");
        symlink("../outside", folder.join("up")).unwrap();
        refused("up");
        symlink("nowhere", folder.join("dangling")).unwrap();
        refused("dangling");
        fs::create_dir(folder.join("sub")).unwrap();
        symlink("sub", folder.join("dir-link")).unwrap();
        refused("dir-link");
        fs::remove_dir(folder.join("sub")).unwrap();
        // A socket is no file.
        let socket = std::os::unix::net::UnixListener::bind(folder.join("sock")).unwrap();
        let e = run(&options(&folder, dir.path())).unwrap_err();
        assert!(matches!(e, Error::Special { .. }), "{e}");
        drop(socket);
        fs::remove_file(folder.join("sock")).unwrap();
        assert_eq!(listing(dir.path()), ["conf", "outside"], "nothing written");
        run(&options(&folder, dir.path())).unwrap();
    }

    #[test]
    fn test_reject_pack_configuration_stray_overlay() {
        let (dir, folder) = configuration_dir("conf");
        write(&folder, "runtime-config.sh", "export A=1\n");
        for stray in ["sub/bundle.conf", "old.bundle.conf"] {
            write(&folder, stray, "a = 1\n");
            let e = run(&options(&folder, dir.path())).unwrap_err();
            assert!(matches!(e, Error::StrayOverlay { .. }), "{stray}: {e}");
            fs::remove_file(folder.join(stray)).unwrap();
        }
        assert_eq!(listing(dir.path()), ["conf"]);
    }

    #[test]
    fn test_reject_pack_configuration_over_limits() {
        let (dir, folder) = configuration_dir("conf");
        write(&folder, "runtime-config.sh", "export A=1\n");
        write(&folder, "a", "12345");
        write(&folder, "b/c/d", "x");
        let limited = |limits: Limits| {
            let mut options = options(&folder, dir.path());
            options.limits = limits;
            run(&options)
        };
        let all = Limits::default();
        let e = limited(Limits { files: 2, ..all }).unwrap_err();
        assert!(matches!(e, Error::TooManyFiles { limit: 2 }), "{e}");
        let e = limited(Limits { bytes: 15, ..all }).unwrap_err();
        assert!(matches!(e, Error::TooLarge { limit: 15 }), "{e}");
        let e = limited(Limits { depth: 1, ..all }).unwrap_err();
        assert!(matches!(e, Error::TooDeep { .. }), "{e}");
        assert_eq!(listing(dir.path()), ["conf"], "nothing written");
        // At the limits exactly.
        limited(Limits {
            files: 3,
            bytes: 17,
            depth: 2,
        })
        .unwrap();
    }

    #[test]
    fn test_pack_error_messages_are_one_line() {
        let path = PathBuf::from("conf/x");
        let errors = [
            Error::Executable(io::Error::other("gone")),
            Error::NotAFolder {
                path: path.clone(),
                error: None,
            },
            Error::NoRuntimeConfig {
                folder: path.clone(),
            },
            Error::Link { path: path.clone() },
            Error::Special { path: path.clone() },
            Error::Name { path: path.clone() },
            Error::StrayOverlay { path: path.clone() },
            Error::TooManyFiles { limit: 1 },
            Error::TooLarge { limit: 1 },
            Error::TooDeep { path: path.clone() },
            Error::Zip(ZipError::TooLarge),
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{text}");
        }
    }
}
