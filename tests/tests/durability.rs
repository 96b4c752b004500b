//! Durable deployments: `lockstep serve` killed with SIGKILL at every step of a deployment and
//! restarted on the same data directory finishes the same deployment; a signature accepted
//! before a restart stays refused after it; a torn tail starts, a damaged frame refuses; the
//! journal stays bounded across 10,000 deployments, the last 1,000 kept; a journal that cannot
//! be written refuses webhooks with 503 until it can. The kills, the replay and the lost
//! downloads run against both runtimes (`lockstep serve` and `lockstep-minimal`: one journal).

use std::time::Instant;

use lockstep_core::signature::bintray_sign;
use lockstep_tests::stack::{
    self, HOOK, SECRET, Serve, WAIT, accepted, assert_history_within_2_to_4, assert_refused,
    assert_replaced_at_scale_3, assert_succeeded, ended, listing, lockstep_header, mark, notify,
    post, run_lockstep, sandbox, secret, serve, serve_on, serve_on_runtime, serve_runtime,
    the_running_bundle,
};
use lockstep_tests::{Process, TempDir, binary, eventually};

/// Kills `v` with SIGKILL (no drain, no destructor) and answers its data directory.
fn kill(v: Serve) -> TempDir {
    let Serve {
        mut process, dir, ..
    } = v;
    process.signal("KILL");
    assert_eq!(process.wait(WAIT), None, "killed by a signal");
    dir
}

/// Stops `v` with SIGTERM (a drain, exit 0) and answers its data directory.
fn stop(v: Serve) -> TempDir {
    let Serve {
        mut process, dir, ..
    } = v;
    process.stop("TERM", WAIT);
    dir
}

/// The requests held in the sandbox.
fn held(s: &stack::Sandbox) -> Vec<serde_json::Value> {
    let r = s.client.get("/sandbox/held");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_array().expect("an array").clone()
}

/// The kill points of a scale-3 deployment with a configuration: for each, what it is and the
/// fault rules that hold the request there (carried out, its answer withheld).
fn kill_points(old_id: &str, new: &stack::Version) -> Vec<(String, String)> {
    let zip = new.zip_path();
    let mut points = vec![
        (
            "while it screened its version (the index held)".to_owned(),
            format!(
                r#"{{"requests": [{{"path": "/repository/typesafe/bundle/typesafe/{}/versions.json",
                                   "hold": true, "times": 1}}]}}"#,
                new.name
            ),
        ),
        (
            "in the middle of the bundle download".to_owned(),
            format!(r#"{{"requests": [{{"path": "{zip}", "holdAfterBytes": 64, "times": 1}}]}}"#),
        ),
        (
            "after the old bundle's configuration was fetched".to_owned(),
            format!(
                r#"{{"requests": [{{"method": "GET", "path": "/v2/bundles/{old_id}",
                                   "hold": true, "times": 1}}]}}"#
            ),
        ),
        (
            "after the new bundle was loaded".to_owned(),
            r#"{"requests": [{"method": "POST", "path": "/v2/bundles", "hold": true,
                              "times": 1}]}"#
                .to_owned(),
        ),
    ];
    // The lock-step's six scale requests: new 1, old 2, new 2, old 1, new 3, old 0.
    for j in 1..=6 {
        let pass = if j > 1 {
            format!(
                r#"{{"method": "PUT", "path": "/v2/bundles/", "delayMs": 0, "times": {}}},"#,
                j - 1
            )
        } else {
            String::new()
        };
        points.push((
            format!("after scale request {j} of 6 was carried out"),
            format!(
                r#"{{"requests": [{pass} {{"method": "PUT", "path": "/v2/bundles/",
                                          "hold": true, "times": 1}}]}}"#
            ),
        ));
    }
    points
}

