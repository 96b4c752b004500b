//! What a deployment is and how far it got: the [`Record`] a runtime persists and retains, and
//! the identifiers, phases and failures it holds. Everything here is `Copy`.
//!
//! Data that only means something in one phase is carried by that phase: the bundles being
//! swapped by [`Phase::LockStep`], the cause of a rollback by [`Phase::RollingBack`], the
//! outcome by [`Phase::Ended`]. What a deployment learns once and keeps (its key's
//! compatibilityVersion) is a field of the record. The persistent form is in
//! [`persist`](super::persist).

use core::fmt::{self, Write as _};

use crate::agent::TlsError;
use crate::bundle::{BundleId, Digest, MAX_SEGMENT_LEN, Segment};
use crate::hex;
use crate::limits::MAX_TAGS;
use crate::text::InlineStr;
use crate::time::UnixTime;

/// A bundle name, tag, organisation, repository or compatibilityVersion, inline: at most
/// [`MAX_SEGMENT_LEN`] bytes.
pub type Name = InlineStr<MAX_SEGMENT_LEN>;

impl From<Segment<'_>> for Name {
    /// A segment always fits: it has at most [`MAX_SEGMENT_LEN`] bytes.
    fn from(segment: Segment<'_>) -> Self {
        Self::truncated(segment.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Deployment ids
// ---------------------------------------------------------------------------------------------

/// A deployment's id: 16 bytes the runtime draws at random, written as a UUID
/// (`7c1f21a3-91d1-44fa-8875-cf9a316d68ce`), which never contains `:` (docs/PROTOCOL.md §1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DeploymentId([u8; 16]);

/// Why a string is not a [`DeploymentId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DeploymentIdError;

impl fmt::Display for DeploymentIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a deployment id is a UUID, 8-4-4-4-12 hexadecimal digits")
    }
}

impl core::error::Error for DeploymentIdError {}

/// The length of a deployment id's text.
pub const DEPLOYMENT_ID_LEN: usize = 36;

impl DeploymentId {
    /// The id made of these bytes. The runtime fills them from a random source and marks them
    /// as a version 4 UUID ([`DeploymentId::random_v4`]).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// A version 4 (random) UUID from 16 random bytes: the version and variant bits are set.
    pub const fn random_v4(mut bytes: [u8; 16]) -> Self {
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Self(bytes)
    }

    /// The 16 bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses the hyphenated UUID form, either case.
    pub fn parse(s: &str) -> Result<Self, DeploymentIdError> {
        let b = s.as_bytes();
        if b.len() != DEPLOYMENT_ID_LEN || [8, 13, 18, 23].iter().any(|&i| b.get(i) != Some(&b'-'))
        {
            return Err(DeploymentIdError);
        }
        let mut digits = [0u8; 32];
        for (dst, src) in digits.iter_mut().zip(b.iter().filter(|&&c| c != b'-')) {
            *dst = *src;
        }
        hex::decode(&digits)
            .map(Self)
            .map_err(|_| DeploymentIdError)
    }

    /// The hyphenated lowercase UUID text.
    pub fn to_text(&self) -> heapless::String<DEPLOYMENT_ID_LEN> {
        let mut text = heapless::String::new();
        // 32 hex digits and 4 hyphens: exactly the capacity.
        let _ = write!(text, "{self}");
        text
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // 8-4-4-4-12 digits, built on the stack and written at once (it is in every answer
        // and event of a deployment).
        let mut text = [b'-'; DEPLOYMENT_ID_LEN];
        let groups = [
            (0..4, 0..8),
            (4..6, 9..13),
            (6..8, 14..18),
            (8..10, 19..23),
            (10..16, 24..36),
        ];
        for (bytes, digits) in groups {
            if let (Some(bytes), Some(digits)) = (self.0.get(bytes), text.get_mut(digits)) {
                hex::encode(bytes, digits);
            }
        }
        f.write_str(core::str::from_utf8(&text).unwrap_or_default())
    }
}

