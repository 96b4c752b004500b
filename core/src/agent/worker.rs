//! A worker: carries out one command at a time, over HTTP, with its own buffers.

use core::fmt::Write as _;

use embedded_io_async::Write;
use sha2::Digest as _;

use super::http::{Client, HttpError, Method, Url};
use super::{
    Agent, Connector, FetchError, FileKey, FileKind, IndexLocation, Job, Location, Repository,
    Retry, Sink, Store, Time, with_deadline,
};
use crate::archive::{self, Inflater, RandomAccess};
use crate::bundle::{BundleId, Digest, Segment};
use crate::conductr::bundles::{ArraySplitter, BundleInfo, RequestAnswer};
use crate::conductr::multipart::{
    Boundary, Event as PartEvent, HEAD_BUFFER_LEN, LoadFiles, MAX_CLOSE_LEN, MAX_PART_HEAD_LEN,
    Multipart, MultipartReader, ZipFile, boundary_from_content_type,
};
use crate::conductr::{ACCEPT_MULTIPART, BUNDLES_PATH, BundlePath, ScaleTarget};
use crate::deployer::{BundleView, Command, CommandError, CommandKind, DeploymentId, Name, Reply};
use crate::hocon::Document;
use crate::index::{IndexError, IndexScan};
use crate::journal::Journal;
use crate::ledger::Shelf;
use crate::text::{self, Cursor, InlineStr, len_u64};
use crate::time::{Duration, Instant};

/// The most bundles of one name an observation keeps.
pub const MAX_OBSERVED: usize = 16;

/// The longest pause between two tries of a request.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// What the deployer consumes of a bundle the control API listed. The conversion lives here,
/// where the two meet, so that the codec never depends on the deployer: arrows point from
/// decisions to formats.
impl<'a> From<&BundleInfo<'a>> for BundleView<'a> {
    fn from(info: &BundleInfo<'a>) -> Self {
        Self {
            id: info.id,
            name: info.name,
            compatibility_version: info.compatibility_version,
            // The codec keeps as many tags as the deployer looks at: the same type, or this
            // does not compile.
            tags: info.tags.clone(),
            scale: info.scale,
            started: info.started,
            starting: info.starting,
            has_error: info.has_error,
        }
    }
}

/// How a worker works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// Bounds every connect, read and write.
    pub io_timeout: Duration,
    /// Bounds one try of a bundle download (a failed try is tried again, up to `attempts`;
    /// the deployer's resolve deadline bounds them all).
    pub download_limit: Duration,
    /// The largest bundle (or configuration) accepted.
    pub max_bundle_size: u64,
    /// How long a waiting step goes without looking again, when no bundle event arrives.
    pub poll_interval: Duration,
    /// How many times an idempotent request (a GET, the bundle download, a PUT of a scale,
    /// a load after its re-check) is tried.
    pub attempts: u32,
    /// The pause before the second try; it doubles for each further one, up to 4 s.
    pub backoff: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            io_timeout: Duration::from_secs(10),
            download_limit: Duration::from_secs(300),
            max_bundle_size: 512 * 1024 * 1024,
            poll_interval: Duration::from_secs(1),
            attempts: 4,
            backoff: Duration::from_millis(250),
        }
    }
}

/// The buffers of one worker (about 150 KB: give each worker its own, on the heap or in a
/// static).
pub struct Buffers {
    client: [u8; 8 * 1024],
    work: Work,
}

struct Work {
    io: [u8; 16 * 1024],
    element: [u8; 16 * 1024],
    found: [u8; 32 * 1024],
    conf: [u8; 64 * 1024],
    inflater: Inflater,
}

impl Buffers {
    /// Fresh buffers.
    #[inline(always)]
    pub fn new() -> Self {
        Self {
            client: [0; 8 * 1024],
            work: Work {
                io: [0; 16 * 1024],
                element: [0; 16 * 1024],
                found: [0; 32 * 1024],
                conf: [0; 64 * 1024],
                inflater: Inflater::new(),
            },
        }
    }
}

impl Default for Buffers {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Buffers {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Buffers(..)")
    }
}

/// One try of a request: retried, or not.
enum Attempt {
    Retry(CommandError),
    Fatal(CommandError),
}

impl From<HttpError> for Attempt {
    fn from(e: HttpError) -> Self {
        let error = match e {
            HttpError::Connect | HttpError::Io => CommandError::Unreachable,
            HttpError::TimedOut => CommandError::TimedOut,
            HttpError::Tls(tls) => CommandError::Tls(tls),
            HttpError::TooManyRedirects => CommandError::TooManyRedirects,
            HttpError::InsecureRedirect => CommandError::InsecureRedirect,
            _ => CommandError::Protocol,
        };
        if e.retryable() {
            Self::Retry(error)
        } else {
            Self::Fatal(error)
        }
    }
}

/// A status answer: 5xx may pass, others will not.
fn status(code: u16) -> Attempt {
    if code >= 500 {
        Attempt::Retry(CommandError::Status(code))
    } else {
        Attempt::Fatal(CommandError::Status(code))
    }
}

/// A download that failed: the transfer (a connection, a time-out, a 5xx) may pass; the
/// repository's refusal (404, another status), an answer that is not HTTP, and what the
/// worker refused itself (over the size cap: `too_large`; the store) will not.
fn download_failed(e: FetchError, too_large: bool) -> Attempt {
    match e {
        FetchError::Unreachable => Attempt::Retry(CommandError::Unreachable),
        FetchError::Status(code) => status(code),
        FetchError::NotFound => Attempt::Fatal(CommandError::NotFound),
        FetchError::Protocol => Attempt::Fatal(CommandError::Protocol),
        FetchError::Write if too_large => Attempt::Fatal(CommandError::TooLarge),
        FetchError::Write => Attempt::Fatal(CommandError::Storage),
        FetchError::Tls(tls) => Attempt::Fatal(CommandError::Tls(tls)),
        FetchError::TooManyRedirects => Attempt::Fatal(CommandError::TooManyRedirects),
        FetchError::InsecureRedirect => Attempt::Fatal(CommandError::InsecureRedirect),
    }
}

/// A name of a command as a path segment; `None` (a protocol error) when it is not one.
fn segment(name: &Name) -> Option<Segment<'_>> {
    Segment::parse(name.as_str()).ok()
}

/// An index that could not be read (malformed, or over a limit): never tried again (the same
/// bytes would come back). [`CommandError::TooLarge`] would speak of a bundle: a failure line
/// says `the answer could not be read` of any index lockstep cannot take.
fn index_failed(e: IndexError) -> CommandError {
    match e {
        IndexError::Malformed | IndexError::ElementTooLarge | IndexError::TooLarge => {
            CommandError::Protocol
        }
    }
}

/// Told before each retry of a command's request; answers whether to go on
/// ([`Agent::retrying`]).
type Retrying<'a> = &'a dyn Fn(Retry) -> bool;

/// Runs `$try` (an attempt of an idempotent request) up to the configured number of times,
/// telling `$retrying` before each retry, with the backoff between: the first success, the
/// first fatal error, or the last retryable one.
macro_rules! with_retries {
    ($worker:expr, $retrying:expr, $try:expr) => {{
        let attempts = $worker.config.attempts.max(1);
        let mut failed = 0u32;
        loop {
            match $try {
                Ok(value) => break Ok(value),
                Err(Attempt::Retry(error)) => {
                    failed = failed.saturating_add(1);
                    let retry = Retry {
                        attempt: failed.saturating_add(1),
                        attempts,
                        error,
                    };
                    if failed >= attempts || !($retrying)(retry) {
                        break Err(error);
                    }
                    $worker.backoff(failed).await;
                }
                Err(Attempt::Fatal(error)) => break Err(error),
            }
        }
    }};
}