/// Every directory under `dir` (and it) is 0700, every file 0600.
fn assert_private(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
    assert_eq!(mode(dir), 0o700, "{dir:?}");
    for entry in std::fs::read_dir(dir).expect("a directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            assert_private(&path);
        } else {
            assert_eq!(mode(&path), 0o600, "{path:?}");
        }
    }
}

lockstep_tests::on_both_runtimes! {
    fn test_a_deployment_killed_at_every_step_resumes_and_succeeds(runtime: Runtime) {
        let started = Instant::now();
        let mut covered = 0;
        let probe = sandbox(&[]);
        let points = kill_points(&the_running_bundle(&probe).id, &probe.compatible(0));
        drop(probe);
        for (what, _) in &points {
            let s = sandbox(&[]);
            let old = the_running_bundle(&s);
            let points = kill_points(&old.id, &s.compatible(0));
            let rules = &points.iter().find(|(w, _)| w == what).expect("the point").1;
            // A held request must stay held until the kill: the webhook's answer alone waits
            // up to 2 s for the screening, the tests' usual I/O time-out.
            let v = serve_runtime(runtime, &s, &["--io-timeout", "1h"]);
            // Its bundle event stream is connected (the only control-API request of an idle
            // service) before a rule can hold it by mistake.
            eventually("the event stream to connect", WAIT, || {
                let count = s.client.get("/sandbox/faults").json()["requestCount"].as_u64()?;
                (count >= 1).then_some(())
            });
            s.add_faults(rules);
            let new = s.compatible(0);
            let before = mark(&s);
            let id = accepted(&v, &notify(&v, &new), "/deployments");
            let hold = eventually(&format!("the request {what} to be held"), WAIT, || {
                held(&s).first().cloned()
            });
            let dir = kill(v);
            // The sandbox sees its client gone.
            eventually("the hold to end", WAIT, || {
                held(&s).is_empty().then_some(())
            });
            // The downloads of the deployment in flight are private; an orphan (what a process
            // killed after a deployment ended leaves) is removed at the next start.
            let store = dir.path().join("store");
            assert_private(&store);
            let orphan = store.join("00000000-0000-4000-8000-000000000000");
            std::fs::create_dir_all(&orphan).expect("an orphan");
            std::fs::write(orphan.join("configuration.zip"), b"secrets").expect("an orphan file");
            let v = serve_on_runtime(runtime, &s, dir, &[], &[("BINTRAY_WEBHOOK_SECRET", SECRET)]);
            assert!(!orphan.exists(), "{what}: the orphan was left");
            // The same deployment, its events from before the crash kept, ends as it would have.
            assert_replaced_at_scale_3(&s, &v, &id, &new, &old);
            assert_history_within_2_to_4(&s, before);
            assert!(
                v.process.stderr().contains("in flight resumed"),
                "{what}: {}",
                v.process.stderr()
            );
            println!("killed {what} (held: {hold}): resumed, succeeded");
            covered += 1;
        }
        assert_eq!(covered, points.len());
        println!(
            "kill points covered: {covered} of {}, in {:.1}s",
            points.len(),
            started.elapsed().as_secs_f64()
        );
    }
}