impl fmt::Debug for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeploymentId({self})")
    }
}

// ---------------------------------------------------------------------------------------------
// The request
// ---------------------------------------------------------------------------------------------

/// The `?tag=` values of a webhook, inline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Tags {
    tags: [Name; MAX_TAGS],
    /// At most [`MAX_TAGS`]: [`Tags::new`] refuses more.
    len: u8,
}

/// More tags than a [`Tags`] holds ([`MAX_TAGS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TooManyTags;

impl fmt::Display for TooManyTags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at most {MAX_TAGS} tags")
    }
}

impl core::error::Error for TooManyTags {}

impl Tags {
    /// No tags: no narrowing.
    pub const NONE: Self = Self {
        tags: [Name::EMPTY; MAX_TAGS],
        len: 0,
    };

    /// The given tags, at most [`MAX_TAGS`] (the webhook parser never yields more).
    pub fn new<'a>(segments: impl IntoIterator<Item = Segment<'a>>) -> Result<Self, TooManyTags> {
        let mut tags = Self::NONE;
        for segment in segments {
            let slot = tags
                .tags
                .get_mut(usize::from(tags.len))
                .ok_or(TooManyTags)?;
            *slot = Name::from(segment);
            tags.len = tags.len.saturating_add(1);
        }
        Ok(tags)
    }

    /// The tags.
    pub fn as_slice(&self) -> &[Name] {
        // `len` never exceeds the array, so the split is within it.
        self.tags.split_at(usize::from(self.len).min(MAX_TAGS)).0
    }

    /// Whether there are none.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A verified notification, as the service hands it to the deployer: what to deploy, where it
/// is published, which running bundles it may replace, and the id a new deployment gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Request {
    /// The id of the deployment, if a new one is created (the runtime draws it).
    pub id: DeploymentId,
    /// The repository's organisation.
    pub org: Name,
    /// The repository.
    pub repo: Name,
    /// The bundle name.
    pub package: Name,
    /// The version's tag.
    pub tag: Name,
    /// The version's digest: the SHA-256 of the bundle zip.
    pub digest: Digest,
    /// Only running bundles carrying one of these tags are replaced (none: no narrowing).
    pub tags: Tags,
    /// When the notification was accepted (wall clock).
    pub at: UnixTime,
    /// Deploy the version even though the repository published it before the running one
    /// (docs/DESIGN.md rule 12): asked under lockstep's signature only.
    pub allow_downgrade: bool,
}

// ---------------------------------------------------------------------------------------------
// Phases
// ---------------------------------------------------------------------------------------------

/// One of the two bundles of a lock-step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Side {
    /// The running bundle being replaced.
    Old,
    /// The bundle being deployed.
    New,
}

/// The bundles a deployment replaces and deploys, as chosen in step 4 and completed in step 5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Plan {
    /// The running bundle it replaces; `None` when it starts from nothing (policy
    /// [`NothingRunning::StartOne`](super::NothingRunning::StartOne)).
    pub old: Option<BundleId>,
    /// The lock-step's N: the old bundle's scale when chosen (1 when starting from nothing).
    pub scale: u32,
    /// The configuration carried over from the old bundle, if it had one.
    pub config: Option<Digest>,
}

/// A plan whose new bundle is loaded: the two bundles a lock-step moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Swap {
    /// The plan.
    pub plan: Plan,
    /// The new bundle, as the control API loaded it.
    pub new: BundleId,
}

/// The bundle a lock-step step changed last: the one being waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Moved {
    /// The old bundle, which has this id (a plan without an old bundle never moves it).
    Old(BundleId),
    /// The new bundle.
    New,
}

impl Moved {
    /// Which side it is.
    pub const fn side(&self) -> Side {
        match self {
            Self::Old(_) => Side::Old,
            Self::New => Side::New,
        }
    }
}

