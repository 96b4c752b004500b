//! `lockstep sandbox` over real loopback sockets: every endpoint answers as docs/PROTOCOL.md §5
//! says, each error status and each fault included. Requests are built and answers read with
//! core's own ConductR codec (`lockstep_core::conductr`).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use lockstep_core::archive::{self, Inflater};
use lockstep_core::bundle::{BundleId, Digest, Segment};
use lockstep_core::conductr::bundles::{ArraySplitter, BundleInfo, RequestAnswer};
use lockstep_core::conductr::multipart::{
    Boundary, Event as PartEvent, HEAD_BUFFER_LEN, LoadFiles, Multipart, MultipartReader, ZipFile,
    boundary_from_content_type,
};
use lockstep_core::conductr::sse::{EventStream as SseStream, Item};
use lockstep_core::conductr::{BundlePath, ScaleTarget};
use lockstep_core::hocon::Document;
use lockstep_core::index::IndexScan;
use lockstep_tests::{Client, EventStream, Process, TempDir, binary, eventually};
use sha2::Digest as _;

const WAIT: Duration = Duration::from_secs(20);

/// A running sandbox, its data directory and what it printed.
struct Sandbox {
    process: Process,
    client: Client,
    _dir: TempDir,
    repository: String,
    /// `(version, role)` of the demo.
    versions: Vec<(String, String)>,
}

fn sandbox(extra: &[&str]) -> Sandbox {
    let dir = TempDir::new("lockstep-sandbox-test");
    let data = dir.path().to_str().expect("UTF-8 path").to_owned();
    let mut args = vec!["sandbox", "--listen", "127.0.0.1:0", "--data-dir", &data];
    args.extend_from_slice(&["--start-delay", "100ms", "--stop-delay", "20ms"]);
    args.extend_from_slice(extra);
    let mut process = Process::lockstep(&args);
    let addr = process.listening();
    let repository = process.line(WAIT);
    let mut versions = vec![];
    if extra.contains(&"--demo") {
        for _ in 0..4 {
            let line = process.line(WAIT);
            let rest = line
                .strip_prefix("version visualizer:")
                .expect("a version line");
            let (version, role) = rest.split_once(' ').expect("version and role");
            versions.push((version.to_owned(), role.to_owned()));
        }
    }
    Sandbox {
        process,
        client: Client::new(addr),
        _dir: dir,
        repository,
        versions,
    }
}

fn demo() -> Sandbox {
    sandbox(&["--demo"])
}

/// A bundle as `GET /v2/bundles` shows it, read with core's splitter and parser.
#[derive(Debug, Clone, PartialEq)]
struct Listed {
    id: BundleId,
    name: String,
    compatibility_version: String,
    scale: Option<u32>,
    started: u32,
    starting: u32,
    installations: u32,
    has_error: bool,
}

fn list(client: &Client) -> Vec<Listed> {
    let response = client.get("/v2/bundles");
    assert_eq!(response.status, 200);
    let mut buf = vec![0u8; 16 * 1024];
    let mut splitter = ArraySplitter::new(&mut buf);
    let mut listed = vec![];
    // Fed in small chunks, as the agent reads a socket.
    for chunk in response.body.chunks(100) {
        let mut input = chunk;
        while let Some(element) = splitter.next_element(&mut input).expect("a valid list") {
            let info = BundleInfo::parse(element).expect("a valid bundle");
            listed.push(Listed {
                id: info.id,
                name: info.name.to_owned(),
                compatibility_version: info.compatibility_version.to_owned(),
                scale: info.scale,
                started: info.started,
                starting: info.starting,
                installations: info.installations,
                has_error: info.has_error,
            });
        }
    }
    splitter.finish().expect("a complete list");
    listed
}

fn find(client: &Client, id: BundleId) -> Option<Listed> {
    list(client).into_iter().find(|b| b.id == id)
}

fn running_id(s: &Sandbox) -> BundleId {
    let listed = list(&s.client);
    assert_eq!(listed.len(), 1);
    listed[0].id
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::from_bytes(sha2::Sha256::digest(bytes).into())
}

/// The zip of a published demo version, from the repository.
fn published_zip(s: &Sandbox, version: &str) -> Vec<u8> {
    let path = format!(
        "/repository/typesafe/bundle/typesafe/visualizer/{version}/visualizer-{version}.zip"
    );
    let response = s.client.get(&path);
    assert_eq!(response.status, 200, "{path}");
    response.body
}