/// A worker of the agent.
pub struct Worker<'w, C: Connector, T: Time, S: Store, R: Repository> {
    id: usize,
    conductr: Url<'w>,
    time: &'w T,
    store: &'w S,
    repository: &'w R,
    config: Config,
    client: Client<'w, C, T>,
    work: &'w mut Work,
}

impl<C: Connector, T: Time, S: Store, R: Repository> core::fmt::Debug for Worker<'_, C, T, S, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<'w, C: Connector, T: Time, S: Store, R: Repository> Worker<'w, C, T, S, R> {
    /// Worker number `id` (from 0, below [`super::MAX_WORKERS`]) of the control API at
    /// `conductr`.
    #[allow(
        clippy::too_many_arguments,
        reason = "the platform's parts, each of them needed"
    )]
    pub fn new(
        id: usize,
        conductr: Url<'w>,
        connector: &'w C,
        time: &'w T,
        store: &'w S,
        repository: &'w R,
        config: Config,
        buffers: &'w mut Buffers,
    ) -> Self {
        let Buffers { client, work } = buffers;
        Self {
            id,
            conductr,
            time,
            store,
            repository,
            config,
            client: Client::new(connector, time, client, config.io_timeout),
            work,
        }
    }

    /// Takes jobs from `agent` for ever.
    pub async fn run<const N: usize, K: Sink, H: Shelf, J: Journal>(
        &mut self,
        agent: &Agent<N, K, H, J>,
    ) -> ! {
        loop {
            match agent.next_job(self.id).await {
                Job::Cleanup(deployment) => {
                    self.store.remove(deployment).await;
                    agent.cleaned(self.id);
                }
                Job::Command(command) => self.execute(agent, &command).await,
            }
        }
    }

    async fn execute<const N: usize, K: Sink, H: Shelf, J: Journal>(
        &mut self,
        agent: &Agent<N, K, H, J>,
        command: &Command,
    ) {
        let deployment = command.deployment;
        let id = self.id;
        let fail = |agent: &Agent<N, K, H, J>, time: &T, e| {
            agent.finish(id, time.now(), command, Reply::Failed(e));
        };
        let retrying = |retry| agent.retrying(command, retry);
        let retrying: Retrying<'_> = &retrying;
        match command.kind {
            CommandKind::Resolve {
                org,
                repo,
                package,
                tag,
                digest,
            } => match self
                .resolve(retrying, deployment, [org, repo, package, tag], digest)
                .await
            {
                Ok((name, compat)) => agent.finish(
                    self.id,
                    self.time.now(),
                    command,
                    Reply::Resolved {
                        name: name.as_str(),
                        compatibility_version: compat.as_str(),
                    },
                ),
                Err(e) => fail(agent, self.time, e),
            },
            CommandKind::Observe { name } => {
                agent
                    .await_change(self.time, self.id, deployment, self.config.poll_interval)
                    .await;
                let mut spans: heapless::Vec<(usize, usize), MAX_OBSERVED> = heapless::Vec::new();
                if let Err(e) = self.list(retrying, Looking::Name(&name), &mut spans).await {
                    return fail(agent, self.time, e);
                }
                let mut views: heapless::Vec<BundleView<'_>, MAX_OBSERVED> = heapless::Vec::new();
                for (start, end) in spans {
                    // Each span holds an element `list` parsed and kept, one per slot: none
                    // of this fails, and a bundle left out would be a wrong observation.
                    let observed = self
                        .work
                        .found
                        .get(start..end)
                        .and_then(|element| BundleInfo::parse(element).ok())
                        .and_then(|info| views.push(BundleView::from(&info)).ok());
                    if observed.is_none() {
                        return fail(agent, self.time, CommandError::Protocol);
                    }
                }
                agent.finish(
                    self.id,
                    self.time.now(),
                    command,
                    Reply::Observed { bundles: &views },
                );
            }
            CommandKind::Screen {
                org,
                repo,
                package,
                digest,
            } => match self.screen(retrying, [org, repo, package], digest).await {
                Ok(before) => {
                    agent.finish(
                        self.id,
                        self.time.now(),
                        command,
                        Reply::Screened { before },
                    );
                }
                Err(e) => fail(agent, self.time, e),
            },
            CommandKind::Order {
                org,
                repo,
                package,
                digest,
                old,
            } => match self
                .published_before(retrying, [org, repo, package], digest, old)
                .await
            {
                Ok(before) => {
                    agent.finish(self.id, self.time.now(), command, Reply::Ordered { before });
                }
                Err(e) => fail(agent, self.time, e),
            },
            CommandKind::FetchConfig { bundle } => {
                match self.fetch_config(retrying, deployment, bundle).await {
                    Ok(config) => agent.finish(
                        self.id,
                        self.time.now(),
                        command,
                        Reply::ConfigFetched { config },
                    ),
                    Err(e) => fail(agent, self.time, e),
                }
            }
            CommandKind::Load { digest, config } => {
                match self.load(retrying, deployment, digest, config).await {
                    Ok(id) => agent.finish(self.id, self.time.now(), command, Reply::Loaded { id }),
                    Err(e) => fail(agent, self.time, e),
                }
            }
            CommandKind::Scale { bundle, scale } => match self.scale(retrying, bundle, scale).await
            {
                Ok(()) => agent.finish(self.id, self.time.now(), command, Reply::Scaled),
                Err(e) => fail(agent, self.time, e),
            },
        }
    }

    /// When a transfer from the repository started now must have ended: `download_limit` on.
    fn transfer_deadline(&self) -> Instant {
        self.time
            .now()
            .instant
            .saturating_add(self.config.download_limit)
    }

    /// Waits before try number `attempt` (from 1): the backoff, doubled each time, up to
    /// [`MAX_BACKOFF`].
    async fn backoff(&self, attempt: u32) {
        let mut pause = self.config.backoff;
        for _ in 1..attempt {
            if pause >= MAX_BACKOFF {
                break;
            }
            pause = pause.saturating_mul(2);
        }
        let pause = pause.min(MAX_BACKOFF);
        self.time
            .at(self.time.now().instant.saturating_add(pause))
            .await;
    }

    // ---- resolve ---------------------------------------------------------------------------

    /// Downloads the bundle into the store while hashing it (tried again as an idempotent
    /// request), checks the digest, reads its bundle.conf: its name and compatibilityVersion.
    async fn resolve(
        &mut self,
        retrying: Retrying<'_>,
        deployment: DeploymentId,
        [org, repo, package, tag]: [Name; 4],
        digest: Digest,
    ) -> Result<(Name, Name), CommandError> {
        let (Some(org), Some(repo), Some(package), Some(tag)) = (
            segment(&org),
            segment(&repo),
            segment(&package),
            segment(&tag),
        ) else {
            return Err(CommandError::Protocol);
        };
        let location = Location {
            org,
            repo,
            package,
            tag,
            digest,
        };
        let key = FileKey {
            deployment,
            kind: FileKind::Bundle,
        };
        with_retries!(self, retrying, self.try_download(&location, key).await)?;
        let conf = bundle_conf(self.store, self.work, key).await?;
        let doc = core::str::from_utf8(conf)
            .ok()
            .and_then(|text| Document::parse(text).ok())
            .ok_or(CommandError::BadBundleConf)?;
        let text = |path: &str| match doc.get_str::<64>(path) {
            Some(Ok(value)) => Name::new(&value).map_err(|_| CommandError::BadBundleConf),
            _ => Err(CommandError::BadBundleConf),
        };
        Ok((text("name")?, text("compatibilityVersion")?))
    }

    /// One try of the download, within `download_limit`: the file (created or truncated) and
    /// its hash start afresh, so a try that broke off leaves nothing behind in the next.
    async fn try_download(&mut self, location: &Location<'_>, key: FileKey) -> Result<(), Attempt> {
        let file = self
            .store
            .create(key)
            .await
            .map_err(|_| Attempt::Fatal(CommandError::Storage))?;
        let mut out = Hashing::new(file, self.config.max_bundle_size);
        let deadline = self.transfer_deadline();
        let fetched = with_deadline(
            self.time,
            deadline,
            self.repository.fetch(location, &mut out, &mut self.work.io),
        )
        .await;
        match fetched {
            Err(_) => return Err(Attempt::Retry(CommandError::TimedOut)),
            Ok(Err(e)) => return Err(download_failed(e, out.too_large)),
            Ok(Ok(_)) => {}
        }
        let hash = out
            .finish()
            .await
            .map_err(|_| Attempt::Fatal(CommandError::Storage))?;
        if hash != location.digest {
            return Err(Attempt::Fatal(CommandError::DigestMismatch));
        }
        Ok(())
    }

    // ---- published before ------------------------------------------------------------------

    /// Whether the version `new` of the package was published BEFORE the running bundle
    /// `old`, by the package's `versions.json` (docs/PROTOCOL.md §4; the rules are
    /// [`crate::index`]'s): `Some(tag of the running version)` when it was, `None` when it was
    /// not or the index cannot tell (an absent index is an empty one). Tried again as an
    /// idempotent request, each try within `download_limit`; an index that cannot be read, or
    /// one over [`MAX_INDEX_LEN`](crate::index::MAX_INDEX_LEN), is
    /// [`CommandError::Protocol`], not tried again.
    pub(super) async fn published_before(
        &mut self,
        retrying: Retrying<'_>,
        [org, repo, package]: [Name; 3],
        new: Digest,
        old: BundleId,
    ) -> Result<Option<Name>, CommandError> {
        let (Some(org), Some(repo), Some(package)) =
            (segment(&org), segment(&repo), segment(&package))
        else {
            return Err(CommandError::Protocol);
        };
        let at = IndexLocation { org, repo, package };
        let before = with_retries!(
            self,
            retrying,
            self.try_published_before(&at, new, &[old]).await
        )?;
        Ok(before.map(|(tag, _)| tag))
    }

    /// Whether the version `new` of `package` was published before EVERY running bundle of
    /// that name (docs/DESIGN.md rule 12, screening): the bundles are listed (`GET
    /// /v2/bundles`, as an observation), then the index is read as
    /// [`published_before`](Self::published_before) reads it, compared with the running
    /// bundle it lists earliest. Nothing running: `None`, and no index is read.
    async fn screen(
        &mut self,
        retrying: Retrying<'_>,
        [org, repo, package]: [Name; 3],
        new: Digest,
    ) -> Result<Option<(Name, BundleId)>, CommandError> {
        let mut spans: heapless::Vec<(usize, usize), MAX_OBSERVED> = heapless::Vec::new();
        self.list(retrying, Looking::Name(&package), &mut spans)
            .await?;
        let mut running: heapless::Vec<BundleId, MAX_OBSERVED> = heapless::Vec::new();
        for (start, end) in spans {
            let info = self
                .work
                .found
                .get(start..end)
                .and_then(|element| BundleInfo::parse(element).ok())
                .ok_or(CommandError::Protocol)?;
            if BundleView::from(&info).is_running() {
                // As many slots as spans: never full.
                let _ = running.push(info.id);
            }
        }
        if running.is_empty() {
            return Ok(None);
        }
        let (Some(org), Some(repo), Some(package)) =
            (segment(&org), segment(&repo), segment(&package))
        else {
            return Err(CommandError::Protocol);
        };
        let at = IndexLocation { org, repo, package };
        with_retries!(
            self,
            retrying,
            self.try_published_before(&at, new, &running).await
        )
    }

    /// One try: the index streamed through a fresh [`IndexScan`] over `work.element`.
    async fn try_published_before(
        &mut self,
        at: &IndexLocation<'_>,
        new: Digest,
        olds: &[BundleId],
    ) -> Result<Option<(Name, BundleId)>, Attempt> {
        let deadline = self.transfer_deadline();
        let mut scan = IndexScan::among(&mut self.work.element, new, olds);
        let fetched = with_deadline(
            self.time,
            deadline,
            self.repository
                .fetch_index(at, &mut scan, &mut self.work.io),
        )
        .await;
        match fetched {
            Err(_) => Err(Attempt::Retry(CommandError::TimedOut)),
            // An absent index is an empty one: it tells of no downgrade.
            Ok(Err(FetchError::NotFound)) => Ok(None),
            // The scan refused what it was written: its own error says why.
            Ok(Err(FetchError::Write)) => Err(Attempt::Fatal(match scan.finish_which() {
                Err(e) => index_failed(e),
                Ok(_) => CommandError::Protocol,
            })),
            Ok(Err(e)) => Err(download_failed(e, false)),
            Ok(Ok(_)) => scan
                .finish_which()
                .map_err(|e| Attempt::Fatal(index_failed(e))),
        }
    }

    // ---- list ------------------------------------------------------------------------------

    /// Lists the bundles (`GET /v2/bundles`), retrying; keeps, in `work.found`, the elements
    /// `looking` asks for.
    async fn list(
        &mut self,
        retrying: Retrying<'_>,
        looking: Looking<'_>,
        spans: &mut heapless::Vec<(usize, usize), MAX_OBSERVED>,
    ) -> Result<(), CommandError> {
        with_retries!(self, retrying, {
            spans.clear();
            self.try_list(looking, spans).await
        })
    }

    async fn try_list(
        &mut self,
        looking: Looking<'_>,
        spans: &mut heapless::Vec<(usize, usize), MAX_OBSERVED>,
    ) -> Result<(), Attempt> {
        let head = self
            .client
            .get(
                self.conductr.origin(),
                Path(self.conductr.path(), BUNDLES_PATH),
                &[("Accept", "application/json")],
            )
            .await?;
        if head.status != 200 {
            let _ = self.client.discard().await;
            return Err(status(head.status));
        }
        let mut splitter = ArraySplitter::new(&mut self.work.element);
        let mut used = 0usize;
        loop {
            let mut input = self.client.read_chunk(&mut self.work.io).await?;
            if input.is_empty() {
                break;
            }
            while let Some(element) = splitter
                .next_element(&mut input)
                .map_err(|_| Attempt::Fatal(CommandError::Protocol))?
            {
                let info = BundleInfo::parse(element)
                    .map_err(|_| Attempt::Fatal(CommandError::Protocol))?;
                if !looking.wants(&info) {
                    continue;
                }
                let end = used.saturating_add(element.len());
                let slot = self
                    .work
                    .found
                    .get_mut(used..end)
                    .ok_or(Attempt::Fatal(CommandError::Protocol))?;
                slot.copy_from_slice(element);
                spans
                    .push((used, end))
                    .map_err(|_| Attempt::Fatal(CommandError::Protocol))?;
                used = end;
            }
        }
        splitter
            .finish()
            .map_err(|_| Attempt::Retry(CommandError::Protocol))?;
        Ok(())
    }

    // ---- fetch the configuration -------------------------------------------------------------

    async fn fetch_config(
        &mut self,
        retrying: Retrying<'_>,
        deployment: DeploymentId,
        bundle: BundleId,
    ) -> Result<Digest, CommandError> {
        with_retries!(
            self,
            retrying,
            self.try_fetch_config(deployment, bundle).await
        )
    }

    /// `GET /v2/bundles/{id}` as multipart: the `configuration` part goes to the store.
    async fn try_fetch_config(
        &mut self,
        deployment: DeploymentId,
        bundle: BundleId,
    ) -> Result<Digest, Attempt> {
        let head = self
            .client
            .get(
                self.conductr.origin(),
                Path(self.conductr.path(), BundlePath(bundle)),
                &[("Accept", ACCEPT_MULTIPART)],
            )
            .await?;
        if head.status != 200 {
            let _ = self.client.discard().await;
            return Err(status(head.status));
        }
        let protocol = || Attempt::Fatal(CommandError::Protocol);
        let boundary =
            boundary_from_content_type(head.content_type.as_str()).ok_or_else(protocol)?;
        let boundary: InlineStr<70> = InlineStr::new(boundary).map_err(|_| protocol())?;
        let boundary = Boundary::new(boundary.as_str()).map_err(|_| protocol())?;
        let key = FileKey {
            deployment,
            kind: FileKind::Configuration,
        };
        let file = self
            .store
            .create(key)
            .await
            .map_err(|_| Attempt::Fatal(CommandError::Storage))?;
        let mut out = Hashing::new(file, self.config.max_bundle_size);
        let (head_buf, _) = self.work.conf.split_at_mut(HEAD_BUFFER_LEN);
        let mut reader = MultipartReader::new(boundary, head_buf);
        let mut in_config = false;
        let mut found = false;
        loop {
            let mut input = self.client.read_chunk(&mut self.work.io).await?;
            if input.is_empty() {
                break;
            }
            while let Some(event) = reader.next(&mut input).map_err(|_| protocol())? {
                match event {
                    PartEvent::PartStart { name, .. } => {
                        in_config = name == "configuration";
                        found |= in_config;
                    }
                    PartEvent::Data(data) if in_config => {
                        out.write_all(data).await.map_err(|_| {
                            Attempt::Fatal(if out.too_large {
                                CommandError::TooLarge
                            } else {
                                CommandError::Storage
                            })
                        })?;
                    }
                    PartEvent::Data(_) => {}
                    PartEvent::PartEnd => in_config = false,
                    PartEvent::End => {}
                }
            }
        }
        reader
            .finish()
            .map_err(|_| Attempt::Retry(CommandError::Protocol))?;
        if !found {
            return Err(protocol());
        }
        out.finish()
            .await
            .map_err(|_| Attempt::Fatal(CommandError::Storage))
    }

    // ---- load ------------------------------------------------------------------------------

    /// Loads the bundle with the configuration, unless it is loaded already; after a failed
    /// try, checks again before trying again, so that a load is never posted blindly twice.
    async fn load(
        &mut self,
        retrying: Retrying<'_>,
        deployment: DeploymentId,
        digest: Digest,
        config: Option<Digest>,
    ) -> Result<BundleId, CommandError> {
        let expected = BundleId::of(&digest, config.as_ref());
        with_retries!(self, retrying, {
            let mut spans = heapless::Vec::new();
            // The listing retries on its own: when it gives up, so does the load.
            match self.list(retrying, Looking::Id(expected), &mut spans).await {
                Err(e) => Err(Attempt::Fatal(e)),
                Ok(()) if !spans.is_empty() => Ok(expected),
                Ok(()) => self.try_load(deployment, digest, config).await,
            }
        })
    }

    async fn try_load(
        &mut self,
        deployment: DeploymentId,
        digest: Digest,
        config: Option<Digest>,
    ) -> Result<BundleId, Attempt> {
        let storage = || Attempt::Fatal(CommandError::Storage);
        let bundle_key = FileKey {
            deployment,
            kind: FileKind::Bundle,
        };
        let config_key = FileKey {
            deployment,
            kind: FileKind::Configuration,
        };
        // The lengths first: the overlay (the configuration's bundle.conf, if any), then the
        // bundle's own bundle.conf, which stays in `work.conf` for the first part.
        let overlay_len = match config {
            Some(_) => match bundle_conf(self.store, self.work, config_key).await {
                Ok(overlay) => Some(len_u64(overlay.len())),
                Err(CommandError::BadArchive) => None,
                Err(e) => return Err(Attempt::Fatal(e)),
            },
            None => None,
        };
        let conf = bundle_conf(self.store, self.work, bundle_key)
            .await
            .map_err(Attempt::Fatal)?;
        let conf_len = conf.len();
        let name: Name = core::str::from_utf8(conf)
            .ok()
            .and_then(|text| Document::parse(text).ok())
            .and_then(|doc| match doc.get_str::<64>("name") {
                Some(Ok(name)) => Name::new(&name).ok(),
                _ => None,
            })
            .ok_or(Attempt::Fatal(CommandError::BadBundleConf))?;
        let bundle_name = Segment::parse(name.as_str())
            .map_err(|_| Attempt::Fatal(CommandError::BadBundleConf))?;
        let mut bundle_file = self.store.open(bundle_key).await.map_err(|_| storage())?;
        let mut config_file = match config {
            Some(_) => Some(self.store.open(config_key).await.map_err(|_| storage())?),
            None => None,
        };
        let files = LoadFiles {
            bundle_name,
            bundle_conf_len: len_u64(conf_len),
            overlay_len,
            bundle: ZipFile {
                digest,
                len: bundle_file.len(),
            },
            configuration: config
                .zip(config_file.as_ref())
                .map(|(digest, file)| ZipFile {
                    digest,
                    len: file.len(),
                }),
        };
        let parts = files.parts();
        // No randomness in core: the boundary is made of the digest, which never appears in
        // the zip it names with a line break and two dashes before it. `lockstep-` and 48 hex
        // digits: 57 bytes.
        let hex = digest.to_hex();
        let boundary_text: heapless::String<57> =
            text::collect_truncated("lockstep-".chars().chain(hex.as_str().chars().take(48)));
        let protocol = || Attempt::Fatal(CommandError::Protocol);
        let boundary = Boundary::new(boundary_text.as_str()).map_err(|_| protocol())?;
        let form = Multipart::new(boundary, &parts).map_err(|_| protocol())?;
        let mut content_type = heapless::String::<128>::new();
        write!(content_type, "{}", form.content_type()).map_err(|_| protocol())?;
        self.client
            .begin(
                Method::Post,
                self.conductr.origin(),
                Path(self.conductr.path(), BUNDLES_PATH),
                &[("Content-Type", content_type.as_str())],
                Some(form.content_length()),
            )
            .await?;
        let mut head = [0u8; MAX_PART_HEAD_LEN];
        for (index, part) in parts.iter().enumerate() {
            let mut cursor = Cursor::new(&mut head);
            form.write_head(index, &mut cursor)
                .map_err(|_| protocol())?;
            self.client.write(cursor.written()).await?;
            match part.name {
                "bundleConf" => {
                    let conf = bundle_conf(self.store, self.work, bundle_key)
                        .await
                        .map_err(Attempt::Fatal)?;
                    self.client.write(conf).await?;
                }
                "bundleConfOverlay" => {
                    let overlay = bundle_conf(self.store, self.work, config_key)
                        .await
                        .map_err(Attempt::Fatal)?;
                    self.client.write(overlay).await?;
                }
                "bundle" => self.send_file(&mut bundle_file).await?,
                _ => {
                    if let Some(file) = config_file.as_mut() {
                        self.send_file(file).await?;
                    }
                }
            }
        }
        let mut close = [0u8; MAX_CLOSE_LEN];
        let mut cursor = Cursor::new(&mut close);
        form.write_close(&mut cursor).map_err(|_| protocol())?;
        self.client.write(cursor.written()).await?;
        let answer = self.client.response().await?;
        let body = self.read_small_body().await?;
        if answer.status != 200 {
            return Err(status(answer.status));
        }
        RequestAnswer::parse(body)
            .map(|a| a.bundle_id)
            .map_err(|_| protocol())
    }

    /// Streams a file of the store to the request body.
    async fn send_file(&mut self, file: &mut S::Reader) -> Result<(), Attempt> {
        let total = file.len();
        let mut offset = 0u64;
        while offset < total {
            let chunk = text::min_len(total.saturating_sub(offset), self.work.io.len());
            // At most the buffer's length: the split is within it.
            let (buf, _) = self.work.io.split_at_mut(chunk);
            file.read_exact_at(offset, buf)
                .map_err(|_| Attempt::Fatal(CommandError::Storage))?;
            self.client.write(buf).await?;
            offset = offset.saturating_add(len_u64(chunk));
        }
        Ok(())
    }

    /// Reads a response body of at most `work.io`'s size into it (the rest is discarded); the
    /// body read.
    async fn read_small_body(&mut self) -> Result<&[u8], Attempt> {
        let mut body = Cursor::new(&mut self.work.io);
        loop {
            let room = body.spare();
            if room.is_empty() {
                let _ = self.client.discard().await;
                break;
            }
            let n = self.client.read_chunk(room).await?.len();
            if n == 0 {
                break;
            }
            body.advance(n)
                .map_err(|_| Attempt::Fatal(CommandError::Protocol))?;
        }
        Ok(body.into_written())
    }

    // ---- scale -----------------------------------------------------------------------------

    async fn scale(
        &mut self,
        retrying: Retrying<'_>,
        bundle: BundleId,
        scale: u32,
    ) -> Result<(), CommandError> {
        with_retries!(self, retrying, self.try_scale(bundle, scale).await)
    }

    async fn try_scale(&mut self, bundle: BundleId, scale: u32) -> Result<(), Attempt> {
        let target = ScaleTarget {
            id: bundle,
            scale,
            affinity: None,
        };
        self.client
            .begin(
                Method::Put,
                self.conductr.origin(),
                Path(self.conductr.path(), target),
                &[],
                Some(0),
            )
            .await?;
        let head = self.client.response().await?;
        let _ = self.client.discard().await;
        if head.status == 200 {
            Ok(())
        } else {
            Err(status(head.status))
        }
    }
}

