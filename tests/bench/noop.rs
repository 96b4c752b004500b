//! The benchmark's ceiling: an HTTP/1.1 server that does nothing but read each request (head,
//! then `Content-Length` bytes of body) and answer `202 Accepted` with a 2-byte body, one thread
//! per connection, kept alive unless the request says `Connection: close` (then the answer
//! says it too, and the connection closes). No parsing beyond that, no allocation per request.
//!
//! Built by tests/bench/webhooks.py with `rustc -O`; `noop [ADDR]` prints `listening on
//! http://IP:PORT` and serves until killed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(addr).expect("bind");
    println!(
        "listening on http://{}",
        listener.local_addr().expect("address")
    );
    for conn in listener.incoming().flatten() {
        std::thread::spawn(move || serve(conn));
    }
}

fn serve(mut conn: TcpStream) {
    let _ = conn.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0;
    loop {
        // A whole head, then its body.
        let end = loop {
            if let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
                break end + 4;
            }
            if filled == buf.len() {
                return;
            }
            match conn.read(&mut buf[filled..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => filled += n,
            }
        };
        let head = &buf[..end];
        let length = header(head, b"content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let close = header(head, b"connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
        while filled < end + length {
            if end + length > buf.len() {
                return;
            }
            match conn.read(&mut buf[filled..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => filled += n,
            }
        }
        let answer: &[u8] = if close {
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        } else {
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok"
        };
        if conn.write_all(answer).is_err() || close {
            return;
        }
        buf.copy_within(end + length..filled, 0);
        filled -= end + length;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value of header `name` (lowercase) in `head`.
fn header<'h>(head: &'h [u8], name: &[u8]) -> Option<&'h [u8]> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        line[..colon]
            .eq_ignore_ascii_case(name)
            .then(|| line[colon + 1..].trim_ascii())
    })
}