fn bundle_conf(zip: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 64 * 1024];
    let mut inflater = Box::new(Inflater::new());
    let mut reader = zip;
    archive::read_bundle_conf(&mut reader, &mut inflater, &mut out)
        .expect("a bundle.conf")
        .to_vec()
}

/// A load request framed by core: `(content type, body)`.
fn load_request(zip: &[u8], config: Option<&[u8]>) -> (String, Vec<u8>) {
    let conf = bundle_conf(zip);
    let overlay = config.map(bundle_conf);
    let files = LoadFiles {
        bundle_name: Segment::parse("visualizer").unwrap(),
        bundle_conf_len: conf.len() as u64,
        overlay_len: overlay.as_ref().map(|o| o.len() as u64),
        bundle: ZipFile {
            digest: sha256(zip),
            len: zip.len() as u64,
        },
        configuration: config.map(|c| ZipFile {
            digest: sha256(c),
            len: c.len() as u64,
        }),
    };
    let parts = files.parts();
    let boundary = Boundary::new("lockstep-test-boundary-0123456789").unwrap();
    let form = Multipart::new(boundary, &parts).unwrap();
    let contents: Vec<&[u8]> = [Some(conf.as_slice()), overlay.as_deref(), Some(zip), config]
        .into_iter()
        .flatten()
        .collect();
    let mut body = vec![];
    for (index, content) in contents.iter().enumerate() {
        let mut head = String::new();
        form.write_head(index, &mut head).unwrap();
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(content);
    }
    let mut close = String::new();
    form.write_close(&mut close).unwrap();
    body.extend_from_slice(close.as_bytes());
    assert_eq!(body.len() as u64, form.content_length());
    (boundary.content_type().to_string(), body)
}