lockstep_tests::on_both_runtimes! {
    fn test_a_deployment_whose_downloads_are_gone_downloads_them_again(runtime: Runtime) {
        let s = sandbox(&[]);
        let old = the_running_bundle(&s);
        let v = serve_runtime(runtime, &s, &[]);
        eventually("the event stream to connect", WAIT, || {
            let count = s.client.get("/sandbox/faults").json()["requestCount"].as_u64()?;
            (count >= 1).then_some(())
        });
        // Killed while fetching the old configuration: the bundle is downloaded, not loaded.
        let points = kill_points(&old.id, &s.compatible(0));
        s.add_faults(&points[2].1);
        let new = s.compatible(0);
        let before = mark(&s);
        let id = accepted(&v, &notify(&v, &new), "/deployments");
        eventually("the configuration fetch to be held", WAIT, || {
            held(&s).first().cloned()
        });
        let dir = kill(v);
        eventually("the hold to end", WAIT, || {
            held(&s).is_empty().then_some(())
        });
        let downloads = dir.path().join("store").join(&id);
        assert!(downloads.join("bundle.zip").is_file(), "{downloads:?}");
        std::fs::remove_dir_all(&downloads).expect("remove the downloads");
        let v = serve_on_runtime(runtime, &s, dir, &[], &[("BINTRAY_WEBHOOK_SECRET", SECRET)]);
        assert!(
            v.process.stderr().contains("(1 to download again"),
            "{}",
            v.process.stderr()
        );
        // The same deployment succeeds, with the old configuration, one new bundle loaded.
        assert_succeeded(&ended(&v, &id));
        assert_history_within_2_to_4(&s, before);
        let after = stack::bundles(&s);
        assert_eq!(after.len(), 2, "{after:#?}");
        let new_bundle = stack::bundle_of(&s, &new.digest);
        assert_eq!((new_bundle.scale, new_bundle.started), (Some(3), 3));
        assert_eq!(new_bundle.config, old.config);
    }
}

lockstep_tests::on_both_runtimes! {
    fn test_a_signature_accepted_before_a_restart_is_refused_after_it(runtime: Runtime) {
        let s = sandbox(&[]);
        let v = serve_runtime(runtime, &s, &[]);
        let new = s.compatible(0);
        let body = new.body();
        let header = lockstep_header(body.as_bytes(), stack::now_secs());
        let send = |v: &Serve| {
            post(
                v,
                HOOK,
                &[("X-Lockstep-Signature", &header)],
                body.as_bytes(),
            )
        };
        let id = accepted(&v, &send(&v), "/deployments");
        let dir = kill(v);
        let v = serve_on_runtime(runtime, &s, dir, &[], &[("BINTRAY_WEBHOOK_SECRET", SECRET)]);
        let line = assert_refused(&send(&v), 403, "the replay after a restart");
        assert_eq!(line, "signature rejected");
        assert_succeeded(&ended(&v, &id));
        // And after a clean stop too.
        let dir = stop(v);
        let v = serve_on_runtime(runtime, &s, dir, &[], &[("BINTRAY_WEBHOOK_SECRET", SECRET)]);
        assert_refused(&send(&v), 403, "the replay after a second restart");
        let listed = listing(&v, "/deployments");
        assert_eq!(listed.len(), 1, "{listed:#?}");
        assert_eq!(listed[0]["deploymentId"], id.as_str());
    }
}

/// `lockstep serve` on `dir` against `s`, to its exit (a refusal to start).
fn refused_start(s: &stack::Sandbox, dir: &TempDir) -> stack::Ran {
    let url = s.url();
    run_lockstep(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--conductr",
            &url,
            "--repository",
            &format!("{url}/repository"),
            "--data-dir",
            &dir.path_text(),
        ],
        &[("BINTRAY_WEBHOOK_SECRET", SECRET)],
        b"",
    )
}

#[test]
fn test_a_torn_tail_starts_and_a_damaged_frame_refuses_with_its_offset() {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let new = s.compatible(0);
    let id = accepted(&v, &notify(&v, &new), "/deployments");
    assert_succeeded(&ended(&v, &id));
    let dir = stop(v);
    let journal = dir.path().join("journal");
    let bytes = std::fs::read(&journal).expect("the journal");
    // Cut in the middle of its last frame: a crash mid-append.
    std::fs::write(&journal, &bytes[..bytes.len() - 7]).expect("truncate");
    let v = serve_on(&s, dir, &[], &[("BINTRAY_WEBHOOK_SECRET", SECRET)]);
    let events = ended(&v, &id);
    assert_succeeded(&events);
    assert!(
        v.process.stderr().contains("cut short at byte"),
        "{}",
        v.process.stderr()
    );
    let dir = stop(v);
    // A byte flipped in the first frame's body: refused, naming the file, the offset, and
    // what to do; nothing is started.
    let mut bytes = std::fs::read(&journal).expect("the journal");
    bytes[9 + 8 + 5] ^= 0x10;
    std::fs::write(&journal, &bytes).expect("flip");
    let ran = refused_start(&s, &dir);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", ran.stderr);
    assert!(
        lines[0].contains(&journal.display().to_string())
            && lines[0].contains("damaged at byte 9")
            && lines[0].contains("mv journal journal.damaged"),
        "{}",
        ran.stderr
    );
    assert_eq!(ran.stdout, "", "nothing listened");
    // Moved aside as told: it starts, without what the journal held.
    std::fs::rename(&journal, dir.path().join("journal.damaged")).expect("mv");
    let v = serve_on(&s, dir, &[], &[("BINTRAY_WEBHOOK_SECRET", SECRET)]);
    assert_eq!(listing(&v, "/deployments"), Vec::<serde_json::Value>::new());
}