/// Where a lock-step (or its rollback) stands: the absolute scales last requested of each
/// bundle, which one was changed last, and whether that request is still in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Step {
    /// The scale last requested of the old bundle (0 when there is none).
    pub old: u32,
    /// The scale last requested of the new bundle.
    pub new: u32,
    /// The bundle whose scale was set last: the one being waited for.
    pub moved: Moved,
    /// Whether that bundle was scaled up (wait until at least this many started) or down
    /// (until at most this many).
    pub up: bool,
    /// False while the scale request is in flight, true once it was accepted and the
    /// instances are awaited.
    pub waiting: bool,
}

impl Step {
    /// The scale requested of `side`.
    pub const fn of(&self, side: Side) -> u32 {
        match side {
            Side::Old => self.old,
            Side::New => self.new,
        }
    }

    /// The scale requested of the moved bundle.
    pub const fn target(&self) -> u32 {
        self.of(self.moved.side())
    }

    /// What this step does, for a failure's text.
    pub const fn doing(&self) -> Doing {
        Doing::Scaling {
            side: self.moved.side(),
            to: self.target(),
        }
    }
}

/// Where the two bundles of a lock-step were seen: their started instances in the latest
/// observation of the cluster. A failure reports these, never the scales it asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Seen {
    /// Started instances of the old bundle (0 when there is none).
    pub old: u32,
    /// Started instances of the new bundle.
    pub new: u32,
}

/// How a deployment ended, and with which bundles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct End {
    /// Succeeded or failed.
    pub outcome: Outcome,
    /// When (wall clock).
    pub at: UnixTime,
    /// The plan, if it got as far as choosing one.
    pub plan: Option<Plan>,
    /// The new bundle, if it got as far as loading it.
    pub new: Option<BundleId>,
}

/// Where a deployment stands (docs/DESIGN.md "The deployment, step by step"), with what only that
/// phase knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Phase {
    /// Before anything is downloaded: is the notified version published before every running
    /// bundle of its package? (docs/DESIGN.md rule 12; skipped when the request allows a
    /// downgrade, or when the policy starts a bundle where none runs.)
    Screening,
    /// Downloading and checking the bundle, reading its bundle.conf (step 2).
    Resolving,
    /// Resolved; another deployment of its key is active, and this one waits as the key's
    /// single pending deployment (step 3).
    Queued,
    /// Looking at the running bundles to pick the one to replace (step 4).
    Targeting,
    /// Reading the repository's `versions.json`: was the new version published before the
    /// bundle it replaces? (step 4, docs/DESIGN.md rule 12; skipped when the request allows a
    /// downgrade.)
    Ordering {
        /// The running bundle it would replace.
        old: BundleId,
        /// Its scale: the lock-step's N.
        scale: u32,
    },
    /// Fetching the configuration of the bundle it replaces (step 5).
    FetchingConfig {
        /// The running bundle it replaces.
        old: BundleId,
        /// Its scale: the lock-step's N.
        scale: u32,
    },
    /// Loading the new bundle, with that configuration (step 5).
    Loading(Plan),
    /// Loaded; observing the cluster once to log where the lock-step starts (step 6).
    Observing(Swap),
    /// The lock-step (step 6).
    LockStep {
        /// The bundles.
        swap: Swap,
        /// Where it stands.
        step: Step,
        /// Where the bundles were last seen.
        seen: Seen,
    },
    /// The lock-step run backwards after a failure (step 7).
    RollingBack {
        /// The bundles.
        swap: Swap,
        /// Where it stands.
        step: Step,
        /// What failed.
        cause: Cause,
        /// Where the bundles were last seen.
        seen: Seen,
    },
    /// Ended.
    Ended(End),
}