fn load(s: &Sandbox, zip: &[u8]) -> BundleId {
    let (content_type, body) = load_request(zip, None);
    let response = s.client.request(
        "POST",
        "/v2/bundles",
        &[("Content-Type", &content_type)],
        &body,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    RequestAnswer::parse(&response.body)
        .expect("an answer")
        .bundle_id
}

fn scale(s: &Sandbox, id: BundleId, scale: u32) -> u16 {
    let target = ScaleTarget {
        id,
        scale,
        affinity: None,
    };
    s.client
        .request("PUT", &target.to_string(), &[], b"")
        .status
}

/// The events of a stream read with core's SSE parser until `done` holds.
fn events_until(
    stream: &mut EventStream,
    mut done: impl FnMut(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let mut buf = vec![0u8; 4096];
    let mut parser = SseStream::new(&mut buf);
    let mut events = vec![];
    let deadline = Instant::now() + WAIT;
    while !done(&events) {
        assert!(Instant::now() < deadline, "events so far: {events:?}");
        let bytes = stream.next_bytes().expect("the stream stays open");
        let mut input = bytes.as_slice();
        while let Some(item) = parser.next(&mut input).expect("a valid stream") {
            if let Item::Event(e) = item {
                events.push((e.kind.as_str().to_owned(), e.data.to_owned()));
            }
        }
    }
    events
}

// ---- start-up --------------------------------------------------------------------------------

#[test]
fn test_sandbox_demo_prints_its_versions() {
    let s = demo();
    let addr: SocketAddr = s.client.addr;
    assert_eq!(s.repository, format!("repository http://{addr}/repository"));
    let roles: Vec<&str> = s.versions.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(
        roles,
        ["running", "compatible", "compatible", "incompatible"]
    );
    for (version, _) in &s.versions {
        let (tag, digest) = version.rsplit_once('-').unwrap();
        assert!(!tag.is_empty());
        assert_eq!(
            Digest::parse(digest).unwrap().to_string(),
            digest,
            "lowercase hex"
        );
    }
    // The published zips are what the lines name.
    for (version, _) in &s.versions {
        let zip = published_zip(&s, version);
        assert_eq!(
            sha256(&zip).to_string(),
            version.rsplit_once('-').unwrap().1
        );
    }
    // The index beside them (docs/PROTOCOL.md §4), as the agent reads it: in the order printed.
    let index = s
        .client
        .get("/repository/typesafe/bundle/typesafe/visualizer/versions.json");
    assert_eq!(index.status, 200);
    assert_eq!(index.header("content-type"), Some("application/json"));
    let digest = |i: usize| Digest::parse(s.versions[i].0.rsplit_once('-').unwrap().1).unwrap();
    let mut element = [0u8; 512];
    let mut scan = IndexScan::new(&mut element, digest(0), BundleId::of(&digest(1), None));
    scan.feed(&index.body).unwrap();
    let tag = scan
        .finish()
        .unwrap()
        .expect("the first version was published before the second");
    assert_eq!(tag.as_str(), s.versions[1].0.rsplit_once('-').unwrap().0);
}

#[test]
fn test_sandbox_refuses_bad_flags() {
    for (args, message) in [
        (&["sandbox", "--listen", "nowhere"][..], "--listen"),
        (&["sandbox", "--start-delay", "5"], "--start-delay"),
        (&["sandbox", "--faults", "{\"nope\": 1}"], "--faults"),
        (&["sandbox", "--frobnicate"], "--frobnicate"),
    ] {
        let mut p = Process::lockstep(args);
        assert_eq!(p.wait(WAIT), Some(2), "{args:?}");
        assert!(p.stderr().contains(message), "{args:?}: {}", p.stderr());
    }
}

// ---- listing ---------------------------------------------------------------------------------

#[test]
fn test_sandbox_lists_the_running_demo_bundle() {
    let s = demo();
    let listed = list(&s.client);
    assert_eq!(listed.len(), 1);
    let b = &listed[0];
    assert_eq!(
        (b.name.as_str(), b.compatibility_version.as_str()),
        ("visualizer", "1")
    );
    assert_eq!(
        (b.scale, b.started, b.starting, b.installations),
        (Some(3), 3, 0, 1)
    );
    assert!(b.id.has_config(), "loaded with its configuration");
    // The raw JSON has both arrays even when empty, as the official client indexes them.
    let json = s.client.get("/v2/bundles").json();
    let element = &json[0];
    for key in [
        "bundleExecutions",
        "bundleInstallations",
        "attributes",
        "bundleDigest",
    ] {
        assert!(!element[key].is_null(), "{key}");
    }
    assert_eq!(element["bundleExecutions"][0]["isStarted"], true);
    assert!(
        element["bundleExecutions"][0]["startTime"]
            .as_u64()
            .unwrap()
            > 1_600_000_000_000
    );
    assert_eq!(s.client.get("/v2/license").status, 404);
}

// ---- load, scale, unload ---------------------------------------------------------------------

#[test]
fn test_sandbox_load_scale_unload_through_core_codec() {
    let s = demo();
    let mut stream = s.client.stream("/v2/bundles/events");
    let zip = published_zip(&s, &s.versions[1].0);
    let id = load(&s, &zip);
    assert_eq!(id, BundleId::of(&sha256(&zip), None));
    let loaded = find(&s.client, id).expect("listed");
    assert_eq!(
        (loaded.scale, loaded.started, loaded.installations),
        (None, 0, 1)
    );
    // Loading the same bundle again answers the same id.
    assert_eq!(load(&s, &zip), id);
    assert_eq!(list(&s.client).len(), 2);

    assert_eq!(scale(&s, id, 2), 200);
    eventually("2 started", WAIT, || {
        (find(&s.client, id)?.started == 2).then_some(())
    });
    assert_eq!(scale(&s, id, 0), 200);
    eventually("stopped", WAIT, || {
        (find(&s.client, id)?.started == 0).then_some(())
    });

    let response = s
        .client
        .request("DELETE", &BundlePath(id).to_string(), &[], b"");
    assert_eq!(response.status, 200);
    assert_eq!(RequestAnswer::parse(&response.body).unwrap().bundle_id, id);
    assert_eq!(find(&s.client, id), None);

    let id_text = id.to_string();
    let events = events_until(&mut stream, |events| {
        events
            .iter()
            .any(|(kind, _)| kind == "bundleInstallationRemoved")
    });
    let kinds: Vec<&str> = events
        .iter()
        .filter(|(_, data)| *data == id_text)
        .map(|(kind, _)| kind.as_str())
        .collect();
    assert_eq!(kinds.first(), Some(&"bundleInstallationAdded"));
    assert!(kinds.contains(&"bundleExecutionAdded"));
    assert!(kinds.contains(&"bundleExecutionRemoved"));
    assert_eq!(kinds.last(), Some(&"bundleInstallationRemoved"));

    // The history saw 0 -> 2 -> 0 started, in order, with the sandbox's clock.
    let history = s.client.get("/sandbox/history").json();
    let entries: Vec<&serde_json::Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["bundleId"] == id_text.as_str())
        .collect();
    let started: Vec<u64> = entries
        .iter()
        .map(|h| h["started"].as_u64().unwrap())
        .collect();
    assert_eq!(started.iter().max(), Some(&2));
    assert_eq!(started.last(), Some(&0));
    let times: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["time"].as_u64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "in order: {times:?}"
    );
}