/// A webhook of a version the repository does not have: its deployment fails at once.
fn missing_version(n: u32) -> String {
    format!(
        r#"{{"package":"missing","version":"v{n}-{:064x}"}}"#,
        u128::from(n) + 1
    )
}

#[test]
fn test_the_journal_stays_bounded_across_10000_deployments_and_keeps_the_last_1000() {
    const DEPLOYMENTS: u32 = 10_000;
    let s = sandbox(&[]);
    let v = serve(&s, &["--retention", "1000", "--log-level", "error"]);
    let signature = bintray_sign(&secret(), "missing");
    let journal = v.dir.path().join("journal");
    let started = Instant::now();
    let mut largest = 0u64;
    let clients = 4;
    std::thread::scope(|scope| {
        let sizes: Vec<_> = (0..clients)
            .map(|c| {
                let (client, signature) = (v.client, &signature);
                let journal = &journal;
                scope.spawn(move || {
                    let mut largest = 0u64;
                    for n in (c..DEPLOYMENTS).step_by(clients as usize) {
                        let body = missing_version(n);
                        let r = eventually(&format!("webhook {n} to be taken"), WAIT, || {
                            let r = client.request(
                                "POST",
                                HOOK,
                                &[
                                    ("Content-Type", "application/json"),
                                    ("X-Bintray-Hook-Hmac", signature.as_str()),
                                ],
                                body.as_bytes(),
                            );
                            // 503: the in-flight limit; taken once a deployment ends.
                            (r.status != 503).then_some(r)
                        });
                        assert_eq!(r.status, 202, "{}", r.text());
                        if n % 250 == 0 {
                            largest =
                                largest.max(std::fs::metadata(journal).map_or(0, |m| m.len()));
                        }
                    }
                    largest
                })
            })
            .collect();
        for size in sizes {
            largest = largest.max(size.join().expect("a client"));
        }
    });
    // Every deployment ended (each fails: the repository has no such version).
    eventually("every deployment to end", WAIT, || {
        let metrics = v.client.get("/metrics").text();
        metrics
            .contains("\nlockstep_deployments_in_flight 0\n")
            .then_some(())
    });
    let took = started.elapsed();
    let listed = listing(&v, "/deployments");
    assert_eq!(listed.len(), 1000);
    let dir = stop(v);
    let final_size = std::fs::metadata(&journal).expect("the journal").len();
    let v = serve_on(
        &s,
        dir,
        &["--retention", "1000"],
        &[("BINTRAY_WEBHOOK_SECRET", SECRET)],
    );
    // The last 1,000 survive the restart, newest first, with their events.
    let after = listing(&v, "/deployments");
    assert_eq!(after.len(), 1000);
    assert_eq!(after, listed);
    let newest = after[0]["deploymentId"].as_str().expect("an id");
    let events = stack::events(&v, "/deployments", newest);
    assert_eq!(
        events.last().expect("events")["eventType"],
        "deploymentFailure"
    );
    // Bounded: never past twice the live entries plus the slack (and one commit).
    let restarted = std::fs::metadata(&journal).expect("the journal").len();
    let bound = 2 * restarted + 256 * 1024 + 16 * 1024;
    println!(
        "{DEPLOYMENTS} deployments in {:.1}s; journal: largest seen {largest} bytes, {final_size} \
         at the end, {restarted} after the restart (1,000 retained); bound {bound}",
        took.as_secs_f64()
    );
    assert!(largest <= bound, "{largest} > {bound}");
}

