//! Links `lockstep_core` into a `#![no_std]` staticlib with no global allocator. If core (or a
//! dependency with the features core enables) used `std`, the build would fail with a duplicate
//! `panic_impl` lang item; if it used `alloc`, with "no global memory allocator found". Every
//! public parser and verifier is called, so none of them can be dropped as dead code before the
//! link.
#![no_std]

use core::future::Future;
use core::hint::black_box;
use core::pin::pin;
use core::task::{Context, Waker};

use lockstep_core::archive::{self, Inflater};
use lockstep_core::budget::{Budget, Slot};
use lockstep_core::bundle::{BundleId, Digest, IdPrefix, Segment, Shorthand, Version};
use lockstep_core::conductr::{bundles, multipart, sse};
use lockstep_core::deployer::{self, Deployer, Output, persist};
use lockstep_core::hocon::Document;
use lockstep_core::json;
use lockstep_core::ledger::{Ledger, Retained};
use lockstep_core::signature;
use lockstep_core::text::Cursor;
use lockstep_core::time::{Duration, Instant, Now, UnixTime};
use lockstep_core::webhook::{self, BodyLimit, Target};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// Runs every entry point once over `input`; returns a count of successes so nothing is
/// optimised away.
#[unsafe(no_mangle)]
pub extern "C" fn lockstep_nostd_check(input: &[u8; 64]) -> u32 {
    let input = black_box(&input[..]);
    let text = core::str::from_utf8(input).unwrap_or("");
    let mut ok = 0u32;
    ok += u32::from(json::validate(input, json::MAX_DEPTH).is_ok());
    ok += u32::from(Target::parse(text).is_ok());
    ok += u32::from(webhook::parse_body(input, BodyLimit::default()).is_ok());
    ok += u32::from(Segment::parse(text).is_ok());
    ok += u32::from(Version::parse(text).is_ok());
    ok += u32::from(Digest::parse(text).is_ok());
    ok += u32::from(Shorthand::parse(text).is_ok());
    if let (Ok(id), Ok(prefix)) = (BundleId::parse(text), IdPrefix::parse(text)) {
        ok += u32::from(id.matches(&prefix)) + u32::from(id.short().len() == 7);
    }
    ok += signature_checks(input, text);
    if let Ok(credential) = lockstep_core::access::Credential::new(b"reader:pw") {
        ok += u32::from(credential.admits(input));
    }
    if let Ok(doc) = Document::parse_bytes(input) {
        ok += u32::from(doc.get("compatibilityVersion").is_some());
        ok += u32::from(matches!(doc.get_str::<64>("name"), Some(Ok(_))));
    }
    let mut zip = input;
    let mut inflater = Inflater::new();
    let mut conf = [0u8; 256];
    ok += u32::from(archive::read_bundle_conf(&mut zip, &mut inflater, &mut conf).is_ok());
    ok + deployer_checks(input) + conductr_checks(input) + agent_checks() + budget_checks(input)
}

/// The connection budget on fixed slots, as a runtime without a heap keeps it.
fn budget_checks(input: &[u8]) -> u32 {
    let Ok(mut budget) = Budget::new([Slot::FREE; 4], 1) else {
        return 0;
    };
    let mut ok = 0u32;
    for (at, byte) in input.iter().enumerate() {
        let now = Instant::from_millis(at as u64);
        match budget.open(now) {
            Ok(opened) => {
                let id = opened.id;
                ok += u32::from(opened.shed.is_some());
                let done = match byte % 4 {
                    0 => budget.request_read(id).is_ok(),
                    1 => budget.stream(id).is_ok(),
                    2 => budget.answered(id, now).is_ok(),
                    _ => budget.close(id).is_ok(),
                };
                ok += u32::from(done);
            }
            Err(_) => ok += 1,
        }
    }
    ok + u32::from(budget.in_use() <= budget.capacity()) + budget.streams() as u32
}

/// A platform that does nothing, so that the agent's generic code is compiled and linked.
mod platform {
    use lockstep_core::agent::{
        ConnectError, Connector, FetchError, IndexLocation, Location, Repository, Sink, Store, StoreError, Time,
    };
    use lockstep_core::deployer::{DeploymentId, Event, Record};
    use lockstep_core::time::{Instant, Now};

    pub struct Nothing;

    impl embedded_io_async::ErrorType for Nothing {
        type Error = embedded_io::ErrorKind;
    }

    impl embedded_io_async::Read for Nothing {
        async fn read(&mut self, _: &mut [u8]) -> Result<usize, Self::Error> {
            Err(embedded_io::ErrorKind::Other)
        }
    }