/// The bundle.conf of a zip in the store, read into `work.conf`.
async fn bundle_conf<'a, S: Store>(
    store: &S,
    work: &'a mut Work,
    key: FileKey,
) -> Result<&'a [u8], CommandError> {
    let mut file = store.open(key).await.map_err(|_| CommandError::Storage)?;
    archive::read_bundle_conf(&mut file, &mut work.inflater, &mut work.conf)
        .map_err(|_| CommandError::BadArchive)
}

/// The control API's base path, then a target.
pub(super) fn path<P: core::fmt::Display>(base: &str, target: P) -> impl core::fmt::Display {
    Path(base, target)
}

/// The control API's base path, then a target.
struct Path<'a, P>(&'a str, P);

impl<P: core::fmt::Display> core::fmt::Display for Path<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}{}", self.0.trim_end_matches('/'), self.1)
    }
}

/// Which bundles a listing keeps.
#[derive(Clone, Copy)]
enum Looking<'a> {
    Name(&'a Name),
    Id(BundleId),
}

impl Looking<'_> {
    fn wants(&self, info: &BundleInfo<'_>) -> bool {
        match self {
            Self::Name(name) => info.name == name.as_str(),
            Self::Id(id) => info.id == *id,
        }
    }
}

/// A writer that hashes and counts what passes, and refuses more than a cap.
struct Hashing<W> {
    inner: W,
    sha: sha2::Sha256,
    written: u64,
    cap: u64,
    too_large: bool,
}