impl Phase {
    /// The plan, once chosen (and until the end).
    pub const fn plan(&self) -> Option<Plan> {
        match self {
            Self::Screening | Self::Resolving | Self::Queued | Self::Targeting => None,
            Self::Ordering { old, scale } | Self::FetchingConfig { old, scale } => Some(Plan {
                old: Some(*old),
                scale: *scale,
                config: None,
            }),
            Self::Loading(plan) => Some(*plan),
            Self::Observing(swap)
            | Self::LockStep { swap, .. }
            | Self::RollingBack { swap, .. } => Some(swap.plan),
            Self::Ended(end) => end.plan,
        }
    }

    /// The new bundle, once loaded (and until the end).
    pub const fn new_bundle(&self) -> Option<BundleId> {
        match self {
            Self::Observing(swap)
            | Self::LockStep { swap, .. }
            | Self::RollingBack { swap, .. } => Some(swap.new),
            Self::Ended(end) => end.new,
            _ => None,
        }
    }
}

/// The state of a deployment in a listing (docs/PROTOCOL.md §7, `GET /deployments`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum State {
    /// `resolving`
    Resolving,
    /// `queued`
    Queued,
    /// `deploying`
    Deploying,
    /// `rollingBack`
    RollingBack,
    /// `succeeded`
    Succeeded,
    /// `failed`
    Failed,
}

impl State {
    /// The listing's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Resolving => "resolving",
            Self::Queued => "queued",
            Self::Deploying => "deploying",
            Self::RollingBack => "rollingBack",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------------

/// How the agent failed to carry out a command, after its own retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CommandError {
    /// The repository or control API could not be reached.
    Unreachable,
    /// The request did not complete within its time limit.
    TimedOut,
    /// The server answered with this error status.
    Status(u16),
    /// The repository has no such version.
    NotFound,
    /// The downloaded bundle's SHA-256 is not the notified digest.
    DigestMismatch,
    /// The bundle is larger than the download limit.
    TooLarge,
    /// The bundle is not a zip with a readable bundle.conf.
    BadArchive,
    /// bundle.conf is not valid HOCON, or lacks `name` or `compatibilityVersion`.
    BadBundleConf,
    /// The server's answer could not be understood.
    Protocol,
    /// The local bundle store failed.
    Storage,
    /// The TLS handshake refused the server.
    Tls(TlsError),
    /// The repository redirected more than [`MAX_REDIRECTS`](crate::agent::http::MAX_REDIRECTS)
    /// times.
    TooManyRedirects,
    /// The repository redirected from `https://` to `http://`.
    InsecureRedirect,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable => f.write_str("unreachable"),
            Self::TimedOut => f.write_str("timed out"),
            Self::Status(code @ (401 | 403)) => {
                write!(
                    f,
                    "answered {code}: the credentials were refused or are missing"
                )
            }
            Self::Status(code) => write!(f, "answered {code}"),
            Self::NotFound => f.write_str("no such version in the repository"),
            Self::DigestMismatch => f.write_str("the download does not match the notified digest"),
            Self::TooLarge => f.write_str("the bundle is over the download size limit"),
            Self::BadArchive => f.write_str("the bundle is not a zip holding a bundle.conf"),
            Self::BadBundleConf => {
                f.write_str("bundle.conf is not valid or lacks name or compatibilityVersion")
            }
            Self::Protocol => f.write_str("the answer could not be read"),
            Self::Storage => f.write_str("the local bundle store failed"),
            Self::Tls(e) => write!(f, "failed {e}"),
            Self::TooManyRedirects => f.write_str("redirected too many times"),
            Self::InsecureRedirect => f.write_str("redirected from https to http (refused)"),
        }
    }
}

impl core::error::Error for CommandError {}

/// The step of a deployment something went wrong in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Doing {
    /// Listing the running bundles.
    Targeting,
    /// Reading the repository's `versions.json`.
    Ordering,
    /// Fetching the old bundle's configuration.
    FetchingConfig,
    /// Loading the new bundle.
    Loading,
    /// Observing the cluster.
    Observing,
    /// Setting the scale of a bundle, or waiting for its instances.
    Scaling {
        /// Which bundle.
        side: Side,
        /// To what scale.
        to: u32,
    },
}