#[test]
fn test_sandbox_hands_back_files_and_bundle_conf() {
    let s = demo();
    let id = running_id(&s);
    let response = s.client.request(
        "GET",
        &BundlePath(id).to_string(),
        &[("Accept", "multipart/form-data")],
        b"",
    );
    assert_eq!(response.status, 200);
    let content_type = response.header("content-type").unwrap().to_owned();
    let boundary = Boundary::new(boundary_from_content_type(&content_type).unwrap()).unwrap();
    let mut head = vec![0u8; HEAD_BUFFER_LEN];
    let mut reader = MultipartReader::new(boundary, &mut head);
    let mut parts: Vec<(String, String, Vec<u8>)> = vec![];
    for chunk in response.body.chunks(7) {
        let mut input = chunk;
        while let Some(event) = reader.next(&mut input).unwrap() {
            match event {
                PartEvent::PartStart { name, filename } => {
                    parts.push((name.to_owned(), filename.unwrap().to_owned(), vec![]));
                }
                PartEvent::Data(data) => parts.last_mut().unwrap().2.extend_from_slice(data),
                PartEvent::PartEnd | PartEvent::End => {}
            }
        }
    }
    reader.finish().unwrap();
    let names: Vec<&str> = parts.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(names, ["bundle", "configuration"]);
    let bundle_digest = sha256(&parts[0].2);
    let config_digest = sha256(&parts[1].2);
    assert_eq!(parts[0].1, format!("visualizer-{bundle_digest}.zip"));
    assert_eq!(parts[1].1, format!("config-{config_digest}.zip"));
    assert_eq!(id, BundleId::of(&bundle_digest, Some(&config_digest)));

    let response = s.client.request(
        "GET",
        &BundlePath(id).to_string(),
        &[("Accept", "application/hocon")],
        b"",
    );
    assert_eq!(response.status, 200);
    let text = response.text();
    let doc = Document::parse(&text).unwrap();
    assert_eq!(
        doc.get_str::<64>("name").unwrap().unwrap().as_str(),
        "visualizer"
    );
}

/// `bytes` with the first occurrence of `from` replaced by `to` (of the same length).
fn replace_first(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("present");
    let mut out = bytes.to_vec();
    out[at..at + from.len()].copy_from_slice(to);
    out
}

// ---- refusals --------------------------------------------------------------------------------

