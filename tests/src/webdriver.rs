//! A headless Chromium driven over the W3C WebDriver protocol (chromedriver), for the suites
//! that check what a page shows: [`Browser::start`] installs Debian's `chromium` and
//! `chromium-driver` when they are missing (as root, like etcd and haproxy), never skips.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::{Client, Process, eventually, provide};

/// A browser session; the browser quits and its driver is killed when dropped.
#[derive(Debug)]
pub struct Browser {
    client: Client,
    session: String,
    // Dropped after the session is deleted (fields drop in order, after `Drop::drop`).
    _driver: Process,
}

impl Browser {
    /// Starts chromedriver on a free loopback port, waits for it to be ready (with a deadline)
    /// and opens a headless session with a `width` x `height` window.
    ///
    /// # Panics
    /// When either program is missing and cannot be installed, or the session cannot open.
    pub fn start(width: u32, height: u32) -> Self {
        let chromium = provide("chromium", "chromium");
        let chromedriver = provide("chromedriver", "chromium-driver");
        // A port the OS chose, freed for chromedriver, which takes a port only by number.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Process::start(
            &chromedriver,
            &[&format!("--port={port}"), "--allowed-ips=127.0.0.1"],
            &[],
        );
        let mut client = Client::new(SocketAddr::from(([127, 0, 0, 1], port)));
        client.timeout = Duration::from_secs(60);
        eventually("chromedriver to be ready", Duration::from_secs(30), || {
            let r = client.try_request("GET", "/status", &[], b"").ok()?;
            (r.status == 200 && r.json()["value"]["ready"] == true).then_some(())
        });
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--hide-scrollbars",
                         format!("--window-size={width},{height}")],
            },
        }}});
        let session = post(&client, "/session", &capabilities)["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Self {
            client,
            session,
            _driver: driver,
        }
    }

    /// Opens `url` (returns once it has loaded).
    pub fn open(&self, url: &str) {
        self.command("url", &json!({ "url": url }));
    }

    /// The value of the JavaScript function body `script` run in the page.
    pub fn run(&self, script: &str) -> Value {
        self.command("execute/sync", &json!({ "script": script, "args": [] }))
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        let r = self
            .client
            .get(&format!("/session/{}/screenshot", self.session));
        assert_eq!(r.status, 200, "screenshot: {}", r.text());
        base64::engine::general_purpose::STANDARD
            .decode(r.json()["value"].as_str().expect("base64"))
            .expect("a base64 PNG")
    }

    fn command(&self, what: &str, body: &Value) -> Value {
        post(
            &self.client,
            &format!("/session/{}/{what}", self.session),
            body,
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .client
            .try_request("DELETE", &format!("/session/{}", self.session), &[], b"");
    }
}

/// POSTs `body` to the driver and returns the answer's `value`.
fn post(client: &Client, path: &str, body: &Value) -> Value {
    let r = client.request(
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()["value"].clone()
}