    impl embedded_io_async::Write for Nothing {
        async fn write(&mut self, _: &[u8]) -> Result<usize, Self::Error> {
            Err(embedded_io::ErrorKind::Other)
        }
        async fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    impl Connector for Nothing {
        type Connection = Nothing;
        async fn connect(
            &self,
            _: lockstep_core::agent::http::Origin<'_>,
        ) -> Result<Nothing, ConnectError> {
            Err(ConnectError::Failed)
        }
    }

    impl Time for Nothing {
        fn now(&self) -> Now {
            Now::default()
        }
        async fn at(&self, _: Instant) {}
    }

    impl Store for Nothing {
        type Writer = Nothing;
        type Reader = &'static [u8];
        async fn create(&self, _: lockstep_core::agent::FileKey) -> Result<Nothing, StoreError> {
            Err(StoreError)
        }
        async fn open(
            &self,
            _: lockstep_core::agent::FileKey,
        ) -> Result<&'static [u8], StoreError> {
            Err(StoreError)
        }
        async fn remove(&self, _: DeploymentId) {}
    }

    impl Repository for Nothing {
        async fn fetch<W: embedded_io_async::Write>(
            &self,
            _: &Location<'_>,
            _: &mut W,
            _: &mut [u8],
        ) -> Result<u64, FetchError> {
            Err(FetchError::NotFound)
        }

        async fn fetch_index<W: embedded_io_async::Write>(
            &self,
            _: &IndexLocation<'_>,
            _: &mut W,
            _: &mut [u8],
        ) -> Result<u64, FetchError> {
            Err(FetchError::NotFound)
        }
    }

    impl Sink for Nothing {
        fn event(&mut self, _: &Event) {}
        fn ended(&mut self, _: &Record) {}
        fn restored(&mut self, _: &Record) {}
    }
}

fn agent_checks() -> u32 {
    use lockstep_core::agent::http::{HttpRepository, Url};
    use lockstep_core::agent::{
        Agent, Buffers, Config, IndexLocation, Location, Repository, Worker,
    };
    use lockstep_core::index::IndexScan;
    use platform::Nothing;

    let ledger = Ledger::new(heapless::Vec::<Retained, 2>::new(), 2);
    let agent =
        Agent::<2, Nothing, _>::new(Deployer::new(deployer::Policy::default()), ledger, Nothing);
    let mut buffers = Buffers::new();
    let Ok(url) = Url::parse("http://127.0.0.1:9005") else {
        return 0;
    };
    let mut worker = Worker::new(
        0,
        url,
        &Nothing,
        &Nothing,
        &Nothing,
        &Nothing,
        Config::default(),
        &mut buffers,
    );
    let mut cx = Context::from_waker(Waker::noop());
    let mut ok = 0;
    ok += u32::from(pin!(worker.run(&agent)).poll(&mut cx).is_pending());
    ok += u32::from(pin!(agent.run_timer(&Nothing)).poll(&mut cx).is_pending());
    let mut events = [0u8; 1024];
    let timeout = lockstep_core::time::Duration::from_secs(1);
    let follow = agent.run_events(url, &Nothing, &Nothing, timeout, timeout, &mut events);
    ok += u32::from(pin!(follow).poll(&mut cx).is_pending());
    // Downloads over HTTP(S), following redirects, with credentials.
    let Ok(base) = Url::parse("https://repo.example/r") else {
        return ok;
    };
    let repository = HttpRepository::new(base, &Nothing, &Nothing, timeout)
        .with_authorization(Some("Bearer t0ken"));
    let (Ok(segment), Ok(digest)) = (
        Segment::parse("a"),
        Digest::parse("0000000000000000000000000000000000000000000000000000000000000000"),
    ) else {
        return ok;
    };
    let location = Location {
        org: segment,
        repo: segment,
        package: segment,
        tag: segment,
        digest,
    };
    let (mut buf, mut out) = ([0u8; 2048], Nothing);
    let fetch = repository.fetch(&location, &mut out, &mut buf);
    ok += u32::from(pin!(fetch).poll(&mut cx).is_ready());
    // A package's index, streamed into the scan that reads it.
    let at = IndexLocation {
        org: segment,
        repo: segment,
        package: segment,
    };
    let mut element = [0u8; 256];
    let mut scan = IndexScan::new(&mut element, digest, BundleId::of(&digest, None));
    let fetch = repository.fetch_index(&at, &mut scan, &mut buf);
    ok += u32::from(pin!(fetch).poll(&mut cx).is_ready());
    ok + u32::from(scan.finish().is_err())
}