/// A write refused: over the cap, or the inner writer failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HashingError;

impl core::fmt::Display for HashingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("over the size limit, or the store failed")
    }
}

impl core::error::Error for HashingError {}

impl embedded_io::Error for HashingError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::Other
    }
}

impl<W: Write> Hashing<W> {
    fn new(inner: W, cap: u64) -> Self {
        Self {
            inner,
            sha: sha2::Sha256::new(),
            written: 0,
            cap,
            too_large: false,
        }
    }

    /// Flushes; the SHA-256 of everything written.
    async fn finish(mut self) -> Result<Digest, HashingError> {
        self.inner.flush().await.map_err(|_| HashingError)?;
        Ok(Digest::from_bytes(self.sha.finalize().into()))
    }
}

impl<W: Write> embedded_io::ErrorType for Hashing<W> {
    type Error = HashingError;
}

impl<W: Write> Write for Hashing<W> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let after = self.written.saturating_add(len_u64(buf.len()));
        if after > self.cap {
            self.too_large = true;
            return Err(HashingError);
        }
        let n = self.inner.write(buf).await.map_err(|_| HashingError)?;
        // A writer that claims more than it was given has failed.
        let done = buf.get(..n).ok_or(HashingError)?;
        self.sha.update(done);
        self.written = self.written.saturating_add(len_u64(done.len()));
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.inner.flush().await.map_err(|_| HashingError)
    }
}

