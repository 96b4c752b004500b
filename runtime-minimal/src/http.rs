//! The pieces of picoserve's response machinery the app writes with: bodies of known length
//! (a `HEAD` gets the head alone), a closing body, a socket whose reads can be cut off.

use core::cell::Cell;
use core::fmt;
use core::future::poll_fn;
use core::task::Poll;

use picoserve::io::{ErrorType, Read, Socket, Write};
use picoserve::response::Content;
use picoserve::response::custom::CustomBody;

/// A body of known bytes; a `HEAD`'s answer keeps the length and sends none of them.
pub(crate) struct Bytes<'b> {
    pub(crate) data: &'b [u8],
    pub(crate) content_type: &'static str,
    pub(crate) head: bool,
}

impl Content for Bytes<'_> {
    fn content_type(&self) -> &'static str {
        self.content_type
    }

    fn content_length(&self) -> usize {
        self.data.len()
    }

    async fn write_content<W: Write>(self, mut writer: W) -> Result<(), W::Error> {
        if self.head {
            return Ok(());
        }
        writer.write_all(self.data).await
    }
}

/// The body of an answer after which the connection closes. picoserve closes a connection
/// only once it is "upgraded", which its custom responses do while they wait for the client
/// to go: the body is written first, then one yield lets that happen (the connection is then
/// closed whatever the client asked, and nothing after this request is read as another).
pub(crate) struct Closing<'b> {
    pub(crate) data: &'b [u8],
    pub(crate) head: bool,
}

impl CustomBody for Closing<'_> {
    async fn write_response_body<W: Write>(self, mut writer: W) -> Result<(), W::Error> {
        if !self.head {
            writer.write_all(self.data).await?;
        }
        writer.flush().await?;
        yield_once().await;
        Ok(())
    }
}

/// Pending once (waking itself), then ready.
pub(crate) async fn yield_once() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

/// `fmt::Write` into a slice; fails when it is full.
pub(crate) struct SliceWriter<'b> {
    pub(crate) buf: &'b mut [u8],
    pub(crate) len: usize,
}

impl fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let to = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        to.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A connection's socket whose reads end (as if the client had closed) once `cut` is set:
/// the unread body of a refused request is then not waited for, nor read.
pub(crate) struct Guarded<'c, S> {
    pub(crate) socket: S,
    pub(crate) cut: &'c Cell<bool>,
}

/// The read half of a [`Guarded`] socket.
pub(crate) struct GuardedRead<'c, R> {
    inner: R,
    cut: &'c Cell<bool>,
}

impl<R: ErrorType> ErrorType for GuardedRead<'_, R> {
    type Error = R::Error;
}

impl<R: Read> Read for GuardedRead<'_, R> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if self.cut.get() {
            return Ok(0);
        }
        self.inner.read(buf).await
    }
}

impl<Runtime, S: Socket<Runtime>> Socket<Runtime> for Guarded<'_, S> {
    type Error = S::Error;
    type ReadHalf<'a>
        = GuardedRead<'a, S::ReadHalf<'a>>
    where
        Self: 'a;
    type WriteHalf<'a>
        = S::WriteHalf<'a>
    where
        Self: 'a;

    fn split(&mut self) -> (Self::ReadHalf<'_>, Self::WriteHalf<'_>) {
        let (read, write) = self.socket.split();
        (
            GuardedRead {
                inner: read,
                cut: self.cut,
            },
            write,
        )
    }

    async fn abort<T: picoserve::Timer<Runtime>>(
        self,
        timeouts: &picoserve::Timeouts,
        timer: &T,
    ) -> Result<(), picoserve::Error<Self::Error>> {
        self.socket.abort(timeouts, timer).await
    }

    async fn shutdown<T: picoserve::Timer<Runtime>>(
        self,
        timeouts: &picoserve::Timeouts,
        timer: &T,
    ) -> Result<(), picoserve::Error<Self::Error>> {
        self.socket.shutdown(timeouts, timer).await
    }
}
