//! Links `lockstep_core` into a `#![no_std]` staticlib with no global allocator. If core (or a
//! dependency with the features core enables) used `std`, the build would fail with a duplicate
//! `panic_impl` lang item; if it used `alloc`, with "no global memory allocator found". Every
//! public parser and verifier is called, so none of them can be dropped as dead code before the
//! link.
#![no_std]

use core::hint::black_box;

use lockstep_core::bundle::{BundleId, Digest, IdPrefix, Segment, Shorthand, Version};
use lockstep_core::archive::{self, Inflater};
use lockstep_core::conductr::{bundles, multipart, sse};
use lockstep_core::hocon::Document;
use lockstep_core::deployer::{self, Deployer, EventLog, Input, Output};
use lockstep_core::json;
use lockstep_core::signature;
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
    if let Ok(doc) = Document::parse_bytes(input) {
        ok += u32::from(doc.get("compatibilityVersion").is_some());
        ok += u32::from(matches!(doc.get_str::<64>("name"), Some(Ok(_))));
    }
    let mut zip = input;
    let mut inflater = Inflater::new();
    let mut conf = [0u8; 256];
    ok += u32::from(archive::read_bundle_conf(&mut zip, &mut inflater, &mut conf).is_ok());
    ok + deployer_checks(input) + conductr_checks(input)
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
    };
    let mut ok = u32::from(matches!(
        machine.handle(now, Input::Notify(request)),
        deployer::Handled::Admitted { .. }
    ));
    let mut log = EventLog::new(request.id);
    while let Some(output) = machine.poll() {
        if let Output::Event(event) = output {
            log.push(&event);
        }
    }
    let _ = machine.handle(now, Input::Timeout);
    let mut json = [0u8; 512];
    ok += u32::from(log.write_json(&mut json).is_ok());
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
    ok += u32::from(!signature::lockstep_sign(&secret, 1, input).as_str().is_empty());
    ok
}