#[cfg(test)]
mod tests {
    use core::cell::{Cell, RefCell};
    use core::future::poll_fn;
    use core::task::Poll;
    use std::boxed::Box;
    use std::collections::{HashMap, VecDeque};
    use std::rc::Rc;
    use std::vec::Vec;

    use super::*;
    use crate::agent::http::testing::{FakeTime, Script, Scripted, block_on};
    use crate::agent::{StoreError, TlsError};
    use crate::archive::OutOfBounds;
    use crate::conductr::bundles::tests::{
        BUNDLE_DIGEST, minimal, nested_unknown_fields, protocol_example,
    };
    use crate::deployer::{Deployer, Event, EventKind, Policy, Record, Request, Tags};
    use crate::ledger::{Ledger, Retained};
    use crate::time::{Instant, Now, UnixTime};

    // docs/PROTOCOL.md §5's example element: running at scale 2.
    #[test]
    fn test_view_of_protocol_example() {
        let text = protocol_example();
        let info = BundleInfo::parse(text.as_bytes()).unwrap();
        let view = BundleView::from(&info);
        assert!(view.is_running());
        assert_eq!(view.target_scale(), 2);
        assert!(view.is_of(&info.digest));
        assert_eq!(view.name, "visualizer");
    }

    // Loaded, never run: no `bundleScale`, no executions.
    #[test]
    fn test_view_of_bundle_never_run() {
        let text = minimal(BUNDLE_DIGEST, "visualizer");
        let info = BundleInfo::parse(text.as_bytes()).unwrap();
        assert!(!BundleView::from(&info).is_running());
    }

