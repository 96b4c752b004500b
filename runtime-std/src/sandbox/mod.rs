//! `lockstep sandbox`: a ConductR-compatible cluster in one process.
//!
//! The control API v2 of docs/PROTOCOL.md §5 (what lockstep drives, and what the official
//! `conduct info|load|run|stop|unload` call), with bundles and configurations kept as files,
//! executions that start after a delay, the bundle event stream; a bundle repository in the
//! docs/PROTOCOL.md §4 layout under `/repository/`; fault injection ([`faults`]), with
//! `GET /sandbox/held`, the requests whose answers a fault holds back now; and
//! `GET /sandbox/history`, every change of a bundle's instances in order, so that a test can
//! check a bound over a whole deployment without polling. With `--deployments URL`, the
//! deployments endpoints are forwarded to a lockstep service, as ConductR's control API
//! forwarded them to its Continuous Delivery service ([`forward`]).

mod api;
pub mod faults;
pub mod forward;
mod load;
mod state;

use std::cell::RefCell;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::Timer;
use async_io::block_on;
use futures_lite::FutureExt;
use lockstep_core::archive::{self, Inflater};
use lockstep_core::bundle::BundleId;

use crate::http;
use crate::repository::DirRepository;
use crate::samples;
use crate::signals::Stop;
use crate::tempdir::DataDir;
use crate::url::BaseUrl;
use faults::Faults;
use state::{Attributes, Bundle, Cluster};

/// How the sandbox is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where to listen; port 0 lets the OS choose.
    pub listen: SocketAddr,
    /// Where bundles, configurations and the repository are kept; a fresh temporary directory
    /// when `None`.
    pub data_dir: Option<PathBuf>,
    /// How long an instance takes to start.
    pub start_delay: Duration,
    /// How long a started instance takes to stop.
    pub stop_delay: Duration,
    /// The interval of the event stream's heartbeats.
    pub heartbeat: Duration,
    /// The largest load request accepted.
    pub max_upload: usize,
    /// Load the demo: see [`Demo`].
    pub demo: bool,
    /// The bundles of the demo, each with the demo's versions (default: `visualizer` alone).
    pub bundles: Vec<String>,
    /// Faults in force from the start.
    pub faults: Faults,
    /// The lockstep service the deployments endpoints are forwarded to; without one they are
    /// not found (404).
    pub deployments: Option<BaseUrl>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9005)),
            data_dir: None,
            start_delay: Duration::from_millis(500),
            stop_delay: Duration::from_millis(100),
            heartbeat: Duration::from_secs(2),
            max_upload: 512 * 1024 * 1024,
            demo: false,
            bundles: vec![samples::DEMO_NAME.to_owned()],
            faults: Faults::default(),
            deployments: None,
        }
    }
}

/// The demo's sample versions of each of its bundles (`visualizer` unless told), in org
/// `typesafe`, repo `bundle`: one running at scale 3 with a configuration, two newer compatible
/// ones, one incompatible.
#[derive(Clone, Debug)]
pub struct Demo {
    /// `(bundle, version, role)`: its name, `<tag>-<digest>`, and `running`, `compatible` or
    /// `incompatible`, in the order printed.
    pub versions: Vec<(String, String, &'static str)>,
}

/// A started sandbox.
#[derive(Debug)]
pub struct Sandbox {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The demo, when loaded.
    pub demo: Option<Demo>,
    /// Its data directory; a temporary one is removed when this is dropped, so keep it as long
    /// as the sandbox runs.
    data_dir: DataDir,
    /// Its state, shared with its server.
    shared: Rc<Shared>,
}

impl Sandbox {
    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The control API's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The repository's base URL.
    pub fn repository_url(&self) -> String {
        format!("http://{}/repository", self.addr)
    }

    /// Where the deployments endpoints are forwarded from now on (`None`: nowhere, 404): a
    /// service started after the sandbox, on a port chosen then (`lockstep demo`'s).
    pub fn forward_deployments(&self, service: Option<BaseUrl>) {
        *self.shared.deployments.borrow_mut() = service.map(Rc::new);
    }