fn conductr_checks(input: &[u8]) -> u32 {
    let mut ok = 0u32;
    let mut element = [0u8; 128];
    let mut splitter = bundles::ArraySplitter::new(&mut element);
    let mut rest = input;
    while let Ok(Some(bytes)) = splitter.next_element(&mut rest) {
        ok += u32::from(bundles::BundleInfo::parse(bytes).is_ok());
    }
    ok += u32::from(bundles::RequestAnswer::parse(input).is_ok());
    if let Ok(boundary) = multipart::Boundary::new("nostd") {
        let mut head = [0u8; multipart::HEAD_BUFFER_LEN];
        let mut reader = multipart::MultipartReader::new(boundary, &mut head);
        let mut rest = input;
        while let Ok(Some(_)) = reader.next(&mut rest) {
            ok += 1;
        }
    }
    let mut line = [0u8; 64];
    let mut events = sse::EventStream::new(&mut line);
    let mut rest = input;
    while let Ok(Some(_)) = events.next(&mut rest) {
        ok += 1;
    }
    ok
}

fn deployer_checks(input: &[u8]) -> u32 {
    let mut machine = Deployer::<2>::new(deployer::Policy::default());
    let now = Now::new(Instant::from_millis(1), UnixTime::from_secs(1_700_000_000));
    let mut id = [0u8; 16];
    for (dst, src) in id.iter_mut().zip(input) {
        *dst = *src;
    }
    let request = deployer::Request {
        id: deployer::DeploymentId::random_v4(id),
        org: deployer::Name::truncated("typesafe"),
        repo: deployer::Name::truncated("bundle"),
        package: deployer::Name::truncated("visualizer"),
        tag: deployer::Name::truncated("v2"),
        digest: Digest::from_bytes([input.first().copied().unwrap_or(0); 32]),
        tags: deployer::Tags::NONE,
        at: now.unix,
        allow_downgrade: false,
    };
    let mut ok = u32::from(machine.handle_notification(now, request).is_ok());
    let mut ledger = Ledger::<2, heapless::Vec<Retained, 2>>::new(heapless::Vec::new(), 2);
    let drain = |machine: &mut Deployer<2>, ledger: &mut Ledger<2, _>| {
        while let Some(output) = machine.poll() {
            match output {
                Output::Event(event) => ledger.record_event(&event),
                Output::Ended(record) => {
                    let _ = ledger.retire(record);
                }
                Output::Command(_) => {}
            }
        }
    };
    drain(&mut machine, &mut ledger);
    let mut record = [0u8; persist::MAX_RECORD_LEN];
    if let Some(r) = machine.record(request.id)
        && let Ok(len) = persist::encode(r, &mut record)
    {
        ok += u32::from(persist::decode(record.get(..len).unwrap_or(&[])).is_ok());
    }
    ok += u32::from(persist::decode(input).is_ok());
    ok += u32::from(machine.handle_timeout(now) > 0);
    ok += u32::from(machine.handle_abort(now, request.id).is_ok());
    drain(&mut machine, &mut ledger);
    let mut json = [0u8; 512];
    if let Some(log) = ledger.events(request.id) {
        ok += u32::from(log.write_json(&mut Cursor::new(&mut json)).is_ok());
    }
    let mut listing = [0u8; 1024];
    ok += u32::from(
        ledger
            .write_listing(machine.records(), &mut Cursor::new(&mut listing))
            .is_ok(),
    );
    ok + u32::from(machine.poll_timeout().is_some())
}

fn signature_checks(input: &[u8], text: &str) -> u32 {
    let Ok(secret) = signature::Secret::new(b"nostd-check") else {
        return 0;
    };
    let mut ok = 0u32;
    let mut cache = signature::ReplayCache::<4>::new();
    let now = UnixTime::from_secs(1_700_000_000);
    let window = Duration::from_secs(300);
    let headers = signature::Headers {
        bintray: Some(input),
        lockstep: Some(input),
    };
    match signature::select(signature::Schemes::default(), headers) {
        Ok(signature::Presented::Lockstep(sig)) => {
            if let Ok(fresh) = sig.verify(&secret, input, now, window, &cache) {
                ok += u32::from(cache.insert(fresh, now, window).is_ok());
            }
        }
        Ok(signature::Presented::Bintray(mac)) => {
            ok += u32::from(mac.verify(&secret, text).is_ok());
        }
        Err(_) => {}
    }
    ok += u32::from(signature::bintray_sign(&secret, text).as_str().len() == 44);
    ok += u32::from(
        !signature::lockstep_sign(&secret, 1, input)
            .as_str()
            .is_empty(),
    );
    ok
}
