//! A worker: carries out one command at a time, over HTTP, with its own buffers.

use core::fmt::Write as _;

use embedded_io_async::Write;
use sha2::Digest as _;

use super::http::{Client, HttpError, Method, Url};
use super::{
    Agent, Connector, FetchError, FileKey, FileKind, Job, Location, Repository, Sink, Store, Time,
    with_deadline,
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
use crate::ledger::Shelf;
use crate::text::{self, Cursor, InlineStr, len_u64};
use crate::time::Duration;

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
    /// Bounds a whole bundle download.
    pub download_limit: Duration,
    /// The largest bundle (or configuration) accepted.
    pub max_bundle_size: u64,
    /// How long a waiting step goes without looking again, when no bundle event arrives.
    pub poll_interval: Duration,
    /// How many times an idempotent request (GET, PUT of a scale) is tried.
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

/// Runs `$try` (an attempt of an idempotent request) up to the configured number of times,
/// with the backoff between: the first success, the first fatal error, or the last retryable
/// one.
macro_rules! with_retries {
    ($worker:expr, $try:expr) => {{
        let mut outcome = Err(CommandError::Unreachable);
        for attempt in 0..$worker.config.attempts.max(1) {
            if attempt > 0 {
                $worker.backoff(attempt).await;
            }
            match $try {
                Ok(value) => {
                    outcome = Ok(value);
                    break;
                }
                Err(Attempt::Retry(e)) => outcome = Err(e),
                Err(Attempt::Fatal(e)) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        outcome
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
    pub async fn run<const N: usize, K: Sink, H: Shelf>(&mut self, agent: &Agent<N, K, H>) -> ! {
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

    async fn execute<const N: usize, K: Sink, H: Shelf>(
        &mut self,
        agent: &Agent<N, K, H>,
        command: &Command,
    ) {
        let deployment = command.deployment;
        let id = self.id;
        let fail = |agent: &Agent<N, K, H>, time: &T, e| {
            agent.finish(id, time.now(), command, Reply::Failed(e));
        };
        match command.kind {
            CommandKind::Resolve {
                org,
                repo,
                package,
                tag,
                digest,
            } => match self
                .resolve(deployment, [org, repo, package, tag], digest)
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
                if let Err(e) = self.list(Looking::Name(&name), &mut spans).await {
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
            CommandKind::FetchConfig { bundle } => {
                match self.fetch_config(deployment, bundle).await {
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
                match self.load(deployment, digest, config).await {
                    Ok(id) => agent.finish(self.id, self.time.now(), command, Reply::Loaded { id }),
                    Err(e) => fail(agent, self.time, e),
                }
            }
            CommandKind::Scale { bundle, scale } => match self.scale(bundle, scale).await {
                Ok(()) => agent.finish(self.id, self.time.now(), command, Reply::Scaled),
                Err(e) => fail(agent, self.time, e),
            },
        }
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

    /// Downloads the bundle into the store while hashing it, checks the digest, reads its
    /// bundle.conf: its name and compatibilityVersion.
    async fn resolve(
        &mut self,
        deployment: DeploymentId,
        [org, repo, package, tag]: [Name; 4],
        digest: Digest,
    ) -> Result<(Name, Name), CommandError> {
        fn segment(name: &Name) -> Option<Segment<'_>> {
            Segment::parse(name.as_str()).ok()
        }
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
        let file = self
            .store
            .create(key)
            .await
            .map_err(|_| CommandError::Storage)?;
        let mut out = Hashing::new(file, self.config.max_bundle_size);
        let deadline = self
            .time
            .now()
            .instant
            .saturating_add(self.config.download_limit);
        let fetched = with_deadline(
            self.time,
            deadline,
            self.repository
                .fetch(&location, &mut out, &mut self.work.io),
        )
        .await;
        match fetched {
            Err(_) => return Err(CommandError::TimedOut),
            Ok(Err(FetchError::NotFound)) => return Err(CommandError::NotFound),
            Ok(Err(FetchError::Status(code))) => return Err(CommandError::Status(code)),
            Ok(Err(FetchError::Unreachable)) => return Err(CommandError::Unreachable),
            Ok(Err(FetchError::Write)) if out.too_large => return Err(CommandError::TooLarge),
            Ok(Err(FetchError::Write)) => return Err(CommandError::Storage),
            Ok(Err(_)) => return Err(CommandError::Protocol),
            Ok(Ok(_)) => {}
        }
        if out.finish().await.map_err(|_| CommandError::Storage)? != digest {
            return Err(CommandError::DigestMismatch);
        }
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

    // ---- list ------------------------------------------------------------------------------

    /// Lists the bundles (`GET /v2/bundles`), retrying; keeps, in `work.found`, the elements
    /// `looking` asks for.
    async fn list(
        &mut self,
        looking: Looking<'_>,
        spans: &mut heapless::Vec<(usize, usize), MAX_OBSERVED>,
    ) -> Result<(), CommandError> {
        with_retries!(self, {
            spans.clear();
            self.try_list(looking, spans).await
        })
    }

    async fn try_list(
        &mut self,
        looking: Looking<'_>,
        spans: &mut heapless::Vec<(usize, usize), MAX_OBSERVED>,
    ) -> Result<(), Attempt> {
        let (host, port) = (self.conductr.host(), self.conductr.port());
        let head = self
            .client
            .get(
                host,
                port,
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
        deployment: DeploymentId,
        bundle: BundleId,
    ) -> Result<Digest, CommandError> {
        with_retries!(self, self.try_fetch_config(deployment, bundle).await)
    }

    /// `GET /v2/bundles/{id}` as multipart: the `configuration` part goes to the store.
    async fn try_fetch_config(
        &mut self,
        deployment: DeploymentId,
        bundle: BundleId,
    ) -> Result<Digest, Attempt> {
        let (host, port) = (self.conductr.host(), self.conductr.port());
        let head = self
            .client
            .get(
                host,
                port,
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
        deployment: DeploymentId,
        digest: Digest,
        config: Option<Digest>,
    ) -> Result<BundleId, CommandError> {
        let expected = BundleId::of(&digest, config.as_ref());
        let mut last = CommandError::Unreachable;
        for attempt in 0..self.config.attempts.max(1) {
            if attempt > 0 {
                self.backoff(attempt).await;
            }
            let mut spans = heapless::Vec::new();
            self.list(Looking::Id(expected), &mut spans).await?;
            if !spans.is_empty() {
                return Ok(expected);
            }
            match self.try_load(deployment, digest, config).await {
                Ok(id) => return Ok(id),
                Err(Attempt::Retry(e)) => last = e,
                Err(Attempt::Fatal(e)) => return Err(e),
            }
        }
        Err(last)
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
        let (host, port) = (self.conductr.host(), self.conductr.port());
        self.client
            .begin(
                Method::Post,
                host,
                port,
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

    async fn scale(&mut self, bundle: BundleId, scale: u32) -> Result<(), CommandError> {
        with_retries!(self, self.try_scale(bundle, scale).await)
    }

    async fn try_scale(&mut self, bundle: BundleId, scale: u32) -> Result<(), Attempt> {
        let target = ScaleTarget {
            id: bundle,
            scale,
            affinity: None,
        };
        let (host, port) = (self.conductr.host(), self.conductr.port());
        self.client
            .begin(
                Method::Put,
                host,
                port,
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
    use super::*;
    use crate::conductr::bundles::tests::{
        BUNDLE_DIGEST, minimal, nested_unknown_fields, protocol_example,
    };

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
}