    // Scale 0 with a started instance: being stopped, not running.
    #[test]
    fn test_view_of_bundle_being_stopped() {
        let text = nested_unknown_fields();
        let info = BundleInfo::parse(text.as_bytes()).unwrap();
        assert!(!BundleView::from(&info).is_running());
    }

    // ---- retries -----------------------------------------------------------------------------

    // Info-ZIP `zip -X -0` of visualizer-v1 (core/tests/data/archive/README.txt): its
    // bundle.conf names `visualizer`, compatibilityVersion 2.
    const ZIP: &[u8] = include_bytes!("../../tests/data/archive/stored.zip");

    fn zip_digest() -> Digest {
        Digest::from_bytes(sha2::Sha256::digest(ZIP).into())
    }

    /// What one fetch of [`Answers`] does.
    #[derive(Debug)]
    enum Answer {
        /// Writes the zip.
        Zip,
        /// Writes the zip's first bytes, this many, then fails.
        BrokenAfter(usize, FetchError),
        /// Fails at once.
        Fails(FetchError),
        /// Never completes.
        Stalls,
        /// Writes these bytes, as a package's index.
        Index(&'static str),
    }

    /// A repository that answers each fetch with the next scripted answer, and counts them.
    #[derive(Debug, Default)]
    struct Answers {
        script: RefCell<VecDeque<Answer>>,
        fetches: Cell<usize>,
    }

    impl Repository for Answers {
        async fn fetch<W: Write>(
            &self,
            _: &Location<'_>,
            out: &mut W,
            _: &mut [u8],
        ) -> Result<u64, FetchError> {
            self.fetches.set(self.fetches.get() + 1);
            self.answer(out).await
        }

        async fn fetch_index<W: Write>(
            &self,
            _: &IndexLocation<'_>,
            out: &mut W,
            _: &mut [u8],
        ) -> Result<u64, FetchError> {
            self.fetches.set(self.fetches.get() + 1);
            self.answer(out).await
        }
    }

    impl Answers {
        /// Carries out the next scripted answer.
        async fn answer<W: Write>(&self, out: &mut W) -> Result<u64, FetchError> {
            let answer = self.script.borrow_mut().pop_front();
            let (bytes, error) = match answer.expect("a scripted answer for every fetch") {
                Answer::Zip => (ZIP, None),
                Answer::BrokenAfter(n, e) => (&ZIP[..n], Some(e)),
                Answer::Fails(e) => (&[][..], Some(e)),
                Answer::Stalls => return poll_fn(|_| Poll::Pending).await,
                Answer::Index(text) => (text.as_bytes(), None),
            };
            out.write_all(bytes).await.map_err(|_| FetchError::Write)?;
            match error {
                Some(e) => Err(e),
                None => Ok(len_u64(bytes.len())),
            }
        }
    }

    /// A store in memory; `create` truncates, as a file system's does.
    #[derive(Debug, Default)]
    struct Memory {
        files: RefCell<HashMap<FileKey, Rc<RefCell<Vec<u8>>>>>,
        creates: Cell<usize>,
        broken: bool,
    }

    impl Memory {
        fn file(&self, key: FileKey) -> Vec<u8> {
            self.files.borrow()[&key].borrow().clone()
        }
    }

    #[derive(Debug)]
    struct MemoryFile(Rc<RefCell<Vec<u8>>>);

    impl embedded_io::ErrorType for MemoryFile {
        type Error = embedded_io::ErrorKind;
    }

    impl Write for MemoryFile {
        async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }

        async fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    #[derive(Debug)]
    struct Snapshot(Vec<u8>);

    impl RandomAccess for Snapshot {
        type Error = OutOfBounds;

        fn len(&self) -> u64 {
            len_u64(self.0.len())
        }

        fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
            self.0.as_slice().read_exact_at(offset, buf)
        }
    }

    impl Store for Memory {
        type Writer = MemoryFile;
        type Reader = Snapshot;

        async fn create(&self, key: FileKey) -> Result<MemoryFile, StoreError> {
            if self.broken {
                return Err(StoreError);
            }
            self.creates.set(self.creates.get() + 1);
            let file = Rc::new(RefCell::new(Vec::new()));
            self.files.borrow_mut().insert(key, Rc::clone(&file));
            Ok(MemoryFile(file))
        }

        async fn open(&self, key: FileKey) -> Result<Snapshot, StoreError> {
            let files = self.files.borrow();
            let file = files.get(&key).ok_or(StoreError)?;
            Ok(Snapshot(file.borrow().clone()))
        }

        async fn remove(&self, deployment: DeploymentId) {
            self.files
                .borrow_mut()
                .retain(|key, _| key.deployment != deployment);
        }
    }

    const DEPLOYMENT: DeploymentId = DeploymentId::random_v4([7; 16]);
    const BUNDLE: FileKey = FileKey {
        deployment: DEPLOYMENT,
        kind: FileKind::Bundle,
    };

    /// A worker's platform: the control API's scripted connections, a clock that stands
    /// still, a store in memory, a scripted repository; no pause between tries. `told` holds
    /// every retry the worker announced.
    struct Bench {
        connector: Scripted,
        time: FakeTime,
        store: Memory,
        repository: Answers,
        config: Config,
        buffers: Box<Buffers>,
        told: RefCell<Vec<Retry>>,
        /// What the worker is answered when it announces a retry.
        go_on: bool,
    }

    impl Bench {
        fn new(answers: impl IntoIterator<Item = Answer>) -> Self {
            Self {
                connector: Scripted::new([]),
                time: FakeTime::default(),
                store: Memory::default(),
                repository: Answers {
                    script: RefCell::new(answers.into_iter().collect()),
                    fetches: Cell::new(0),
                },
                config: Config {
                    backoff: Duration::ZERO,
                    ..Config::default()
                },
                buffers: Box::new(Buffers::new()),
                told: RefCell::new(Vec::new()),
                go_on: true,
            }
        }

        /// Runs `f` with a worker over the bench and a teller that records each retry.
        fn with_worker<R>(
            &mut self,
            f: impl AsyncFnOnce(&mut Worker<'_, Scripted, FakeTime, Memory, Answers>, Retrying<'_>) -> R,
        ) -> R {
            let Self {
                connector,
                time,
                store,
                repository,
                config,
                buffers,
                told,
                go_on,
            } = self;
            let conductr = Url::parse("http://127.0.0.1:9005").unwrap();
            let mut worker = Worker::new(
                0, conductr, connector, time, store, repository, *config, buffers,
            );
            let retrying = |retry| {
                told.borrow_mut().push(retry);
                *go_on
            };
            block_on(f(&mut worker, &retrying))
        }

