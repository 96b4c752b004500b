//! `lockstep publish`: the CI's step. A bundle zip into a directory repository in the published
//! layout (docs/PROTOCOL.md §4), as version `<tag>-<sha256 of the zip>`, then, if asked, the
//! signed webhook to the service that deploys it.
//!
//! [`run`]'s rules, in its order:
//!
//! 1. Everything the command line names is checked before the repository is touched: the
//!    organisation, repository and tag, the `--notify` URL and the secret, then the bundle
//!    ([`BundleConf::read`]) and the configuration ([`check_configuration`]). A refusal writes
//!    nothing.
//! 2. The package is bundle.conf's `name`; the tag is `--tag`, else bundle.conf's first `tags`
//!    entry, else `v` + its `compatibilityVersion` ([`BundleConf::tag`]). Each must be a segment.
//! 3. The repository's own rules ([`crate::repository`]): files renamed into place, the index
//!    changed under its lock (publishers in several processes lose no entry), and a republish of
//!    what is there changes nothing, not even a file's time.
//! 4. The webhook is sent once the index is written; when it fails, the publication stays done,
//!    and the error says so.

use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use lockstep_core::agent::http::UrlError;
use lockstep_core::archive::{self, Archive, ArchiveError, Inflater, OutOfBounds};
use lockstep_core::bundle::{self, Segment, SegmentError, Version};
use lockstep_core::hocon::{self, Document, HoconError, Value};
use lockstep_core::service::Asks;
use lockstep_core::signature::Secret;
use lockstep_core::webhook::{Target, TargetError};

use crate::client::{self, ClientError, Scheme, Session};
use crate::repository::{DirRepository, Publication, Release, RepoError};
use crate::secret::{self, SecretError};
use crate::tls::{CaFileError, Trust};
use crate::url::BaseUrl;

/// How long the webhook's connect, and each of its reads and writes, may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The name suffix of the entry a configuration must hold (docs/PROTOCOL.md §4).
pub const RUNTIME_CONFIG: &[u8] = b"runtime-config.sh";

/// What to publish, where, and whom to tell.
#[derive(Clone, Debug)]
pub struct Options {
    /// The bundle zip.
    pub bundle: PathBuf,
    /// The configuration zip to keep beside it.
    pub configuration: Option<PathBuf>,
    /// The repository's root directory.
    pub repository: PathBuf,
    /// The organisation ([`bundle::DEFAULT_ORG`] unless given).
    pub org: String,
    /// The repository within it ([`bundle::DEFAULT_REPO`] unless given).
    pub repo: String,
    /// The tag; bundle.conf's when `None`.
    pub tag: Option<String>,
    /// The webhook URL to notify once published.
    pub notify: Option<String>,
    /// The file holding the webhook secret; [`secret::ENV`] when `None`.
    pub secret_file: Option<PathBuf>,
    /// Sign with Bintray's scheme rather than `X-Lockstep-Signature`.
    pub bintray: bool,
    /// The webhook's time-out per wait.
    pub timeout: Duration,
    /// `--ca-file`: CAs trusted for an `https://` `--notify` beside the system's.
    pub ca_file: Option<PathBuf>,
}

