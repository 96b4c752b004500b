//! Raw connections: requests written byte for byte and answers read without a client's help,
//! for what a well-behaved client never sends (two `Content-Length`s, a slow head, a `HEAD`)
//! and what it never shows (the exact head, whether the server closed the connection).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::Response;
use crate::stack::{WAIT, assert_refused};

/// A connection with [`WAIT`] as its read and write time-outs.
///
/// # Panics
/// When it cannot connect.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.set_write_timeout(Some(WAIT)).expect("timeout");
    stream
}

/// A response read off a raw connection.
#[derive(Debug)]
pub struct Raw {
    /// The status code.
    pub status: u16,
    /// The head as sent, status line and blank line included.
    pub head: String,
    /// The body (empty when only the head was read).
    pub body: Vec<u8>,
}

impl Raw {
    /// The value of the first header of that name (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, value) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    /// The header lines after the status line, as sent.
    pub fn header_lines(&self) -> Vec<&str> {
        self.head
            .lines()
            .skip(1)
            .filter(|line| !line.is_empty())
            .collect()
    }

    /// As a [`Response`], for [`assert_refused`].
    pub fn response(&self) -> Response {
        let headers = self
            .header_lines()
            .iter()
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Response {
            status: self.status,
            headers,
            body: self.body.clone(),
        }
    }
}

/// Reads one response's head, byte by byte, so nothing after it is consumed.
///
/// # Errors
/// When the connection fails or ends first.
pub fn read_head(stream: &mut TcpStream) -> std::io::Result<Raw> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad head {head:?}"));
    Ok(Raw {
        status,
        head,
        body: Vec::new(),
    })
}

/// Reads one response, its body by `Content-Length` (none without).
///
/// # Errors
/// When the connection fails or ends first.
pub fn read_response(stream: &mut TcpStream) -> std::io::Result<Raw> {
    let mut raw = read_head(stream)?;
    let length: usize = raw
        .header("content-length")
        .map_or(0, |l| l.parse().expect("a length"));
    raw.body = vec![0u8; length];
    stream.read_exact(&mut raw.body)?;
    Ok(raw)
}

/// Reads one refusal, then the end of the connection: the server closed it, saying so.
///
/// # Panics
/// When it does not.
pub fn refused_then_closed(stream: &mut TcpStream, status: u16, what: &str) {
    let raw = read_response(stream).unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
    assert_refused(&raw.response(), status, what);
    assert_eq!(
        raw.header("connection").as_deref(),
        Some("close"),
        "{what}: {}",
        raw.head
    );
    let rest = read_until_closed(stream);
    assert!(
        rest.is_empty(),
        "{what}: more after the refusal: {}",
        String::from_utf8_lossy(&rest)
    );
}

/// Everything the server sends until it closes (a reset counts as the end).
///
/// # Panics
/// When the read fails otherwise (a time-out).
pub fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("reading until the server closes: {e}; got {all:?}"),
        }
    }
}

/// `GET /healthz` on a kept-alive connection: the status.
///
/// # Panics
/// When no `ok` answer comes.
pub fn ask_healthz(stream: &mut TcpStream) -> u16 {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: lockstep\r\n\r\n")
        .expect("write");
    let raw = read_response(stream).expect("a response");
    assert_eq!(raw.body, b"ok\n");
    raw.status
}