#[test]
fn test_sandbox_refusals_change_nothing() {
    let s = demo();
    let before = list(&s.client);
    let zip = published_zip(&s, &s.versions[1].0);
    let (content_type, body) = load_request(&zip, None);
    let post = |content_type: &str, body: &[u8]| {
        s.client.request(
            "POST",
            "/v2/bundles",
            &[("Content-Type", content_type)],
            body,
        )
    };
    // Not multipart.
    assert_eq!(post("application/json", b"{}").status, 400);
    // Truncated.
    assert_eq!(post(&content_type, &body[..body.len() / 2]).status, 400);
    // A digest that is not the file's: the file name names another zip.
    let other = sha256(b"another zip").to_string();
    let lying_body = replace_first(&body, sha256(&zip).to_string().as_bytes(), other.as_bytes());
    let response = post(&content_type, &lying_body);
    assert_eq!(response.status, 400);
    assert!(
        response.text().contains("does not match"),
        "{}",
        response.text()
    );
    // The bundle part before bundleConf: a wrong field order.
    let swapped = {
        let conf = bundle_conf(&zip);
        let boundary = "lockstep-test-boundary-0123456789";
        let mut b = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"bundle\"; filename=\"visualizer-{}.zip\"\r\nContent-Type: application/zip\r\n\r\n",
            sha256(&zip)
        )
        .into_bytes();
        b.extend_from_slice(&zip);
        b.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"bundleConf\"; filename=\"bundle.conf\"\r\n\r\n").as_bytes());
        b.extend_from_slice(&conf);
        b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        b
    };
    let response = post(&content_type, &swapped);
    assert_eq!(response.status, 400);
    assert!(
        response.text().contains("order") || response.text().contains("missing"),
        "{}",
        response.text()
    );

    // Unknown and ambiguous names and ids.
    let unknown = BundleId::of(&sha256(b"unknown"), None);
    assert_eq!(scale(&s, unknown, 1), 404);
    assert_eq!(
        s.client
            .request("PUT", "/v2/bundles/nope?scale=1", &[], b"")
            .status,
        404
    );
    assert_eq!(
        s.client
            .request("DELETE", "/v2/bundles/nope", &[], b"")
            .status,
        404
    );
    assert_eq!(
        s.client
            .request("PUT", "/v2/bundles/visualizer", &[], b"")
            .status,
        400
    );
    assert_eq!(
        s.client
            .request("PUT", "/v2/bundles/visualizer?scale=x", &[], b"")
            .status,
        400
    );
    let response = s.client.request("PATCH", "/v2/bundles", &[], b"");
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD, POST"));
    // HEAD is answered as GET, without the body (the connection stays open for the next).
    let get = s.client.get("/v2/bundles");
    let mut stream = lockstep_tests::raw::connect(s.client.addr);
    stream
        .write_all(b"HEAD /v2/bundles HTTP/1.1\r\nHost: sandbox\r\n\r\n")
        .expect("write");
    let head = lockstep_tests::raw::read_head(&mut stream).expect("a head");
    assert_eq!(head.status, 200, "{}", head.head);
    assert_eq!(
        head.header("content-length").as_deref(),
        get.header("content-length")
    );
    // The next request on the connection is answered as such: no body came before it.
    stream
        .write_all(b"GET /v2/bundles HTTP/1.1\r\nHost: sandbox\r\n\r\n")
        .expect("write");
    let next = lockstep_tests::raw::read_response(&mut stream).expect("a response");
    assert_eq!((next.status, next.body), (200, get.body.clone()));
    assert_eq!(s.client.get("/v2/nothing").status, 404);
    assert_eq!(s.client.get("/repository/../etc/passwd").status, 400);
    assert_eq!(s.client.get("/repository/typesafe/none.json").status, 404);
    assert_eq!(list(&s.client), before, "nothing changed");

    // Two bundles named visualizer: the name is ambiguous (300), the ids are not.
    let (content_type, body) = load_request(&zip, None);
    assert_eq!(post(&content_type, &body).status, 200);
    let response = s
        .client
        .request("PUT", "/v2/bundles/visualizer?scale=1", &[], b"");
    assert_eq!(response.status, 300);
    assert!(response.text().contains("ambiguous"));
}

// ---- faults ----------------------------------------------------------------------------------

fn add_faults(s: &Sandbox, json: &str) -> u16 {
    s.client
        .request(
            "POST",
            "/sandbox/faults",
            &[("Content-Type", "application/json")],
            json.as_bytes(),
        )
        .status
}

