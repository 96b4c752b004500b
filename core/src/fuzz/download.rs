//! The `download` target: the HTTP client reading what a repository (or a host it redirects
//! to) answers, through [`get_following`]: response heads, bodies in every framing, and
//! `Location`s, from any bytes; and [`Url::parse`] and [`redirect_target`] on any text.

use core::cell::Cell;
use core::fmt::Write as _;
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use crate::agent::http::{
    Client, HttpError, MAX_REDIRECTS, Origin, Scheme, Url, get_following, redirect_target,
};
use crate::agent::{ConnectError, Connector, Time};
use crate::time::{Instant, Now, UnixTime};

/// Input layout: byte 0 picks the scheme of the first request (bit 0: https), whether
/// credentials are sent (bit 1) and the most bytes one read gives (the other bits: 1 to 505);
/// the rest is what the connections answer: each reads on from where the last one stopped.
/// The rest is also parsed as a URL and as a `Location`.
pub fn download(data: &[u8]) {
    let [flags, answers @ ..] = data else {
        return;
    };
    if let Ok(text) = core::str::from_utf8(answers) {
        urls(text);
    }
    let scheme = if flags & 1 == 1 {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let authorization = (flags & 2 == 2).then_some("Bearer t0ken");
    let origin = Origin {
        scheme,
        host: "repo.example",
        port: 443,
    };
    let (at, connects) = (Cell::new(0), Cell::new(0));
    let connector = Answers {
        data: answers,
        max_read: usize::from(flags >> 2).saturating_mul(8).saturating_add(1),
        at: &at,
        connects: &connects,
    };
    let mut heads = [0u8; 1024];
    let mut scratch = [0u8; 512];
    let mut body = [0u8; 256];
    let time = Still;
    let mut client = Client::new(
        &connector,
        &time,
        &mut heads,
        crate::time::Duration::from_secs(1),
    );
    let result = run(async {
        let head =
            get_following(&mut client, origin, &"/a.zip", authorization, &mut scratch).await?;
        assert!((200..=599).contains(&head.status));
        let mut total = 0u64;
        loop {
            let n = client.read(&mut body).await?;
            if n == 0 {
                return Ok::<u64, HttpError>(total);
            }
            assert!(n <= body.len());
            total = total.saturating_add(crate::text::len_u64(n));
        }
    });
    // Every future here completes: reads never wait.
    assert!(result.is_some());
    // A request and at most MAX_REDIRECTS more, each on at most one connection.
    assert!(connects.get() <= usize::from(MAX_REDIRECTS) + 1);
}

/// `Url::parse` round-trips through its `Display`; a redirect target is an absolute path or
/// `/`, of visible ASCII.
fn urls(text: &str) {
    if let Ok(url) = Url::parse(text) {
        let mut again = heapless::String::<1024>::new();
        if write!(again, "{url}").is_ok() {
            assert_eq!(Url::parse(&again), Ok(url));
        }
    }
    let from = Origin::http("repo.example", 80);
    if let Ok((to, target)) = redirect_target(text, from) {
        assert!(target.starts_with('/'));
        assert!(target.bytes().all(|b| b.is_ascii_graphic()));
        assert!(!to.host.is_empty());
    }
}

/// Polls `fut` until it completes; `None` if it is still pending after many polls (it never
/// should be: nothing here waits).
fn run<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..64 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    None
}

/// A clock that never moves, whose deadlines never pass.
struct Still;

impl Time for Still {
    fn now(&self) -> Now {
        Now {
            instant: Instant::ZERO,
            unix: UnixTime::from_secs(0),
        }
    }

    async fn at(&self, _: Instant) {
        core::future::pending::<()>().await;
    }
}

/// Connections that read the answers on from where the last one stopped, and take every
/// write.
struct Answers<'d> {
    data: &'d [u8],
    max_read: usize,
    at: &'d Cell<usize>,
    connects: &'d Cell<usize>,
}

impl<'d> Connector for Answers<'d> {
    type Connection = Reading<'d>;

    async fn connect(&self, _: Origin<'_>) -> Result<Reading<'d>, ConnectError> {
        self.connects.set(self.connects.get().saturating_add(1));
        Ok(Reading {
            data: self.data,
            max_read: self.max_read,
            at: self.at,
        })
    }
}

/// One connection over the shared answers.
struct Reading<'d> {
    data: &'d [u8],
    max_read: usize,
    at: &'d Cell<usize>,
}

impl embedded_io::ErrorType for Reading<'_> {
    type Error = embedded_io::ErrorKind;
}

impl embedded_io_async::Read for Reading<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let rest = self.data.get(self.at.get()..).unwrap_or_default();
        let n = rest.len().min(buf.len()).min(self.max_read);
        let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) else {
            return Ok(0);
        };
        dst.copy_from_slice(src);
        self.at.set(self.at.get().saturating_add(n));
        Ok(n)
    }
}

impl embedded_io_async::Write for Reading<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}
