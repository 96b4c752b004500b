//! The deployments page, `GET /deployments/ui` (docs/PROTOCOL.md §7, "The page"), in a real
//! headless browser (Chromium over WebDriver): it shows the lock-step as it happens, a
//! failure's text, and markup the cluster sent as text with no script run; it only reads.
//! And its answer over plain HTTP: the headers, HEAD, both prefixes, the read credential.

use std::time::Duration;

use lockstep_tests::stack::{
    HOOK, Runtime, Serve, accepted, assert_refused, notify, now_secs, post_signed, sandbox, serve,
    serve_runtime,
};
use lockstep_tests::webdriver::Browser;
use lockstep_tests::{Process, TempDir, eventually};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// What the page shows of deployment `id`: `{state, failure, title, columns: ["3v0", ...]}`,
/// or null while it is not shown; with the connection's state and whether any `img` exists.
const READ: &str = r#"
    var id = ID;
    var li = Array.from(document.querySelectorAll("li.dep"))
        .find(function (l) { return l.dataset.id === id; });
    var conn = document.getElementById("conn").dataset.state;
    if (!li) return {conn: conn, shown: null};
    return {conn: conn, shown: {
        title: li.querySelector("h2").textContent,
        state: li.querySelector("dd.state").textContent,
        failure: li.querySelector("dd.failure").textContent,
        columns: Array.from(li.querySelectorAll(".col .label")).map(function (c) { return c.textContent; }),
    }, text: document.body.innerText, imgs: document.getElementsByTagName("img").length,
       pwned: typeof window.__pwned};
"#;

fn read(browser: &Browser, id: &str) -> Value {
    browser.run(&READ.replace("ID", &Value::from(id).to_string()))
}

fn page_url(v: &Serve, prefix: &str) -> String {
    format!("http://{}{prefix}/ui", v.client.addr)
}

/// Opens the page and waits for its event stream to be live.
fn open(browser: &Browser, url: &str) {
    browser.open(url);
    eventually("the page's event stream to be live", WAIT, || {
        (read(browser, "")["conn"] == "live").then_some(())
    });
}

/// Every request `lockstep serve` logged: (method, path).
fn requests(v: &Serve) -> Vec<(String, String)> {
    v.process
        .stderr()
        .lines()
        .filter(|l| l.contains(" request method="))
        .map(|l| {
            let field = |name: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .unwrap_or_default()
                    .to_owned()
            };
            (field("method="), field("path="))
        })
        .collect()
}

/// The page never triggers anything: every request but the test's own webhooks is a GET.
fn assert_only_reads(v: &Serve, webhooks: usize) {
    let requests = requests(v);
    assert!(
        requests.iter().any(|(_, p)| p.ends_with("/ui")),
        "{requests:?}"
    );
    let others: Vec<_> = requests.iter().filter(|(m, _)| m != "GET").collect();
    assert_eq!(others.len(), webhooks, "{others:?}");
    assert!(
        others.iter().all(|(m, p)| m == "POST" && p == HOOK),
        "{others:?}"
    );
}