impl fmt::Display for Doing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Targeting => f.write_str("listing the running bundles"),
            Self::Ordering => f.write_str("reading the repository's versions.json"),
            Self::FetchingConfig => f.write_str("fetching the old bundle's configuration"),
            Self::Loading => f.write_str("loading the new bundle"),
            Self::Observing => f.write_str("observing the cluster"),
            Self::Scaling { side, to } => {
                let which = match side {
                    Side::Old => "old",
                    Side::New => "new",
                };
                write!(f, "scaling the {which} bundle to {to}")
            }
        }
    }
}

/// What went wrong in a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Fault {
    /// The step's deadline passed.
    Deadline,
    /// The control API refused or failed the request.
    Command(CommandError),
    /// The bundle reports an error (`hasError`).
    InstanceError,
    /// The bundle is no longer loaded.
    Vanished,
    /// An operator aborted the deployment.
    Aborted,
    /// A started instance of the new bundle was lost while it settled
    /// ([`Policy::settle`](super::Policy::settle)).
    Lost,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Deadline => f.write_str("the deadline passed"),
            Self::Command(e) => write!(f, "the control API {e}"),
            Self::InstanceError => f.write_str("the bundle reports an error"),
            Self::Vanished => f.write_str("the bundle is no longer loaded"),
            Self::Aborted => f.write_str("aborted"),
            Self::Lost => f.write_str("an instance was lost while it settled"),
        }
    }
}

/// The most running bundles a [`Cause::Several`] failure names.
pub const SEVERAL_SHOWN: usize = 3;

/// Why a deployment failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Cause {
    /// A deployment of the same key notified later replaces this one (step 3).
    Superseded {
        /// The later deployment.
        by: DeploymentId,
    },
    /// Downloading, checking or reading the bundle failed (step 2).
    Resolve(CommandError),
    /// Resolving took longer than its deadline.
    ResolveDeadline,
    /// The bundle's bundle.conf names another bundle than the notified package.
    NameMismatch {
        /// The name bundle.conf gives.
        found: Name,
    },
    /// No running bundle has this name and compatibilityVersion (and `?tag=`) (step 4).
    NoRunning {
        /// The new bundle's compatibilityVersion.
        compatibility_version: Name,
        /// The compatibilityVersion of a running bundle of the same name, if there is one.
        running: Option<Name>,
        /// Whether `?tag=` narrowed the candidates.
        narrowed: bool,
    },
    /// Several running bundles are compatible: replacing several is not supported (step 4).
    Several {
        /// How many.
        count: u32,
        /// The first few of them.
        ids: [Option<BundleId>; SEVERAL_SHOWN],
    },
    /// The new version already runs beside the compatible bundle it would replace (an earlier
    /// deployment was left half-way): an operator must settle it.
    AlreadyBeside {
        /// The bundle it would replace.
        old: BundleId,
    },
    /// The configuration fetched from the old bundle does not match its id.
    ConfigMismatch,
    /// The control API loaded the bundle under another id than its digests give.
    LoadedIdMismatch {
        /// The id it reported.
        id: BundleId,
    },
    /// An operator aborted it before it changed anything in the cluster.
    Aborted,
    /// The repository published the new version before the running bundle it would replace,
    /// and the request did not allow a downgrade (docs/DESIGN.md rule 12).
    Downgrade {
        /// The running version's tag, as `versions.json` lists it.
        running: Name,
        /// The running bundle.
        old: BundleId,
    },
    /// A step of the deployment failed.
    Step {
        /// What was being done.
        doing: Doing,
        /// What went wrong.
        fault: Fault,
    },
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Superseded { by } => write!(f, "superseded by {by}"),
            Self::Resolve(e) => write!(f, "the bundle could not be resolved: {e}"),
            Self::ResolveDeadline => f.write_str("resolving the bundle took too long"),
            Self::Aborted => f.write_str("aborted"),
            Self::Downgrade { running, old } => write!(
                f,
                "refused a downgrade: the repository published this version before the running \
                 {running} ({old}); `lockstep deploy --allow-downgrade` deploys it"
            ),
            Self::NameMismatch { found } => {
                write!(
                    f,
                    "the bundle's bundle.conf names {found}, not the notified package"
                )
            }
            Self::NoRunning {
                compatibility_version,
                running,
                narrowed,
            } => {
                write!(
                    f,
                    "no running bundle with compatibilityVersion {compatibility_version}"
                )?;
                if *narrowed {
                    f.write_str(" and one of the requested tags")?;
                }
                if let Some(other) = running {
                    write!(f, " (a bundle with compatibilityVersion {other} runs)")?;
                }
                Ok(())
            }
            Self::Several { count, ids } => {
                write!(f, "{count} compatible bundles are running (")?;
                for (i, id) in ids.iter().flatten().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(&id.short())?;
                }
                f.write_str("); name the one to replace with ?tag=")
            }
            Self::AlreadyBeside { old } => write!(
                f,
                "the new version already runs beside {}: stop one of them first",
                old.short()
            ),
            Self::ConfigMismatch => {
                f.write_str("the old bundle's configuration does not match its id")
            }
            Self::LoadedIdMismatch { id } => {
                write!(
                    f,
                    "the control API loaded the bundle as {id}, not the expected id"
                )
            }
            // The one step that asks the repository rather than the control API.
            Self::Step {
                doing: doing @ Doing::Ordering,
                fault: Fault::Command(e),
            } => write!(f, "{doing}: the repository {e}"),
            Self::Step { doing, fault } => write!(f, "{doing}: {fault}"),
        }
    }
}