#[test]
fn test_sandbox_request_faults() {
    let s = demo();
    assert_eq!(
        add_faults(&s, r#"{"requests": [{"nth": 2, "status": 503}]}"#),
        200
    );
    let statuses: Vec<u16> = (0..3).map(|_| s.client.get("/v2/bundles").status).collect();
    assert_eq!(statuses, [200, 503, 200]);

    let rule =
        r#"{"requests": [{"method": "PUT", "path": "/v2/bundles/", "status": 500, "times": 2}]}"#;
    assert_eq!(add_faults(&s, rule), 200);
    let id = running_id(&s);
    let statuses: Vec<u16> = (0..3).map(|_| scale(&s, id, 3)).collect();
    assert_eq!(statuses, [500, 500, 200]);

    // A hang: no answer, the client gives up.
    assert_eq!(
        add_faults(&s, r#"{"requests": [{"nth": 1, "hang": true}]}"#),
        200
    );
    let impatient = Client {
        timeout: Duration::from_millis(300),
        ..s.client
    };
    assert!(
        impatient
            .try_request("GET", "/v2/bundles", &[], b"")
            .is_err()
    );
    assert_eq!(
        s.client.get("/v2/bundles").status,
        200,
        "only the one request hangs"
    );

    // A slow answer: normal, later.
    assert_eq!(
        add_faults(
            &s,
            r#"{"requests": [{"path": "/v2/license", "delayMs": 200}]}"#
        ),
        200
    );
    let started = Instant::now();
    assert_eq!(s.client.get("/v2/license").status, 404);
    assert!(started.elapsed() >= Duration::from_millis(200));

    // What is in force, then nothing.
    let faults = s.client.get("/sandbox/faults").json();
    assert_eq!(faults["requests"].as_array().unwrap().len(), 4);
    assert_eq!(
        s.client
            .request("DELETE", "/sandbox/faults", &[], b"")
            .status,
        200
    );
    assert_eq!(
        s.client.get("/sandbox/faults").json()["requests"],
        serde_json::json!([])
    );

    // A bad rule is refused with what is wrong.
    let response = s.client.request(
        "POST",
        "/sandbox/faults",
        &[],
        br#"{"requests": [{"nth": 1}]}"#,
    );
    assert_eq!(response.status, 400);
    assert!(
        response
            .text()
            .contains("exactly one of status, hang, delayMs, hold, holdAfterBytes; it has none"),
        "{}",
        response.text()
    );
}

/// `GET /sandbox/held`: `(n, method, path, sentBytes)`, oldest first.
fn held(s: &Sandbox) -> Vec<(u64, String, String, u64)> {
    let json = s.client.get("/sandbox/held").json();
    json.as_array()
        .expect("an array")
        .iter()
        .map(|h| {
            (
                h["n"].as_u64().expect("n"),
                h["method"].as_str().expect("method").to_owned(),
                h["path"].as_str().expect("path").to_owned(),
                h["sentBytes"].as_u64().expect("sentBytes"),
            )
        })
        .collect()
}

/// The requests counted so far, which a request's `n` follows.
fn request_count(s: &Sandbox) -> u64 {
    s.client.get("/sandbox/faults").json()["requestCount"]
        .as_u64()
        .expect("requestCount")
}

/// Sends a request on a connection of its own and hands the connection back unread.
fn send_only(s: &Sandbox, method: &str, target: &str, headers: &str, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect_timeout(&s.client.addr, WAIT).expect("connect");
    // A guard against a hung test, never a wait for something to happen.
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let length = if body.is_empty() && method == "GET" {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: {}\r\n{headers}{length}\r\n",
        s.client.addr
    )
    .expect("write the head");
    stream.write_all(body).expect("write the body");
    stream
}

/// Nothing is waiting to be read on `stream`, and it is open: a read would block.
fn nothing_arrived(stream: &TcpStream, what: &str) {
    stream.set_nonblocking(true).expect("non-blocking");
    let mut byte = [0u8; 1];
    match (&*stream).read(&mut byte) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok(0) => panic!("{what}: the connection was closed"),
        other => panic!("{what}: something arrived: {other:?}"),
    }
    stream.set_nonblocking(false).expect("blocking");
}

#[test]
fn test_sandbox_hold_carries_the_request_out_and_never_answers() {
    let s = demo();
    let running = running_id(&s);
    assert_eq!(held(&s), []);
    let rule = r#"{"requests":[{"method":"PUT","path":"/v2/bundles/","hold":true,"times":1}]}"#;
    assert_eq!(add_faults(&s, rule), 200);
    let faults = s.client.get("/sandbox/faults").json();
    assert_eq!(faults["requests"][0]["hold"], true);
    assert_eq!(
        faults["requests"][0]["holdAfterBytes"],
        serde_json::Value::Null
    );

    // A scale: carried out, and held.
    let n = request_count(&s) + 1;
    let target = ScaleTarget {
        id: running,
        scale: 5,
        affinity: None,
    }
    .to_string();
    let path = target.split_once('?').unwrap().0.to_owned();
    let put = send_only(&s, "PUT", &target, "", b"");
    let listed = eventually("the scale held", WAIT, || {
        let listed = held(&s);
        (!listed.is_empty()).then_some(listed)
    });
    assert_eq!(listed, [(n, "PUT".to_owned(), path.clone(), 0)]);
    // Listed once carried out: the scale is in force, and its client has had nothing.
    assert_eq!(find(&s.client, running).unwrap().scale, Some(5));
    nothing_arrived(&put, "the held scale");
    // `times: 1`: the next scale is answered.
    assert_eq!(scale(&s, running, 3), 200);
    assert_eq!(held(&s).len(), 1);

    // A load, held too: the bundle is loaded.
    let rule = r#"{"requests":[{"method":"POST","path":"/v2/bundles","hold":true,"times":1}]}"#;
    assert_eq!(add_faults(&s, rule), 200);
    let zip = published_zip(&s, &s.versions[1].0);
    let (content_type, body) = load_request(&zip, None);
    let n_load = request_count(&s) + 1;
    let post = send_only(
        &s,
        "POST",
        "/v2/bundles",
        &format!("Content-Type: {content_type}\r\n"),
        &body,
    );
    eventually("the load held", WAIT, || {
        (held(&s).len() == 2).then_some(())
    });
    assert_eq!(
        held(&s),
        [
            (n, "PUT".to_owned(), path, 0),
            (n_load, "POST".to_owned(), "/v2/bundles".to_owned(), 0)
        ],
        "oldest first"
    );
    let loaded = BundleId::of(&sha256(&zip), None);
    assert_eq!(find(&s.client, loaded).expect("loaded").installations, 1);
    nothing_arrived(&post, "the held load");

    // Each client closing ends its hold.
    drop(put);
    eventually("the scale no longer held", WAIT, || {
        let listed = held(&s);
        (listed.len() == 1 && listed[0].0 == n_load).then_some(())
    });
    drop(post);
    eventually("nothing held", WAIT, || held(&s).is_empty().then_some(()));
    assert_eq!(s.client.get("/v2/bundles").status, 200);
}

#[test]
fn test_sandbox_hold_after_bytes_cuts_a_download() {
    let s = demo();
    let version = s.versions[1].0.clone();
    let path = format!(
        "/repository/typesafe/bundle/typesafe/visualizer/{version}/visualizer-{version}.zip"
    );
    let zip = published_zip(&s, &version);
    const CUT: usize = 1000;
    assert!(zip.len() > CUT, "a zip of {} bytes", zip.len());
    let rule =
        format!(r#"{{"requests":[{{"path":"/repository/","holdAfterBytes":{CUT},"times":1}}]}}"#);
    assert_eq!(add_faults(&s, &rule), 200);
    let faults = s.client.get("/sandbox/faults").json();
    assert_eq!(faults["requests"][0]["holdAfterBytes"], CUT);
    assert_eq!(faults["requests"][0]["hold"], false);

    let n = request_count(&s) + 1;
    let mut download = send_only(&s, "GET", &path, "", b"");
    // The head and the first CUT bytes of the body.
    let mut received = vec![];
    let mut chunk = [0u8; 4096];
    let body_at = loop {
        let head_end = received
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|at| at + 4);
        if let Some(at) = head_end
            && received.len() >= at + CUT
        {
            break at;
        }
        let got = download
            .read(&mut chunk)
            .expect("the head and the first bytes");
        assert!(got > 0, "closed after {} bytes", received.len());
        received.extend_from_slice(&chunk[..got]);
    };
    let head = String::from_utf8_lossy(&received[..body_at]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    assert!(
        head.contains(&format!("\r\ncontent-length: {}\r\n", zip.len())),
        "the whole body's length: {head}"
    );
    assert_eq!(&received[body_at..], &zip[..CUT], "exactly the first bytes");
    assert_eq!(
        eventually("the download held", WAIT, || {
            let listed = held(&s);
            (!listed.is_empty()).then_some(listed)
        }),
        [(n, "GET".to_owned(), path.clone(), CUT as u64)]
    );
    // Held: nothing more comes.
    nothing_arrived(&download, "the held download");

    // A body no longer than the cut is sent whole, and nothing is held.
    let rule = format!(
        r#"{{"requests":[{{"path":"/repository/","holdAfterBytes":{},"times":1}}]}}"#,
        zip.len()
    );
    assert_eq!(add_faults(&s, &rule), 200);
    assert_eq!(s.client.get(&path).body, zip);
    assert_eq!(held(&s).len(), 1);

    drop(download);
    eventually("nothing held", WAIT, || held(&s).is_empty().then_some(()));
}

#[test]
fn test_sandbox_bundle_faults() {
    let s = demo();
    let running = running_id(&s);
    let zip = published_zip(&s, &s.versions[1].0);
    let digest = sha256(&zip).to_string();
    // Instances of the new bundle never start; the running one's next instance crashes once.
    let rule = format!(
        r#"{{"bundles": [{{"match": "{}", "neverStart": true}},
                          {{"match": "{}", "crashAfterMs": 50, "crashes": 1}},
                          {{"match": "visualizer", "hasError": true}}]}}"#,
        &digest[..12],
        running.short()
    );
    assert_eq!(add_faults(&s, &rule), 200);
    let stuck = load(&s, &zip);
    assert_eq!(scale(&s, stuck, 1), 200);
    assert_eq!(scale(&s, running, 4), 200);
    // The running bundle's fourth instance starts, crashes, and is replaced.
    eventually("a crash and a replacement", WAIT, || {
        let json = s.client.get("/v2/bundles").json();
        let b = json
            .as_array()?
            .iter()
            .find(|b| b["bundleId"] == running.to_string().as_str())?;
        let replaced = b["bundleScale"]["nrOfReschedules"] == 1;
        let started = b["bundleExecutions"]
            .as_array()?
            .iter()
            .filter(|e| e["isStarted"] == true)
            .count();
        (replaced && started == 4).then_some(())
    });
    let history = s.client.get("/sandbox/history").json();
    let started: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["bundleId"] == running.to_string().as_str())
        .map(|h| h["started"].as_u64().unwrap())
        .collect();
    assert!(
        started.windows(2).any(|w| w == [4, 3]),
        "a crash: {started:?}"
    );
    assert_eq!(started.last(), Some(&4));
    // Meanwhile the other bundle's instance, asked before, never started.
    let stuck = find(&s.client, stuck).unwrap();
    assert_eq!((stuck.started, stuck.starting), (0, 1));
    assert!(stuck.has_error && find(&s.client, running).unwrap().has_error);
}