impl Options {
    /// Publishes `bundle` into `repository` with every default.
    pub fn new(bundle: impl Into<PathBuf>, repository: impl Into<PathBuf>) -> Self {
        Self {
            bundle: bundle.into(),
            configuration: None,
            repository: repository.into(),
            org: bundle::DEFAULT_ORG.to_owned(),
            repo: bundle::DEFAULT_REPO.to_owned(),
            tag: None,
            notify: None,
            secret_file: None,
            bintray: false,
            timeout: DEFAULT_TIMEOUT,
            ca_file: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// What is wrong with a bundle zip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleError {
    /// Its bundle.conf cannot be read: not a zip, none in it, a broken entry.
    Archive(ArchiveError<OutOfBounds>),
    /// Its bundle.conf is not HOCON lockstep reads.
    Hocon(HoconError),
    /// A field it must have is missing (or not text).
    Missing(&'static str),
    /// A field is longer than 64 bytes.
    TooLong(&'static str),
    /// `tags` is neither absent nor an array whose first element is text.
    Tags,
    /// Its `name` is not a segment: it cannot name a package.
    Name(SegmentError),
    /// Its first tag is not a segment.
    FirstTag(SegmentError),
    /// `v` + its compatibilityVersion, the tag of a bundle without tags, is not a segment.
    CompatibilityTag(SegmentError),
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Archive(e) => write!(f, "no readable bundle.conf: {e}"),
            Self::Hocon(e) => write!(f, "bundle.conf: {e}"),
            Self::Missing(field) => write!(f, "bundle.conf has no {field}"),
            Self::TooLong(field) => write!(f, "bundle.conf's {field} is longer than 64 bytes"),
            Self::Tags => f.write_str("bundle.conf's tags is not an array of strings"),
            Self::Name(e) => write!(f, "bundle.conf's name {e}, so it cannot name a package"),
            Self::FirstTag(e) => {
                write!(f, "bundle.conf's first tag {e}: name the tag with --tag")
            }
            Self::CompatibilityTag(e) => write!(
                f,
                "the bundle has no tags, and v<compatibilityVersion> {e}: name the tag with --tag"
            ),
        }
    }
}

impl std::error::Error for BundleError {}

/// What is wrong with a configuration zip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigurationError {
    /// Not a zip lockstep reads.
    Archive(ArchiveError<OutOfBounds>),
    /// No entry named `runtime-config.sh`: not a configuration.
    NoRuntimeConfig,
    /// Its overlay bundle.conf cannot be read.
    Overlay(ArchiveError<OutOfBounds>),
    /// Its overlay bundle.conf is not HOCON lockstep reads.
    OverlayHocon(HoconError),
}

impl fmt::Display for ConfigurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Archive(e) => e.fmt(f),
            Self::NoRuntimeConfig => {
                f.write_str("no runtime-config.sh in the zip: not a bundle configuration")
            }
            Self::Overlay(e) => write!(f, "its bundle.conf cannot be read: {e}"),
            Self::OverlayHocon(e) => write!(f, "its bundle.conf: {e}"),
        }
    }
}

impl std::error::Error for ConfigurationError {}

/// What is wrong with a `--notify` URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifyUrlError {
    /// The scheme, host or port.
    Url(UrlError),
    /// Nothing after the host: no webhook path.
    NoPath,
    /// The path and query are not a webhook's.
    Target(TargetError),
    /// The webhook names another organisation or repository than the bundle is published in:
    /// the service would look for it elsewhere.
    Elsewhere,
}

impl fmt::Display for NotifyUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(e) => e.fmt(f),
            Self::NoPath => {
                f.write_str("no webhook path: expected /deployments/{org}/{repo}/{org}")
            }
            Self::Target(e) => e.fmt(f),
            Self::Elsewhere => f.write_str(
                "its organisation or repository is not the one the bundle is published in \
                 (--org, --repo)",
            ),
        }
    }
}

impl std::error::Error for NotifyUrlError {}

/// Why the webhook did not deploy the published version.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifyFailure {
    /// The service answered with a status from 300.
    Refused {
        /// The status.
        status: u16,
        /// The first line of its body.
        line: String,
    },
    /// No answer.
    NoAnswer(ClientError),
}

/// Why `lockstep publish` failed; [`Error::exit_code`] is how it exits.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A required argument is missing (its description).
    Missing(&'static str),
    /// `--org`, `--repo` or `--tag` is not a segment.
    Segment {
        /// The option.
        option: &'static str,
        /// What is wrong with it.
        error: SegmentError,
    },
    /// The `--notify` URL is not a webhook's.
    NotifyUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        error: NotifyUrlError,
    },
    /// `--notify` without a usable secret.
    Secret(SecretError),
    /// `--ca-file` cannot be used.
    CaFile(CaFileError),
    /// A zip cannot be read from disk.
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The bundle zip is not a bundle lockstep can publish.
    Bundle {
        /// The file.
        file: PathBuf,
        /// Why.
        error: BundleError,
    },
    /// The configuration zip is not a configuration.
    Configuration {
        /// The file.
        file: PathBuf,
        /// Why.
        error: ConfigurationError,
    },
    /// The repository refused the publication; it changed nothing.
    Repository(RepoError),
    /// Published, but the webhook failed.
    Notify {
        /// `<package>:<version>`.
        published: String,
        /// The webhook URL.
        url: String,
        /// What went wrong.
        failure: NotifyFailure,
    },
}