        /// Resolves the test zip's version, published under `digest`.
        fn resolve_as(&mut self, digest: Digest) -> Result<(Name, Name), CommandError> {
            let names = ["typesafe", "bundle", "visualizer", "v2"].map(|n| Name::new(n).unwrap());
            self.with_worker(async |worker, retrying| {
                worker.resolve(retrying, DEPLOYMENT, names, digest).await
            })
        }

        fn resolve(&mut self) -> Result<(Name, Name), CommandError> {
            self.resolve_as(zip_digest())
        }

        fn told(&self) -> Vec<Retry> {
            self.told.borrow().clone()
        }
    }

    fn resolved() -> Result<(Name, Name), CommandError> {
        Ok((Name::new("visualizer").unwrap(), Name::new("2").unwrap()))
    }

    fn retry(attempt: u32, error: CommandError) -> Retry {
        Retry {
            attempt,
            attempts: 4,
            error,
        }
    }

    // The transfer may pass next time; the repository's refusal and the worker's own will not.
    #[test]
    fn test_download_failed_decides_per_error() {
        use Attempt::{Fatal, Retry};
        use CommandError as E;
        for (error, too_large, retried, expected) in [
            (FetchError::Unreachable, false, true, E::Unreachable),
            (FetchError::Status(500), false, true, E::Status(500)),
            (FetchError::Status(503), false, true, E::Status(503)),
            (FetchError::NotFound, false, false, E::NotFound),
            (FetchError::Status(403), false, false, E::Status(403)),
            (FetchError::Status(301), false, false, E::Status(301)),
            (FetchError::Protocol, false, false, E::Protocol),
            (FetchError::Write, true, false, E::TooLarge),
            (FetchError::Write, false, false, E::Storage),
            (
                FetchError::Tls(TlsError::Expired),
                false,
                false,
                E::Tls(TlsError::Expired),
            ),
            (
                FetchError::TooManyRedirects,
                false,
                false,
                E::TooManyRedirects,
            ),
            (
                FetchError::InsecureRedirect,
                false,
                false,
                E::InsecureRedirect,
            ),
        ] {
            let decided = match download_failed(error, too_large) {
                Retry(e) => (true, e),
                Fatal(e) => (false, e),
            };
            assert_eq!(decided, (retried, expected), "{error:?}");
        }
    }

    #[test]
    fn test_resolve_retries_5xx() {
        let mut bench = Bench::new([
            Answer::Fails(FetchError::Status(500)),
            Answer::Fails(FetchError::Status(503)),
            Answer::Zip,
        ]);
        assert_eq!(bench.resolve(), resolved());
        assert_eq!(bench.repository.fetches.get(), 3);
        assert_eq!(
            bench.told(),
            [
                retry(2, CommandError::Status(500)),
                retry(3, CommandError::Status(503))
            ]
        );
    }

    // The second try starts the file and its hash afresh: the digest matches, the file holds
    // the zip once.
    #[test]
    fn test_resolve_retries_a_broken_transfer_from_scratch() {
        let mut bench = Bench::new([
            Answer::BrokenAfter(ZIP.len() / 2, FetchError::Unreachable),
            Answer::Zip,
        ]);
        assert_eq!(bench.resolve(), resolved());
        assert_eq!(bench.told(), [retry(2, CommandError::Unreachable)]);
        assert_eq!(bench.store.creates.get(), 2);
        assert_eq!(bench.store.file(BUNDLE), ZIP);
    }

    // `download_limit` bounds one try: a try over it is tried again.
    #[test]
    fn test_resolve_retries_a_try_over_the_download_limit() {
        let mut bench = Bench::new([Answer::Stalls, Answer::Zip]);
        bench.config.download_limit = Duration::ZERO;
        assert_eq!(bench.resolve(), resolved());
        assert_eq!(bench.told(), [retry(2, CommandError::TimedOut)]);
    }

    #[test]
    fn test_resolve_gives_up_after_the_last_try() {
        let mut bench = Bench::new((0..4).map(|_| Answer::Fails(FetchError::Unreachable)));
        assert_eq!(bench.resolve(), Err(CommandError::Unreachable));
        assert_eq!(bench.repository.fetches.get(), 4);
        let told: Vec<u32> = bench.told().iter().map(|r| r.attempt).collect();
        assert_eq!(told, [2, 3, 4]);
    }

    // The deployment ended while the download failed (its resolve deadline): no next try.
    #[test]
    fn test_resolve_stops_when_the_agent_says_so() {
        let mut bench = Bench::new([Answer::Fails(FetchError::Status(502))]);
        bench.go_on = false;
        assert_eq!(bench.resolve(), Err(CommandError::Status(502)));
        assert_eq!(bench.repository.fetches.get(), 1);
    }

    // What the repository refuses, and what the worker refuses itself: one try, no retry.
    #[test]
    fn test_resolve_does_not_retry_refusals() {
        let once = |answer, expected| {
            let mut bench = Bench::new([answer]);
            assert_eq!(bench.resolve(), Err(expected));
            assert_eq!(bench.repository.fetches.get(), 1, "{expected:?}");
            assert_eq!(bench.told(), [], "{expected:?}");
        };
        once(Answer::Fails(FetchError::NotFound), CommandError::NotFound);
        once(
            Answer::Fails(FetchError::Status(403)),
            CommandError::Status(403),
        );
        once(Answer::Fails(FetchError::Protocol), CommandError::Protocol);

        let mut mismatch = Bench::new([Answer::Zip]);
        let other = Digest::parse(&"0".repeat(64)).unwrap();
        assert_eq!(
            mismatch.resolve_as(other),
            Err(CommandError::DigestMismatch)
        );
        assert_eq!(mismatch.repository.fetches.get(), 1);
        assert_eq!(mismatch.told(), []);

        let mut too_large = Bench::new([Answer::Zip]);
        too_large.config.max_bundle_size = 100;
        assert_eq!(too_large.resolve(), Err(CommandError::TooLarge));
        assert_eq!(too_large.repository.fetches.get(), 1);
        assert_eq!(too_large.told(), []);

        let mut broken_store = Bench::new([Answer::Zip]);
        broken_store.store.broken = true;
        assert_eq!(broken_store.resolve(), Err(CommandError::Storage));
        assert_eq!(broken_store.repository.fetches.get(), 0);
        assert_eq!(broken_store.told(), []);
    }

    // The scale PUT goes through the same retries, and tells of them the same way.
    #[test]
    fn test_scale_retries_5xx() {
        let answer = |status: &str| {
            let head =
                std::format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            Script::new().bytes(head.as_bytes())
        };
        let mut bench = Bench::new([]);
        bench.connector = Scripted::new([answer("503 Busy"), answer("200 OK")]);
        let bundle = BundleId::of(&zip_digest(), None);
        let scaled =
            bench.with_worker(async |worker, retrying| worker.scale(retrying, bundle, 3).await);
        assert_eq!(scaled, Ok(()));
        assert_eq!(bench.connector.connects(), 2);
        assert_eq!(bench.told(), [retry(2, CommandError::Status(503))]);
    }

    // ---- published before ----------------------------------------------------------------