#[test]
fn test_sandbox_faults_flag_at_start_up() {
    let s = sandbox(&["--faults", r#"{"requests": [{"nth": 1, "status": 500}]}"#]);
    assert_eq!(s.client.get("/v2/bundles").status, 500);
    assert_eq!(s.client.get("/v2/bundles").status, 200);
    drop(s.process);
}

// ---- the event stream ------------------------------------------------------------------------

#[test]
fn test_sandbox_event_stream_heartbeats_and_lines() {
    let s = sandbox(&["--demo", "--heartbeat", "50ms"]);
    let mut stream = s.client.stream("/v2/bundles/events");
    // Heartbeats: empty lines, several of them.
    let text = stream.read_until(WAIT, |t| t.matches("\n\n").count() >= 3);
    assert!(
        text.chars().all(|c| c == '\n'),
        "only heartbeats so far: {text:?}"
    );
    let id = running_id(&s);
    assert_eq!(scale(&s, id, 4), 200);
    let text = stream.read_until(WAIT, |t| t.contains("event:bundleExecutionAdded"));
    for line in text.lines().filter(|l| !l.is_empty()) {
        assert_eq!(line.matches(':').count(), 1, "{line}");
    }
    assert!(text.contains(&format!("data:{id}")));
}

#[test]
fn test_sandbox_without_data_dir_removes_its_temporary_directory_on_sigterm_and_sigint() {
    for signal in ["TERM", "INT"] {
        let tmp = TempDir::new("lockstep-sandbox-tmpdir");
        let mut process = Process::start(
            &binary("lockstep", "lockstep"),
            &["sandbox", "--listen", "127.0.0.1:0", "--demo"],
            &[("TMPDIR", &tmp.path_text())],
        );
        process.listening();
        // The demo's bundles and repository are written in it before the first line.
        let made = tmp.only_private_dir("lockstep-sandbox");
        assert!(made.join("repository/typesafe").is_dir(), "{made:?}");
        process.stop(signal, WAIT);
        tmp.assert_empty(&format!("after SIG{signal}"));
    }
}
