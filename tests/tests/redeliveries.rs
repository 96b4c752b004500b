//! 10,000 Bintray-signed redeliveries of one version while its deployment is in flight: every
//! one answered 202 with the same id, and the service's resident memory after them within
//! 512 KiB of before.

use std::time::Duration;

use lockstep_core::signature::{Secret, bintray_sign};
use lockstep_tests::{Client, Process, TempDir, binary};

const REDELIVERIES: usize = 10_000;
const WAIT: Duration = Duration::from_secs(60);

/// The resident set size of a process, in KiB (Linux's /proc).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn test_ten_thousand_redeliveries_same_id_bounded_memory() {
    let sandbox_dir = TempDir::new("lockstep-redeliveries-sandbox");
    let serve_dir = TempDir::new("lockstep-redeliveries-serve");
    // Instances start slowly: the deployment stays in flight throughout.
    let mut sandbox = Process::lockstep(&[
        "sandbox",
        "--listen",
        "127.0.0.1:0",
        "--demo",
        "--start-delay",
        "10m",
        "--data-dir",
        sandbox_dir.path().to_str().unwrap(),
    ]);
    let sandbox_addr = sandbox.listening();
    let _ = sandbox.line(WAIT);
    let version = (0..4)
        .map(|_| sandbox.line(WAIT))
        .find_map(|l| {
            l.strip_suffix(" compatible")
                .and_then(|l| l.strip_prefix("version visualizer:"))
                .map(str::to_owned)
        })
        .expect("a compatible version");
    let url = format!("http://{sandbox_addr}");
    let mut serve = Process::start(
        &binary("lockstep", "lockstep"),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--conductr",
            &url,
            "--repository",
            &format!("{url}/repository"),
            "--data-dir",
            serve_dir.path().to_str().unwrap(),
            "--log-level",
            "error",
        ],
        &[("BINTRAY_WEBHOOK_SECRET", "redelivery-secret")],
    );
    let client = Client::new(serve.listening());
    let signature = bintray_sign(&Secret::new(b"redelivery-secret").unwrap(), "visualizer");
    let body = format!(r#"{{"package":"visualizer","version":"{version}"}}"#);
    let send = || {
        client.request(
            "POST",
            "/deployments/typesafe/bundle/typesafe",
            &[
                ("Content-Type", "application/json"),
                ("X-Bintray-Hook-Hmac", signature.as_str()),
            ],
            body.as_bytes(),
        )
    };
    let first = send();
    assert_eq!(first.status, 202, "{}", first.text());
    let id = first.text();
    // Warm up (allocator arenas, buffers), then measure.
    for _ in 0..100 {
        assert_eq!(send().text(), id);
    }
    let before = rss_kib(serve.id());
    for n in 0..REDELIVERIES {
        let r = send();
        assert_eq!((r.status, r.text()), (202, id.clone()), "redelivery {n}");
    }
    let after = rss_kib(serve.id());
    println!(
        "RSS of lockstep serve: {before} KiB before, {after} KiB after {REDELIVERIES} redeliveries"
    );
    assert!(
        after <= before + 512,
        "RSS grew from {before} KiB to {after} KiB over {REDELIVERIES} redeliveries"
    );
    // Still one deployment, still in flight.
    let listing = client.get("/deployments").json();
    assert_eq!(listing.as_array().unwrap().len(), 1);
    assert_eq!(listing[0]["state"], "deploying");
    drop(serve);
}
