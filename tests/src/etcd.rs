//! A real etcd for the cluster tests: Debian's `etcd-server` (installed on first use when
//! missing, see [`crate::provide`]), started
//! on free loopback ports with a data directory of its own, stopped and started again on the
//! same ports and data.

use std::net::TcpListener;
use std::time::Duration;

use crate::{Client, Process, TempDir, eventually, provide};

/// An etcd of the test's own.
#[derive(Debug)]
pub struct EtcdServer {
    process: Option<Process>,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
}

/// A port the OS has just given out (free once the listener is dropped).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl EtcdServer {
    /// Starts one and waits until it answers.
    ///
    /// # Panics
    /// When `etcd` is not installed (the test must not pass without it), or does not answer.
    pub fn start() -> Self {
        let mut etcd = Self {
            process: None,
            dir: TempDir::new("lockstep-etcd"),
            client_port: free_port(),
            peer_port: free_port(),
        };
        etcd.run();
        etcd
    }

    /// Its client URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Stops it (SIGKILL): clients find nobody there.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.signal("KILL");
            let _ = process.wait(Duration::from_secs(30));
        }
    }

    /// Starts it again, on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    fn run(&mut self) {
        let program = provide("etcd", "etcd-server");
        let (client, peer) = (
            format!("http://127.0.0.1:{}", self.client_port),
            format!("http://127.0.0.1:{}", self.peer_port),
        );
        let data = self.dir.path().join("data");
        let args = [
            "--name",
            "test",
            "--data-dir",
            data.to_str().expect("UTF-8"),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("test={peer}"),
        ];
        self.process = Some(Process::start(&program, &args, &[]));
        let client = Client {
            addr: format!("127.0.0.1:{}", self.client_port)
                .parse()
                .expect("an address"),
            timeout: Duration::from_secs(2),
        };
        eventually("etcd to answer", Duration::from_secs(60), || {
            let r = client
                .try_request("POST", "/v3/kv/range", &[], br#"{"key": "AA=="}"#)
                .ok()?;
            (r.status == 200).then_some(())
        });
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}