impl Error {
    /// 2 for what the command line says wrong (checked before anything is written); 1 for a
    /// publication or notification that failed.
    pub const fn exit_code(&self) -> i32 {
        match self {
            Self::Missing(_)
            | Self::Segment { .. }
            | Self::NotifyUrl { .. }
            | Self::Secret(_)
            | Self::CaFile(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(what) => write!(f, "{what}; see `lockstep publish --help`"),
            Self::Segment { option, error } => write!(f, "{option} {error}"),
            Self::NotifyUrl { url, error } => write!(f, "--notify `{url}`: {error}"),
            Self::Secret(e) => write!(f, "--notify: {e}"),
            Self::CaFile(e) => e.fmt(f),
            Self::Read { file, error } => write!(f, "{}: {error}", file.display()),
            Self::Bundle { file, error } => {
                write!(f, "{}: not a bundle: {error}", file.display())
            }
            Self::Configuration { file, error } => {
                write!(f, "{}: not a configuration: {error}", file.display())
            }
            Self::Repository(e) => write!(f, "nothing published: {e}"),
            Self::Notify {
                published,
                url,
                failure,
            } => {
                write!(f, "published {published}, but the notification failed: ")?;
                match failure {
                    NotifyFailure::Refused { status, line } => {
                        write!(f, "{url} answered {status}: {line}")
                    }
                    NotifyFailure::NoAnswer(e) => e.fmt(f),
                }
            }
        }
    }
}

impl std::error::Error for Error {}

// ---------------------------------------------------------------------------------------------
// The bundle and the configuration
// ---------------------------------------------------------------------------------------------

/// What publishing needs of a bundle's bundle.conf (docs/PROTOCOL.md §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleConf {
    /// `name`: the package, a valid [`Segment`].
    pub name: String,
    /// `compatibilityVersion` (or `compatibility-version`).
    pub compatibility_version: String,
    /// The first of `tags`, unchecked; `None` without tags.
    pub first_tag: Option<String>,
}

impl BundleConf {
    /// Reads the bundle.conf of the bundle `zip` through core's zip and HOCON readers, with the
    /// worker's limits (64 bytes a field).
    pub fn read(zip: &[u8]) -> Result<Self, BundleError> {
        let mut buf = vec![0u8; hocon::MAX_TEXT_LEN];
        let doc = conf_of(zip, &mut buf)
            .map_err(BundleError::Archive)?
            .map_err(BundleError::Hocon)?;
        let text = |field: &'static str| match doc.get_str::<{ bundle::MAX_SEGMENT_LEN }>(field) {
            Some(Ok(value)) => Ok(value.as_str().to_owned()),
            Some(Err(_)) => Err(BundleError::TooLong(field)),
            None => Err(BundleError::Missing(field)),
        };
        let name = text("name")?;
        Segment::parse(&name).map_err(BundleError::Name)?;
        let first_tag = match doc.get("tags") {
            None | Some(Value::Null) => None,
            Some(Value::Array(tags)) => match tags.iter().next() {
                None => None,
                Some(first) => Some(
                    first
                        .as_text()
                        .ok_or(BundleError::Tags)?
                        .to_heapless::<{ bundle::MAX_SEGMENT_LEN }>()
                        .map_err(|_| BundleError::FirstTag(SegmentError::TooLong))?
                        .as_str()
                        .to_owned(),
                ),
            },
            Some(_) => return Err(BundleError::Tags),
        };
        Ok(Self {
            name,
            compatibility_version: text("compatibilityVersion")?,
            first_tag,
        })
    }

    /// The tag of a version published without `--tag`: the first tag, else `v` +
    /// compatibilityVersion.
    pub fn tag(&self) -> Result<String, BundleError> {
        match &self.first_tag {
            Some(tag) => Segment::parse(tag)
                .map(|_| tag.clone())
                .map_err(BundleError::FirstTag),
            None => {
                let tag = format!("v{}", self.compatibility_version);
                Segment::parse(&tag).map_err(BundleError::CompatibilityTag)?;
                Ok(tag)
            }
        }
    }
}