/// How a failed deployment left the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Rollback {
    /// Nothing had been scaled: nothing to undo.
    NotNeeded,
    /// The lock-step was run backwards: the old bundle is back at its scale, the new at 0.
    Completed {
        /// The old bundle's scale, restored.
        old: u32,
    },
    /// Rollback is off (policy): the bundles were left where they were last seen.
    Off {
        /// The old bundle's started instances, as last observed.
        old: u32,
        /// The new bundle's started instances, as last observed.
        new: u32,
    },
    /// The rollback failed too; the bundles were left where they were last seen.
    Failed {
        /// What failed during the rollback.
        doing: Doing,
        /// How.
        fault: Fault,
        /// The old bundle's started instances, as last observed.
        old: u32,
        /// The new bundle's started instances, as last observed.
        new: u32,
    },
}

/// Why a deployment failed, and what its rollback did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Failure {
    /// What failed.
    pub cause: Cause,
    /// How the cluster was left.
    pub rollback: Rollback,
}

impl Failure {
    /// Whether the version itself failed, so that a webhook may not deploy it again without
    /// `retry` (docs/DESIGN.md rule 11): every failure but being superseded or aborted, which
    /// say nothing about the version.
    pub const fn holds_version(&self) -> bool {
        !matches!(
            self.cause,
            Cause::Superseded { .. }
                | Cause::Aborted
                | Cause::Step {
                    fault: Fault::Aborted,
                    ..
                }
        )
    }

    /// Whether it was a refused downgrade (docs/DESIGN.md rule 12): a webhook of the version
    /// is then refused until it allows the downgrade, not merely until it asks to retry.
    pub const fn is_downgrade(&self) -> bool {
        matches!(self.cause, Cause::Downgrade { .. })
    }
}