/// A failure's text, then a scale-3 deployment seen step by step: the page shows an
/// intermediate state (the deployment in flight, some of its columns) before 0v3 and success.
/// Instances take 300 ms to start, so each step is on the page for a while.
#[test]
fn test_ui_shows_a_failure_and_the_lock_step_as_it_happens() {
    let s = sandbox(&["--start-delay", "300ms"]);
    let v = serve(&s, &[]);
    let browser = Browser::start(1000, 700);
    open(&browser, &page_url(&v, "/v2/deployments"));

    let failed = accepted(&v, &notify(&v, &s.incompatible()), "/deployments");
    let shown = eventually("the failure on the page", WAIT, || {
        let shown = read(&browser, &failed)["shown"].clone();
        (shown["state"] == "failed").then_some(shown)
    });
    assert_eq!(
        shown["failure"],
        "no running bundle with compatibilityVersion 2 (a bundle with compatibilityVersion 1 runs)"
    );
    assert_eq!(shown["title"], "visualizer 2.0.0");

    let id = accepted(&v, &notify(&v, &s.compatible(0)), "/deployments");
    let mut seen = Vec::new();
    let mut screenshot = None;
    let end = eventually("0v3 and success on the page", WAIT, || {
        let shown = read(&browser, &id)["shown"].clone();
        let columns: Vec<String> = shown["columns"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if shown["state"] == "deploying" && columns.len() >= 4 && screenshot.is_none() {
            screenshot = Some(browser.screenshot());
        }
        if seen.last() != Some(&columns) {
            seen.push(columns.clone());
        }
        (shown["state"] == "succeeded" && columns.last().is_some_and(|c| c == "0v3"))
            .then_some(columns)
    });
    assert_eq!(end, ["3v0", "3v1", "2v1", "2v2", "1v2", "1v3", "0v3"]);
    assert!(
        seen.iter().any(|c| !c.is_empty() && c.len() < end.len()),
        "the lock-step was seen in flight: {seen:?}"
    );
    let png = screenshot.expect("a screenshot mid-deployment");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    // `UI_SCREENSHOT=docs/ui.png` keeps it (the README's picture).
    if let Some(path) = std::env::var_os("UI_SCREENSHOT") {
        std::fs::write(path, &png).expect("write the screenshot");
    }
    assert_only_reads(&v, 2);
}

/// A bundle whose bundle.conf names markup: the deployment fails with a text holding that
/// markup (the name found), and the page shows it as text; no element is made of it and no
/// script of it runs.
#[test]
fn test_ui_shows_markup_from_the_cluster_as_text() {
    const MARKUP: &str = "<img src=x onerror=window.__pwned=1>";
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let conf =
        format!("name = \"{MARKUP}\"\ncompatibilityVersion = \"1\"\nsystemVersion = \"1\"\n");
    let zip = lockstep::zip::to_vec(&[lockstep::zip::Entry::deflated(
        "markup/bundle.conf",
        conf.as_bytes(),
    )])
    .expect("a zip");
    let version = format!("1.9.0-{}", lockstep::zip::digest(&zip));
    let dir = s.dir.path().join(format!(
        "repository/typesafe/bundle/typesafe/visualizer/{version}"
    ));
    std::fs::create_dir_all(&dir).expect("the version's directory");
    std::fs::write(dir.join(format!("visualizer-{version}.zip")), &zip).expect("the zip");

    let browser = Browser::start(1000, 700);
    open(&browser, &page_url(&v, "/deployments"));
    let body = format!(r#"{{"package":"visualizer","version":"{version}"}}"#);
    let id = accepted(
        &v,
        &post_signed(&v, HOOK, body.as_bytes(), now_secs()),
        "/deployments",
    );
    let failure = format!("the bundle's bundle.conf names {MARKUP}, not the notified package");
    let page = eventually("the failure on the page", WAIT, || {
        let page = read(&browser, &id);
        (page["shown"]["state"] == "failed").then_some(page)
    });
    assert_eq!(page["shown"]["failure"], failure.as_str());
    assert!(
        page["text"].as_str().unwrap_or_default().contains(MARKUP),
        "{page}"
    );
    assert_eq!(page["imgs"], 0, "no element made of the markup");
    assert_eq!(page["pwned"], "undefined", "no script of the markup ran");
    assert_only_reads(&v, 1);
}

/// `lockstep demo` prints the page's address, and the page shows the demo's deployment done.
#[test]
fn test_ui_of_the_demo() {
    let mut demo = Process::lockstep(&["demo"]);
    let mut lines = Vec::new();
    while lines.last().is_none_or(|l: &String| l != "Ctrl-C to stop.") {
        lines.push(demo.line(WAIT));
    }
    let url = lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix("watch it          "))
        .unwrap_or_else(|| panic!("no page address: {lines:#?}"))
        .to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/deployments/ui"),
        "{url}"
    );
    let id = lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix("202 Accepted: deployment "))
        .expect("the demo's deployment")
        .to_owned();
    let browser = Browser::start(1000, 700);
    browser.open(&url);
    let shown = eventually("the demo's deployment on the page", WAIT, || {
        let shown = read(&browser, &id)["shown"].clone();
        (shown["state"] == "succeeded").then_some(shown)
    });
    assert_eq!(shown["title"], "visualizer 1.1.0");
    assert_eq!(
        shown["columns"],
        serde_json::json!(["3v0", "3v1", "2v1", "2v2", "1v2", "1v3", "0v3"])
    );
    drop(browser);
    demo.stop("INT", WAIT);
}

// ---- over HTTP ---------------------------------------------------------------------------------

/// The page's answer: the document with a strict Content-Security-Policy (its one script and
/// one style by hash, fetches to its own origin, nothing else), under both prefixes; POST
/// refused (it only reads). (HEAD: tests/tests/http.rs, with every other GET endpoint.)
#[test]
fn test_ui_headers_head_and_prefixes() {
    let s = sandbox(&[]);
    let v = serve(&s, &[]);
    let page = v.client.get("/deployments/ui");
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    let policy = page.header("content-security-policy").expect("a CSP");
    assert!(
        policy.starts_with("default-src 'none'; script-src 'sha256-"),
        "{policy}"
    );
    for part in [
        "connect-src 'self'",
        "img-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(part), "{part}: {policy}");
    }
    assert!(
        !policy.contains("unsafe") && !policy.contains("http"),
        "{policy}"
    );
    let text = page.text();
    assert!(text.starts_with("<!doctype html>"), "{text}");
    assert!(
        !text.contains("src=") && !text.contains("href="),
        "nothing external"
    );
    assert!(page.body.len() < 16 * 1024, "a few KB: {}", page.body.len());

    let v2 = v.client.get("/v2/deployments/ui");
    assert_eq!((v2.status, &v2.body), (200, &page.body));
    assert_eq!(v2.header("content-security-policy"), Some(policy));
    let post = v.client.request("POST", "/deployments/ui", &[], b"");
    assert_refused(&post, 405, "POST");
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

/// With `--read-credential-file` the page is a read like the others: 401 without it.
#[test]
fn test_ui_needs_the_read_credential_when_one_is_set() {
    let s = sandbox(&[]);
    let dir = TempDir::new("lockstep-ui-credential");
    let file = dir.path().join("readers");
    std::fs::write(&file, "reader:s3cret-pass\n").expect("write the credential");
    let v = serve(&s, &["--read-credential-file", &file.display().to_string()]);
    for path in ["/deployments/ui", "/v2/deployments/ui"] {
        let r = v.client.get(path);
        assert_refused(&r, 401, path);
        assert!(r.header("www-authenticate").is_some(), "{path}");
        let good = ("Authorization", "Basic cmVhZGVyOnMzY3JldC1wYXNz");
        let r = v.client.request("GET", path, &[good], b"");
        assert_eq!(r.status, 200, "{path}");
    }
}

/// `lockstep-minimal` has no page (README, "The minimal runtime"): 404.
#[test]
fn test_ui_minimal_answers_not_found() {
    let s = sandbox(&[]);
    let v = serve_runtime(Runtime::Minimal, &s, &[]);
    for path in ["/deployments/ui", "/v2/deployments/ui"] {
        let r = v.client.get(path);
        assert_refused(&r, 404, path);
        assert_eq!(r.text(), "not found\n", "{path}");
    }
}