/// The bundle.conf of `zip` (the first entry whose name ends with it), read into `buf` and
/// parsed: the outer error is the zip's, the inner one the HOCON's.
fn conf_of<'b>(
    zip: &[u8],
    buf: &'b mut [u8],
) -> Result<Result<Document<'b>, HoconError>, ArchiveError<OutOfBounds>> {
    let mut inflater = Box::new(Inflater::new());
    let mut reader = zip;
    let conf = archive::read_bundle_conf(&mut reader, &mut inflater, buf)?;
    Ok(Document::parse_bytes(conf))
}

/// Checks that `zip` is a bundle configuration (docs/PROTOCOL.md §4): a zip with an entry whose
/// name ends with `runtime-config.sh`, and, when it holds an overlay bundle.conf, one that
/// ConductR can merge.
pub fn check_configuration(zip: &[u8]) -> Result<(), ConfigurationError> {
    let mut archive = Archive::open(zip).map_err(ConfigurationError::Archive)?;
    match archive.find(RUNTIME_CONFIG) {
        Ok(_) => {}
        Err(ArchiveError::NotFound) => return Err(ConfigurationError::NoRuntimeConfig),
        Err(e) => return Err(ConfigurationError::Archive(e)),
    }
    let mut buf = vec![0u8; hocon::MAX_TEXT_LEN];
    match conf_of(zip, &mut buf) {
        Err(ArchiveError::NotFound) => Ok(()),
        Err(e) => Err(ConfigurationError::Overlay(e)),
        Ok(Err(e)) => Err(ConfigurationError::OverlayHocon(e)),
        Ok(Ok(_)) => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// The webhook URL
// ---------------------------------------------------------------------------------------------

/// A `--notify` URL: the service's `http://host[:port]`, and the webhook's path and query,
/// `/deployments/{org}/{repo}/{org}[?tag=T...]` (docs/PROTOCOL.md §1).
#[derive(Clone, Debug)]
pub struct NotifyUrl {
    base: BaseUrl,
    target: String,
}

impl NotifyUrl {
    /// Parses `text`, whose webhook must name `org` and `repo`, where the service will look for
    /// the published bundle.
    pub fn parse(text: &str, org: Segment<'_>, repo: Segment<'_>) -> Result<Self, NotifyUrlError> {
        let authority_at = text.find("://").map_or(0, |i| i.saturating_add(3));
        let path_at = text
            .get(authority_at..)
            .and_then(|rest| rest.find('/'))
            .map(|i| i.saturating_add(authority_at));
        let (base, target) = match path_at {
            Some(at) => text.split_at(at),
            None => (text, ""),
        };
        let base = BaseUrl::parse(base).map_err(|bad| NotifyUrlError::Url(bad.error))?;
        if target.is_empty() {
            return Err(NotifyUrlError::NoPath);
        }
        let webhook = Target::parse(target).map_err(NotifyUrlError::Target)?;
        if webhook.org != org || webhook.repo != repo {
            return Err(NotifyUrlError::Elsewhere);
        }
        Ok(Self {
            base,
            target: target.to_owned(),
        })
    }

    /// The whole URL.
    pub fn url(&self) -> String {
        client::target_of(&self.base, &self.target).1
    }
}

// ---------------------------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------------------------

/// Publishes by the module doc's rules, printing a line on `out` for each thing done: the
/// bundle (`published <package>:<version> to <file>`, or `already published ... at <file>`), the
/// configuration, the version alone, and the service's answer (`notified <url>: 202 <id>`).
pub fn run(options: &Options, out: &mut dyn Write) -> Result<(), Error> {
    // 1. The command line.
    let segment =
        |option, value| Segment::parse(value).map_err(|error| Error::Segment { option, error });
    let org = segment("--org", &options.org)?;
    let repo = segment("--repo", &options.repo)?;
    if let Some(tag) = &options.tag {
        segment("--tag", tag)?;
    }
    let notify = match &options.notify {
        Some(url) => Some(notification(options, url, org, repo)?),
        None => None,
    };

    // The bundle and configuration.
    let read = |file: &PathBuf| {
        std::fs::read(file).map_err(|error| Error::Read {
            file: file.clone(),
            error,
        })
    };
    let zip = read(&options.bundle)?;
    let bundle_error = |error| Error::Bundle {
        file: options.bundle.clone(),
        error,
    };
    let conf = BundleConf::read(&zip).map_err(bundle_error)?;
    let package = Segment::parse(&conf.name).map_err(|e| bundle_error(BundleError::Name(e)))?;
    let tag = match &options.tag {
        Some(tag) => tag.clone(),
        None => conf.tag().map_err(bundle_error)?,
    };
    let configuration = match &options.configuration {
        Some(file) => {
            let bytes = read(file)?;
            check_configuration(&bytes).map_err(|error| Error::Configuration {
                file: file.clone(),
                error,
            })?;
            Some(bytes)
        }
        None => None,
    };

    // 2, 3. The repository.
    let release = Release {
        tag: &tag,
        bundle: &zip,
        configuration: configuration.as_deref(),
    };
    let publication = DirRepository::new(&options.repository)
        .publish_release(
            org.as_str(),
            repo.as_str(),
            package.as_str(),
            release,
            SystemTime::now(),
        )
        .map_err(Error::Repository)?;
    report(package, &publication, out);

    // 4. The webhook.
    let Some((url, secret, session)) = notify else {
        return Ok(());
    };
    notify_service(options, package, &publication, &url, &secret, &session, out)
}

/// The `--notify` URL and the secret to sign with, checked before anything is published.
fn notification(
    options: &Options,
    text: &str,
    org: Segment<'_>,
    repo: Segment<'_>,
) -> Result<(NotifyUrl, Secret, Session), Error> {
    let url = NotifyUrl::parse(text, org, repo).map_err(|error| Error::NotifyUrl {
        url: text.to_owned(),
        error,
    })?;
    let env = std::env::var(secret::ENV).ok();
    let secret =
        secret::read(options.secret_file.as_deref(), env.as_deref()).map_err(Error::Secret)?;
    let trust = Trust::from_option(options.ca_file.as_deref()).map_err(Error::CaFile)?;
    Ok((url, secret, Session::new(options.timeout).with_trust(trust)))
}

/// The lines of what the publication did.
fn report(package: Segment<'_>, publication: &Publication, out: &mut dyn Write) {
    let version = &publication.entry;
    let bundle = &publication.bundle;
    let _ = if publication.indexed || bundle.written {
        writeln!(
            out,
            "published {package}:{version} to {}",
            bundle.path.display()
        )
    } else {
        writeln!(
            out,
            "already published {package}:{version} at {}",
            bundle.path.display()
        )
    };
    if let Some(config) = &publication.configuration {
        let done = if config.written {
            "published its configuration to"
        } else {
            "already published its configuration at"
        };
        let _ = writeln!(out, "{done} {}", config.path.display());
    }
    let _ = writeln!(out, "{version}");
}

/// Sends the signed webhook for the published version and prints the service's answer.
fn notify_service(
    options: &Options,
    package: Segment<'_>,
    publication: &Publication,
    url: &NotifyUrl,
    secret: &Secret,
    session: &Session,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let version: Version<'_> = publication.entry.version();
    let scheme = if options.bintray {
        Scheme::Bintray
    } else {
        Scheme::Lockstep
    };
    let failed = |failure| Error::Notify {
        published: format!("{package}:{version}"),
        url: url.url(),
        failure,
    };
    let answer = client::send_webhook(
        session,
        &url.base,
        &url.target,
        &client::Notice {
            package,
            version: &version,
            asks: Asks::default(),
        },
        scheme,
        secret,
    )
    .map_err(|e| failed(NotifyFailure::NoAnswer(e)))?;
    if !answer.is_success() {
        return Err(failed(NotifyFailure::Refused {
            status: answer.status,
            line: answer.line(),
        }));
    }
    let _ = writeln!(
        out,
        "notified {}: {} {}",
        url.url(),
        answer.status,
        answer.line()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::samples;
    use crate::testing::temp_dir;
    use crate::zip::{self, Entry};

    fn conf_zip(conf: &str) -> Vec<u8> {
        zip::to_vec(&[
            Entry::stored("b/README.md", b"readme"),
            Entry::deflated("b/bundle.conf", conf.as_bytes()),
        ])
        .unwrap()
    }

    fn seg(s: &str) -> Segment<'_> {
        Segment::parse(s).unwrap()
    }

    // ---- bundle.conf ------------------------------------------------------------------------

    #[test]
    fn test_read_sample_bundle() {
        let sample = samples::bundle("visualizer", "1.3.0", "1").unwrap();
        let conf = BundleConf::read(&sample.zip).unwrap();
        assert_eq!(
            conf,
            BundleConf {
                name: "visualizer".into(),
                compatibility_version: "1".into(),
                first_tag: Some("1.3.0".into()),
            }
        );
        assert_eq!(conf.tag().unwrap(), "1.3.0");
    }

    #[test]
    fn test_tag_first_of_tags_else_compatibility_version() {
        let tag = |conf: &str| BundleConf::read(&conf_zip(conf)).and_then(|c| c.tag());
        let base = "name = visualizer\ncompatibility-version = 2\n";
        assert_eq!(
            tag(&format!("{base}tags = [\"2.1.0\", x]")).unwrap(),
            "2.1.0"
        );
        assert_eq!(tag(base).unwrap(), "v2");
        assert_eq!(tag(&format!("{base}tags = []")).unwrap(), "v2");
        assert_eq!(tag(&format!("{base}tags = null")).unwrap(), "v2");
        assert_eq!(
            tag(&format!("{base}tags = [\"a b\"]")),
            Err(BundleError::FirstTag(SegmentError::BadChar))
        );
        assert_eq!(
            tag(&format!("{base}tags = [\"{}\"]", "t".repeat(65))),
            Err(BundleError::FirstTag(SegmentError::TooLong))
        );
        assert_eq!(tag(&format!("{base}tags = 3")), Err(BundleError::Tags));
        assert_eq!(tag(&format!("{base}tags = [{{}}]")), Err(BundleError::Tags));
        // v + 64 characters: one too many.
        let long = format!("name = n\ncompatibilityVersion = {}", "1".repeat(64));
        assert_eq!(
            tag(&long),
            Err(BundleError::CompatibilityTag(SegmentError::TooLong))
        );
    }

    #[test]
    fn test_reject_bundles() {
        let read = |zip: &[u8]| BundleConf::read(zip).unwrap_err();
        assert_eq!(
            read(b"not a zip"),
            BundleError::Archive(ArchiveError::NoEndRecord)
        );
        let no_conf = zip::to_vec(&[Entry::stored("b/README.md", b"x")]).unwrap();
        assert_eq!(read(&no_conf), BundleError::Archive(ArchiveError::NotFound));
        assert!(matches!(
            read(&conf_zip("name = ${x}")),
            BundleError::Hocon(_)
        ));
        assert_eq!(
            read(&conf_zip("compatibilityVersion = 1")),
            BundleError::Missing("name")
        );
        assert_eq!(
            read(&conf_zip("name = n")),
            BundleError::Missing("compatibilityVersion")
        );
        assert_eq!(
            read(&conf_zip("name = \"../etc\"\ncompatibilityVersion = 1")),
            BundleError::Name(SegmentError::BadChar)
        );
        assert_eq!(
            read(&conf_zip(&format!(
                "name = {}\ncompatibilityVersion = 1",
                "n".repeat(65)
            ))),
            BundleError::TooLong("name")
        );
        assert_eq!(
            BundleError::Name(SegmentError::BadChar).to_string(),
            "bundle.conf's name may hold only the characters A-Z a-z 0-9 . _ -, so it cannot \
             name a package"
        );
        assert_eq!(
            BundleError::Archive(ArchiveError::NotFound).to_string(),
            "no readable bundle.conf: no bundle.conf in the zip"
        );
    }

    // ---- configurations ---------------------------------------------------------------------

    #[test]
    fn test_check_configuration() {
        let sample = samples::configuration("visualizer").unwrap();
        assert_eq!(check_configuration(&sample.zip), Ok(()));
        let only_script = zip::to_vec(&[Entry::stored("c/runtime-config.sh", b"export A=1\n")]);
        assert_eq!(check_configuration(&only_script.unwrap()), Ok(()));
        // A bundle is not a configuration.
        let bundle = samples::bundle("visualizer", "1.0.0", "1").unwrap();
        assert_eq!(
            check_configuration(&bundle.zip),
            Err(ConfigurationError::NoRuntimeConfig)
        );
        assert_eq!(
            check_configuration(b"PK"),
            Err(ConfigurationError::Archive(ArchiveError::NoEndRecord))
        );
        let bad_overlay = zip::to_vec(&[
            Entry::stored("c/runtime-config.sh", b"export A=1\n"),
            Entry::stored("c/bundle.conf", b"include \"x\""),
        ])
        .unwrap();
        assert!(matches!(
            check_configuration(&bad_overlay),
            Err(ConfigurationError::OverlayHocon(_))
        ));
    }

    // ---- the webhook URL --------------------------------------------------------------------

    #[test]
    fn test_parse_notify_url() {
        let parse = |s| NotifyUrl::parse(s, seg("typesafe"), seg("bundle"));
        let url = parse("http://127.0.0.1:9000/deployments/typesafe/bundle/typesafe").unwrap();
        assert_eq!(
            (url.base.as_str(), url.target.as_str()),
            (
                "http://127.0.0.1:9000",
                "/deployments/typesafe/bundle/typesafe"
            )
        );
        assert_eq!(
            url.url(),
            "http://127.0.0.1:9000/deployments/typesafe/bundle/typesafe"
        );
        let v2 = parse("http://h/v2/deployments/typesafe/bundle/x?tag=web&tag=db").unwrap();
        assert_eq!(
            v2.target,
            "/v2/deployments/typesafe/bundle/x?tag=web&tag=db"
        );
    }

    #[test]
    fn test_reject_notify_urls() {
        let parse = |s| NotifyUrl::parse(s, seg("typesafe"), seg("bundle")).unwrap_err();
        assert_eq!(
            parse("ftp://h/deployments/typesafe/bundle/typesafe"),
            NotifyUrlError::Url(UrlError::Scheme)
        );
        assert_eq!(parse("h:9000"), NotifyUrlError::Url(UrlError::Scheme));
        assert_eq!(parse("http://h:9000"), NotifyUrlError::NoPath);
        assert_eq!(
            parse("http://h/"),
            NotifyUrlError::Target(TargetError::NotWebhook)
        );
        assert_eq!(
            parse("http://h/deployments/typesafe/bundle/typesafe?tags=x"),
            NotifyUrlError::Target(TargetError::UnknownParameter)
        );
        assert_eq!(
            parse("http://h/deployments/typesafe/bundle/typesafe/more"),
            NotifyUrlError::Target(TargetError::NotWebhook)
        );
        assert_eq!(
            parse("http://h/deployments/other/bundle/other"),
            NotifyUrlError::Elsewhere
        );
        assert_eq!(
            parse("http://h/deployments/typesafe/other/typesafe"),
            NotifyUrlError::Elsewhere
        );
        assert_eq!(parse("http://u@h/x"), NotifyUrlError::Url(UrlError::Host));
    }

    // ---- the command ------------------------------------------------------------------------

    fn publish(options: &Options) -> (Result<(), Error>, String) {
        let mut out = Vec::new();
        let result = run(options, &mut out);
        (result, String::from_utf8(out).unwrap())
    }

    #[test]
    fn test_run_publishes_then_republishes_nothing() {
        let tmp = temp_dir();
        let sample = samples::bundle("visualizer", "1.3.0", "1").unwrap();
        let config = samples::configuration("visualizer").unwrap();
        let bundle_file = tmp.path().join("bundle.zip");
        let config_file = tmp.path().join("config.zip");
        std::fs::write(&bundle_file, &sample.zip).unwrap();
        std::fs::write(&config_file, &config.zip).unwrap();
        let root = tmp.path().join("repo");
        let mut options = Options::new(&bundle_file, &root);
        options.configuration = Some(config_file.clone());

        let (result, out) = publish(&options);
        result.unwrap();
        let version = sample.version();
        let dir = root.join(format!("typesafe/bundle/typesafe/visualizer/{version}"));
        let zip_path = dir.join(format!("visualizer-{version}.zip"));
        let config_path = dir.join(format!("visualizer-{version}-config.zip"));
        assert_eq!(
            out,
            format!(
                "published visualizer:{version} to {}\n\
                 published its configuration to {}\n{version}\n",
                zip_path.display(),
                config_path.display()
            )
        );
        assert_eq!(std::fs::read(&zip_path).unwrap(), sample.zip);
        assert_eq!(std::fs::read(&config_path).unwrap(), config.zip);

        let (result, out) = publish(&options);
        result.unwrap();
        assert_eq!(
            out,
            format!(
                "already published visualizer:{version} at {}\n\
                 already published its configuration at {}\n{version}\n",
                zip_path.display(),
                config_path.display()
            )
        );

        // Another configuration for the same version: refused, nothing changed.
        let other = zip::to_vec(&[Entry::stored("c/runtime-config.sh", b"export B=2\n")]);
        std::fs::write(&config_file, other.unwrap()).unwrap();
        let (result, out) = publish(&options);
        let e = result.unwrap_err();
        assert!(matches!(
            e,
            Error::Repository(RepoError::OtherConfiguration { .. })
        ));
        assert_eq!((e.exit_code(), out.as_str()), (1, ""));
        assert_eq!(std::fs::read(&config_path).unwrap(), config.zip);
    }

    #[test]
    fn test_run_checks_arguments_before_reading() {
        let tmp = temp_dir();
        let root = tmp.path().join("repo");
        // The bundle file does not exist: argument errors come first.
        let mut options = Options::new(tmp.path().join("none.zip"), &root);
        options.tag = Some("a/b".into());
        let (result, _) = publish(&options);
        let e = result.unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "--tag may hold only the characters A-Z a-z 0-9 . _ -"
        );
        options.tag = None;
        options.notify = Some("http://127.0.0.1:1/deployments/typesafe/bundle/typesafe".into());
        options.secret_file = Some(tmp.path().join("no-secret"));
        let e = publish(&options).0.unwrap_err();
        assert!(matches!(e, Error::Secret(_)), "{e:?}");
        assert_eq!(e.exit_code(), 2);
        options.notify = Some("http://127.0.0.1:1".into());
        let e = publish(&options).0.unwrap_err();
        assert_eq!(
            e.to_string(),
            "--notify `http://127.0.0.1:1`: no webhook path: expected \
             /deployments/{org}/{repo}/{org}"
        );
        options.notify = None;
        let e = publish(&options).0.unwrap_err();
        assert!(matches!(e, Error::Read { .. }), "{e:?}");
        assert_eq!(e.exit_code(), 1);
        assert!(!root.exists());
    }
}