impl fmt::Display for Failure {
    /// The one line `deploymentFailure` carries (docs/PROTOCOL.md §2).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.cause.fmt(f)?;
        match self.rollback {
            Rollback::NotNeeded => Ok(()),
            Rollback::Completed { old } => {
                write!(f, "; rolled back: the old bundle runs at {old} again")
            }
            Rollback::Off { old, new } => write!(
                f,
                "; not rolled back (rollback is off): old bundle at {old}, new bundle at {new} \
                 (started instances, as last observed)"
            ),
            Rollback::Failed {
                doing,
                fault,
                old,
                new,
            } => write!(
                f,
                "; the rollback failed too ({doing}: {fault}): old bundle at {old}, new bundle \
                 at {new} (started instances, as last observed)"
            ),
        }
    }
}

impl core::error::Error for Failure {}

/// How a deployment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Outcome {
    /// The new bundle runs at the old scale; the old one is stopped and still loaded.
    Succeeded {
        /// The new version was already running: nothing was changed.
        nothing_to_do: bool,
    },
    /// It failed.
    Failed(Failure),
}

// ---------------------------------------------------------------------------------------------
// The record
// ---------------------------------------------------------------------------------------------

/// A deployment's key: at most one deployment of a key runs at a time (rule 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Key {
    /// The bundle name.
    pub package: Name,
    /// The new bundle's compatibilityVersion.
    pub compatibility_version: Name,
}

/// Everything about a deployment that must survive a restart: persisted by the runtime (in
/// the form of [`persist`](super::persist)), given back to
/// [`Deployer::handle_resume`](super::Deployer::handle_resume), and handed out when it ends for
/// the runtime to retain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Record {
    /// What was notified, with the deployment's id.
    pub request: Request,
    /// Notification order: admissions are numbered, and a deployment notified later
    /// supersedes an earlier one of its key.
    pub order: u64,
    /// The sequence number its next event gets (the first is 1).
    pub next_seq: u32,
    /// The new bundle's compatibilityVersion, once resolved: with the package, the key.
    pub compatibility_version: Option<Name>,
    /// Where it stands.
    pub phase: Phase,
}

impl Record {
    /// The record of a deployment just admitted.
    pub const fn new(request: Request, order: u64) -> Self {
        Self {
            request,
            order,
            next_seq: 1,
            compatibility_version: None,
            phase: Phase::Resolving,
        }
    }

    /// The deployment's id.
    pub const fn id(&self) -> DeploymentId {
        self.request.id
    }

    /// Its key, once resolved.
    pub const fn key(&self) -> Option<Key> {
        match self.compatibility_version {
            Some(compatibility_version) => Some(Key {
                package: self.request.package,
                compatibility_version,
            }),
            None => None,
        }
    }

    /// Its state in a listing.
    pub const fn state(&self) -> State {
        match &self.phase {
            Phase::Ended(End {
                outcome: Outcome::Succeeded { .. },
                ..
            }) => State::Succeeded,
            Phase::Ended(End {
                outcome: Outcome::Failed(_),
                ..
            }) => State::Failed,
            Phase::Screening | Phase::Resolving => State::Resolving,
            Phase::Queued => State::Queued,
            Phase::RollingBack { .. } => State::RollingBack,
            Phase::Targeting
            | Phase::Ordering { .. }
            | Phase::FetchingConfig { .. }
            | Phase::Loading(_)
            | Phase::Observing(_)
            | Phase::LockStep { .. } => State::Deploying,
        }
    }

    /// How it ended, once it has.
    pub const fn end(&self) -> Option<&End> {
        match &self.phase {
            Phase::Ended(end) => Some(end),
            _ => None,
        }
    }

    /// Its outcome, once it ended.
    pub const fn outcome(&self) -> Option<&Outcome> {
        match &self.phase {
            Phase::Ended(end) => Some(&end.outcome),
            _ => None,
        }
    }

    /// Whether it ended.
    pub const fn has_ended(&self) -> bool {
        matches!(self.phase, Phase::Ended(_))
    }