    // docs/PROTOCOL.md §4's example index, two of its versions: 1.0.0, then 1.1.0.
    const V100: &str = "9f8928a01e3c4fe0bd04e70cca3b1604ba013dbd494578572959ebfc9331e4c7";
    const V110: &str = "31a429beecdb00b6d192a96bf9cf6b129abc96c1f0c763db8c36494d8e878d47";
    const INDEX: &str = r#"[
  {"version": "1.0.0-9f8928a01e3c4fe0bd04e70cca3b1604ba013dbd494578572959ebfc9331e4c7", "published": "2026-12-01T14:59:13.023Z"},
  {"version": "1.1.0-31a429beecdb00b6d192a96bf9cf6b129abc96c1f0c763db8c36494d8e878d47", "published": "2026-12-01T14:59:13.023Z"}
]"#;

    impl Bench {
        /// Asks whether `new` was published before the running bundle of digest `old`.
        fn published_before(&mut self, new: &str, old: &str) -> Result<Option<Name>, CommandError> {
            let names = ["typesafe", "bundle", "visualizer"].map(|n| Name::new(n).unwrap());
            let new = Digest::parse(new).unwrap();
            let old = BundleId::of(&Digest::parse(old).unwrap(), None);
            self.with_worker(async |worker, retrying| {
                worker.published_before(retrying, names, new, old).await
            })
        }
    }

    #[test]
    fn test_published_before_older_names_the_running_tag() {
        let mut bench = Bench::new([Answer::Index(INDEX)]);
        assert_eq!(
            bench.published_before(V100, V110),
            Ok(Some(Name::new("1.1.0").unwrap()))
        );
        assert_eq!(bench.repository.fetches.get(), 1);
    }

    #[test]
    fn test_published_before_newer_is_none() {
        let mut bench = Bench::new([Answer::Index(INDEX)]);
        assert_eq!(bench.published_before(V110, V100), Ok(None));
    }

    // An absent index is an empty one: nothing to tell, nothing tried again.
    #[test]
    fn test_published_before_absent_index_is_none() {
        let mut bench = Bench::new([Answer::Fails(FetchError::NotFound)]);
        assert_eq!(bench.published_before(V100, V110), Ok(None));
        assert_eq!(bench.repository.fetches.get(), 1);
        assert_eq!(bench.told(), []);
    }

    // What the scan refuses comes back the same next time: fatal.
    #[test]
    fn test_published_before_refusals_are_fatal() {
        let once = |answer, expected| {
            let mut bench = Bench::new([answer]);
            assert_eq!(bench.published_before(V100, V110), Err(expected));
            assert_eq!(bench.repository.fetches.get(), 1, "{expected:?}");
            assert_eq!(bench.told(), [], "{expected:?}");
        };
        once(Answer::Index("{}"), CommandError::Protocol);
        once(
            Answer::Index(r#"[{"version": "1.0.0"}]"#),
            CommandError::Protocol,
        );
        // The array cut short: the transfer ended, the index did not.
        once(
            Answer::Index(&INDEX[..INDEX.len() - 1]),
            CommandError::Protocol,
        );
        // A zip where the index should be.
        once(Answer::Zip, CommandError::Protocol);
        let huge = std::format!("[{}]", " ".repeat(16 * 1024 * 1024));
        once(Answer::Index(huge.leak()), CommandError::Protocol);
        once(
            Answer::Fails(FetchError::Status(403)),
            CommandError::Status(403),
        );
    }

    #[test]
    fn test_published_before_retries_5xx_and_time_outs() {
        let mut bench = Bench::new([
            Answer::Fails(FetchError::Status(503)),
            Answer::Fails(FetchError::Unreachable),
            Answer::Index(INDEX),
        ]);
        assert_eq!(
            bench.published_before(V100, V110),
            Ok(Some(Name::new("1.1.0").unwrap()))
        );
        assert_eq!(bench.repository.fetches.get(), 3);
        assert_eq!(
            bench.told(),
            [
                retry(2, CommandError::Status(503)),
                retry(3, CommandError::Unreachable)
            ]
        );

        let mut bench = Bench::new([Answer::Stalls, Answer::Index(INDEX)]);
        bench.config.download_limit = Duration::ZERO;
        assert_eq!(bench.published_before(V110, V100), Ok(None));
        assert_eq!(bench.told(), [retry(2, CommandError::TimedOut)]);

        let mut bench = Bench::new((0..4).map(|_| Answer::Fails(FetchError::Status(500))));
        assert_eq!(
            bench.published_before(V100, V110),
            Err(CommandError::Status(500))
        );
        assert_eq!(bench.repository.fetches.get(), 4);
    }

    /// Remembers what the agent tells it.
    #[derive(Debug, Default)]
    struct Recorder {
        events: Vec<Event>,
        retries: Vec<(Command, Retry)>,
    }

    impl Sink for Recorder {
        fn event(&mut self, event: &Event) {
            self.events.push(*event);
        }

        fn ended(&mut self, _: &Record) {}

        fn restored(&mut self, _: &Record) {}

        fn retrying(&mut self, command: &Command, retry: Retry) {
            self.retries.push((*command, retry));
        }
    }

    // From the worker through the agent to the sink: the retry of a download is told with its
    // command; once the deployment has ended, nothing is told and nothing is tried again.
    #[test]
    fn test_agent_tells_the_sink_of_each_retry() {
        let agent = Agent::new(
            Deployer::<2>::new(Policy::default()),
            Ledger::new(heapless::Vec::<Retained, 2>::new(), 2),
            Recorder::default(),
        );
        let now = Now::new(Instant::from_millis(0), UnixTime::EPOCH);
        let request = Request {
            id: DEPLOYMENT,
            org: Name::new("typesafe").unwrap(),
            repo: Name::new("bundle").unwrap(),
            package: Name::new("visualizer").unwrap(),
            tag: Name::new("v2").unwrap(),
            digest: zip_digest(),
            tags: Tags::NONE,
            at: UnixTime::EPOCH,
            allow_downgrade: false,
        };
        agent
            .notify(now, request, crate::service::Asks::default())
            .unwrap();
        let Some(Job::Command(screen)) = agent.inner.borrow_mut().take_job(0) else {
            panic!("the screening is queued");
        };
        assert!(matches!(screen.kind, CommandKind::Screen { .. }));
        agent.finish(0, now, &screen, Reply::Screened { before: None });
        let Some(Job::Command(command)) = agent.inner.borrow_mut().take_job(0) else {
            panic!("the download is queued");
        };
        assert!(matches!(command.kind, CommandKind::Resolve { .. }));
        let mut bench = Bench::new([Answer::Fails(FetchError::Status(500)), Answer::Zip]);
        bench.with_worker(async |worker, _| worker.execute(&agent, &command).await);
        agent.with_sink(|sink| {
            assert_eq!(
                sink.retries,
                [(command, retry(2, CommandError::Status(500)))]
            );
            let kinds: Vec<_> = sink.events.iter().map(|e| e.kind).collect();
            assert!(kinds.contains(&EventKind::BundleDownload), "{kinds:?}");
        });

        // The deployment's deadline passes: it fails, and a late retry of its command is
        // neither told nor made.
        let late = Now::new(Instant::from_millis(u64::MAX / 2), UnixTime::EPOCH);
        agent.input(|deployer| deployer.handle_timeout(late));
        assert!(!agent.retrying(&command, retry(2, CommandError::Unreachable)));
        agent.with_sink(|sink| assert_eq!(sink.retries.len(), 1));
    }
}