    /// Where the deployments endpoints are forwarded, if anywhere.
    pub fn deployments(&self) -> Option<BaseUrl> {
        self.shared.deployments.borrow().as_deref().cloned()
    }
}

/// The shared state of the handlers.
#[derive(Debug)]
struct Shared {
    cluster: RefCell<Cluster>,
    data_dir: PathBuf,
    /// Wakes the execution clock when something changed.
    wake: async_channel::Sender<()>,
    /// The requests held now (`hold`, `holdAfterBytes`), oldest first.
    held: RefCell<Vec<HeldRequest>>,
    /// The lockstep service the deployments endpoints are forwarded to.
    deployments: RefCell<Option<Rc<BaseUrl>>>,
}

/// A request whose answer a fault holds back, until its client closes the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HeldRequest {
    /// Its number in the count `nth` matches.
    n: u64,
    method: String,
    path: String,
    /// The body bytes sent before the hold.
    sent_bytes: usize,
}

impl Shared {
    fn repository(&self) -> DirRepository {
        DirRepository::new(self.data_dir.join("repository"))
    }
}

/// Starts a sandbox on `executor`: binds, sets up the data directory (and the demo), and spawns
/// the server and its clocks.
pub async fn start(executor: Rc<LocalExecutor<'static>>, options: Options) -> io::Result<Sandbox> {
    let data_dir = DataDir::given_or_new(options.data_dir.as_deref(), "lockstep-sandbox")?;
    for sub in ["bundles", "configurations", "repository"] {
        std::fs::create_dir_all(data_dir.path().join(sub))?;
    }
    let listener = http::bind(options.listen).await?;
    let addr = listener.local_addr()?;
    let (wake, woken) = async_channel::unbounded();
    let shared = Rc::new(Shared {
        cluster: RefCell::new(Cluster::new(
            options.start_delay,
            options.stop_delay,
            options.faults.clone(),
        )),
        data_dir: data_dir.path().to_path_buf(),
        wake,
        held: RefCell::new(Vec::new()),
        deployments: RefCell::new(options.deployments.clone().map(Rc::new)),
    });
    let demo = if options.demo {
        Some(
            load_demo(&shared, &options.bundles)
                .map_err(|e| io::Error::other(format!("demo: {e}")))?,
        )
    } else {
        None
    };
    // The execution clock: sleeps until the next start, stop or crash is due, or a change.
    let clock = shared.clone();
    executor
        .spawn(async move {
            loop {
                let due = clock.cluster.borrow().next_due();
                let sleep = async {
                    match due {
                        Some(at) => {
                            Timer::at(at).await;
                        }
                        None => {
                            Timer::after(Duration::from_secs(3600)).await;
                        }
                    }
                };
                sleep
                    .or(async {
                        let _ = woken.recv().await;
                    })
                    .await;
                clock.cluster.borrow_mut().advance(Instant::now());
            }
        })
        .detach();
    // Heartbeats of the bundle event stream: empty lines, as ConductR sends.
    let beats = shared.clone();
    let interval = options.heartbeat;
    executor
        .spawn(async move {
            loop {
                Timer::after(interval).await;
                let mut cluster = beats.cluster.borrow_mut();
                cluster.subscribers.retain(|s| !s.is_closed());
                for s in &cluster.subscribers {
                    let _ = s.try_send(b"\n\n".to_vec());
                }
            }
        })
        .detach();
    let limits = http::Limits {
        body_bytes: options.max_upload,
        read_timeout: Duration::from_secs(300),
        ..http::Limits::default()
    };
    let server = http::serve(executor.clone(), listener, limits, shared.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    executor.spawn(server).detach();
    Ok(Sandbox {
        addr,
        demo,
        data_dir,
        shared,
    })
}

/// `lockstep sandbox`: starts one, prints where it listens (then the demo's versions, then
/// where the deployments endpoints are forwarded), and runs it until SIGTERM or SIGINT.
pub fn run(options: Options, out: &mut dyn Write) -> io::Result<()> {
    let executor = Rc::new(LocalExecutor::new());
    let mut stop = Stop::catch();
    let started = block_on(executor.run(start(executor.clone(), options)))?;
    let _ = writeln!(out, "listening on {}", started.url());
    let _ = writeln!(out, "repository {}", started.repository_url());
    if let Some(demo) = &started.demo {
        for (name, version, role) in &demo.versions {
            let _ = writeln!(out, "version {name}:{version} {role}");
        }
    }
    if let Some(service) = started.deployments() {
        let _ = writeln!(out, "deployments forwarded to {service}");
    }
    let _ = out.flush();
    block_on(executor.run(stop.signalled()));
    // Removes the data directory if it is a temporary one.
    drop(started);
    Ok(())
}

/// The largest bundle.conf read out of a bundle.
const MAX_BUNDLE_CONF: usize = 64 * 1024;

/// Publishes the demo's versions of each of `names` and loads each running one with its
/// configuration at scale 3.
fn load_demo(shared: &Shared, names: &[String]) -> Result<Demo, Box<dyn std::error::Error>> {
    let mut versions = Vec::new();
    for name in names {
        let set = samples::sample_set(name)?;
        for (version, role) in load_set(shared, &set)? {
            versions.push((name.clone(), version, role));
        }
    }
    Ok(Demo { versions })
}

/// Publishes `set`'s versions and loads its running one with its configuration at scale 3.
fn load_set(
    shared: &Shared,
    set: &samples::DemoSet,
) -> Result<Vec<(String, &'static str)>, Box<dyn std::error::Error>> {
    let repository = shared.repository();
    let now = std::time::SystemTime::now();
    let mut versions = Vec::new();
    for (sample, role) in [
        (&set.running, "running"),
        (&set.compatible[0], "compatible"),
        (&set.compatible[1], "compatible"),
        (&set.incompatible, "incompatible"),
    ] {
        repository.publish(
            "typesafe",
            "bundle",
            &sample.name,
            &sample.tag,
            &sample.zip,
            now,
        )?;
        versions.push((sample.version(), role));
    }
    let bundle_file = shared
        .data_dir
        .join("bundles")
        .join(set.running.file_name());
    std::fs::write(&bundle_file, &set.running.zip)?;
    let config_file = shared
        .data_dir
        .join("configurations")
        .join(set.configuration.file_name());
    std::fs::write(&config_file, &set.configuration.zip)?;
    let bundle_conf = bundle_conf_of(&set.running.zip)?;
    let attributes = Attributes::from_bundle_conf(&bundle_conf)?;
    let now = Instant::now();
    let mut cluster = shared.cluster.borrow_mut();
    cluster.bundles.push(Bundle {
        id: BundleId::of(&set.running.digest, Some(&set.configuration.digest)),
        digest: set.running.digest,
        config: Some(set.configuration.digest),
        bundle_conf,
        overlay: None,
        attributes,
        bundle_file,
        bundle_file_name: set.running.file_name(),
        config_file: Some(config_file),
        config_file_name: Some(set.configuration.file_name()),
        scale: None,
        executions: Vec::new(),
        reschedules: 0,
    });
    let index = cluster.bundles.len() - 1;
    // Running already when the sandbox is up: started at once.
    let delay = cluster.start_delay;
    cluster.start_delay = Duration::ZERO;
    cluster.set_scale(index, 3, now);
    cluster.start_delay = delay;
    Ok(versions)
}

/// The bundle.conf text of a bundle zip.
fn bundle_conf_of(zip: &[u8]) -> Result<String, String> {
    let mut out = vec![0u8; MAX_BUNDLE_CONF];
    let mut inflater = Box::new(Inflater::new());
    let mut reader = zip;
    let conf = archive::read_bundle_conf(&mut reader, &mut inflater, &mut out)
        .map_err(|e| format!("no readable bundle.conf: {e}"))?;
    String::from_utf8(conf.to_vec()).map_err(|_| "bundle.conf is not UTF-8".to_owned())
}

/// The path of a file under `root` named by URL path segments, refusing anything that could
/// leave it: every segment 1 to 255 characters of `[A-Za-z0-9._-]`, never `.` or `..`.
fn safe_repository_path(root: &Path, segments: &str) -> Option<PathBuf> {
    let mut path = root.to_path_buf();
    for segment in segments.split('/') {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if segment.is_empty()
            || segment.len() > 255
            || segment == "."
            || segment == ".."
            || !segment.bytes().all(allowed)
        {
            return None;
        }
        path.push(segment);
    }
    Some(path)
}