    /// Whether resuming it needs the bundle it downloaded: it has not been loaded yet (queued,
    /// targeting, ordering, fetching the configuration, loading).
    pub const fn needs_bundle_file(&self) -> bool {
        matches!(
            self.phase,
            Phase::Queued
                | Phase::Targeting
                | Phase::Ordering { .. }
                | Phase::FetchingConfig { .. }
                | Phase::Loading(_)
        )
    }

    /// Whether resuming it needs the configuration it fetched: it is loading with one.
    pub const fn needs_configuration_file(&self) -> bool {
        matches!(
            self.phase,
            Phase::Loading(Plan {
                config: Some(_),
                ..
            })
        )
    }

    /// Sends a deployment that has not loaded its bundle back to resolving (its downloaded
    /// files are gone after a restart: it downloads and checks them again; its key is found
    /// again). Any other phase is left as it is.
    pub fn resolve_again(&mut self) {
        if self.needs_bundle_file() {
            self.phase = Phase::Resolving;
            self.compatibility_version = None;
        }
    }

    /// The failure, if it failed.
    pub const fn failure(&self) -> Option<&Failure> {
        match &self.phase {
            Phase::Ended(End {
                outcome: Outcome::Failed(failure),
                ..
            }) => Some(failure),
            _ => None,
        }
    }

    /// The running bundle it replaces, once chosen.
    pub const fn old(&self) -> Option<BundleId> {
        match self.phase.plan() {
            Some(plan) => plan.old,
            None => None,
        }
    }

    /// The new bundle, once loaded.
    pub const fn new_bundle(&self) -> Option<BundleId> {
        self.phase.new_bundle()
    }
}

#[cfg(test)]
mod tests {
    use std::string::ToString;

    use super::*;

    // The example id of docs/PROTOCOL.md §1.
    const UUID: &str = "7c1f21a3-91d1-44fa-8875-cf9a316d68ce";

    #[test]
    fn test_parse_deployment_id() {
        let id = DeploymentId::parse(UUID).unwrap();
        assert_eq!(id.to_string(), UUID);
        assert_eq!(DeploymentId::parse(&UUID.to_ascii_uppercase()).unwrap(), id);
        assert!(!id.to_string().contains(':'));
    }

    #[test]
    fn test_reject_deployment_ids() {
        for bad in [
            "",
            &UUID[..35],
            "7c1f21a391d144fa8875cf9a316d68ce",
            "7c1f21a3-91d1-44fa-8875-cf9a316d68cg",
            "7c1f21a3-91d1-44fa-8875:cf9a316d68ce",
            "7c1f21a3-91d144fa-8875-cf9a-316d68ce",
        ] {
            assert_eq!(DeploymentId::parse(bad), Err(DeploymentIdError), "{bad}");
        }
    }

    #[test]
    fn test_random_v4_sets_version_and_variant() {
        let id = DeploymentId::random_v4([0xff; 16]).to_string();
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let id = DeploymentId::random_v4([0; 16]).to_string();
        assert_eq!(id, "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn test_failure_text() {
        let failure = Failure {
            cause: Cause::Step {
                doing: Doing::Scaling {
                    side: Side::New,
                    to: 2,
                },
                fault: Fault::Deadline,
            },
            rollback: Rollback::Completed { old: 3 },
        };
        assert_eq!(
            failure.to_string(),
            "scaling the new bundle to 2: the deadline passed; rolled back: the old bundle runs \
             at 3 again"
        );
        let failure = Failure {
            cause: Cause::NoRunning {
                compatibility_version: Name::new("2").unwrap(),
                running: Some(Name::new("1").unwrap()),
                narrowed: false,
            },
            rollback: Rollback::NotNeeded,
        };
        assert_eq!(
            failure.to_string(),
            "no running bundle with compatibilityVersion 2 (a bundle with compatibilityVersion \
             1 runs)"
        );
    }
}