#[test]
fn test_a_journal_that_cannot_be_written_refuses_webhooks_until_it_can() {
    let s = sandbox(&[]);
    let dir = TempDir::new("lockstep-serve-unwritable");
    let url = s.url();
    // The file size limit of the shell (512-byte blocks) caps every file lockstep writes at
    // 512 bytes, room for about one deployment's frames: once past it even a rewrite of the
    // live entries cannot fit. SIGXFSZ ignored, so a write past it fails with EFBIG instead
    // of killing the process.
    let script = format!(
        "trap '' XFSZ; ulimit -S -f 1; exec {} serve --listen 127.0.0.1:0 --conductr {url} \
         --repository {url}/repository --data-dir {} --poll-interval 100ms",
        binary("lockstep", "lockstep").display(),
        dir.path_text()
    );
    let mut process = Process::start(
        std::path::Path::new("/bin/sh"),
        &["-c", &script],
        &[("BINTRAY_WEBHOOK_SECRET", SECRET)],
    );
    let client = lockstep_tests::Client::new(process.listening());
    let signature = bintray_sign(&secret(), "missing");
    let send = |n: u32| {
        client.request(
            "POST",
            HOOK,
            &[
                ("Content-Type", "application/json"),
                ("X-Bintray-Hook-Hmac", signature.as_str()),
            ],
            missing_version(n).as_bytes(),
        )
    };
    // Taken until the journal reaches the limit, then refused: 503, saying why.
    let mut n = 0;
    let mut taken = Vec::new();
    let refused = eventually("a webhook to be refused for the journal", WAIT, || {
        n += 1;
        let r = send(n);
        match r.status {
            202 => {
                taken.push(r.text());
                None
            }
            503 if r.text().contains("cannot be recorded") => Some(r),
            // The in-flight limit: try again.
            503 => None,
            other => panic!("{other}: {}", r.text()),
        }
    });
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert!(!taken.is_empty());
    let log = eventually("the log to say why", WAIT, || {
        let stderr = process.stderr();
        stderr.contains("cannot be written").then_some(stderr)
    });
    assert!(log.contains("File too large"), "{log}");
    // Still refused while it cannot be written (a rewrite of the live entries does not fit).
    let again = send(n + 1);
    assert_eq!(again.status, 503, "{}", again.text());
    let metrics = client.get("/metrics").text();
    assert!(
        metrics.contains("\nlockstep_journal_writable 0\n"),
        "{metrics}"
    );
    // Lift the limit: the journal is repaired within its retry, and webhooks are taken.
    let pid = process.id().to_string();
    let lifted = std::process::Command::new("prlimit")
        .args(["--pid", &pid, "--fsize=unlimited"])
        .status()
        .expect("prlimit");
    assert!(lifted.success());
    let r = eventually("a webhook to be taken again", WAIT, || {
        let r = send(n + 2);
        (r.status == 202).then_some(r)
    });
    taken.push(r.text());
    // Nothing taken was lost: every deployment accepted is listed after a restart.
    process.signal("KILL");
    let _ = process.wait(WAIT);
    drop(process);
    let serve_dir = dir;
    let v = serve_on(&s, serve_dir, &[], &[("BINTRAY_WEBHOOK_SECRET", SECRET)]);
    let listed = listing(&v, "/deployments");
    for id in &taken {
        assert!(
            listed.iter().any(|d| d["deploymentId"] == id.as_str()),
            "{id} was answered 202 and is lost: {listed:#?}"
        );
    }
}
