//! lockstep-minimal's runtime on Linux: one thread, epoll, and tables sized at start-up.
//!
//! A task is polled when it is woken. When none is, the runtime waits on epoll (through
//! rustix) until an I/O source is ready, the earliest timer is due, or another thread wakes a
//! task (through an eventfd). Tasks, I/O sources and timers live in tables whose capacity is
//! fixed when the runtime is made, so that after start-up a request is served without a heap
//! allocation: a connection costs one (its task), a request none. That is why this runtime
//! exists: async-io's reactor allocates on every turn that wakes a task (a `Vec` of wakers,
//! and a `BTreeMap` split while any timer is set), and async-executor's queue allocates a
//! block every 31 wake-ups.
//!
//! Readiness is level-triggered and one-shot: an I/O source is armed when an operation would
//! block, and an event wakes both of its wakers (a reader and a writer may wait on the same
//! socket); a woken operation that would still block arms it again.

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use rustix::event::epoll;

/// The epoll key of the eventfd that wakes the runtime from another thread.
const NOTIFY: u64 = u64::MAX;
/// How many epoll events one turn takes (more wait for the next turn).
const EVENTS: usize = 64;

/// The capacity of the runtime's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Capacity {
    /// Tasks spawned at once, beside the one `block_on` runs.
    pub(crate) tasks: usize,
    /// I/O sources (sockets, pipes) registered at once.
    pub(crate) sources: usize,
    /// Timers waiting at once.
    pub(crate) timers: usize,
}

/// The runtime: its executor, its reactor and its timers. Made once, leaked, and shared as
/// `&'static` by everything that waits (it is not `Sync`: one thread runs it all).
pub(crate) struct Runtime {
    epoll: OwnedFd,
    woken: Arc<Woken>,
    /// The waker of each task slot (slot 0 is `block_on`'s future), made at start-up.
    wakers: Vec<Waker>,
    tasks: RefCell<Tasks>,
    sources: RefCell<Table<Interest>>,
    timers: RefCell<Table<Alarm>>,
    events: RefCell<Vec<epoll::Event>>,
    /// Whether a timer found the table full (warned once).
    timers_overflowed: Cell<bool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

/// Which tasks were woken, and how to wake the runtime from another thread.
#[derive(Debug)]
struct Woken {
    flags: Box<[AtomicBool]>,
    /// Set while the runtime waits on epoll: a wake-up must then write the eventfd.
    sleeping: AtomicBool,
    eventfd: OwnedFd,
}

impl Woken {
    fn wake(&self, index: usize) {
        if let Some(flag) = self.flags.get(index) {
            flag.store(true, Ordering::SeqCst);
        }
        if self.sleeping.load(Ordering::SeqCst) {
            let _ = rustix::io::write(&self.eventfd, &1u64.to_ne_bytes());
        }
    }

    fn any(&self) -> bool {
        self.flags.iter().any(|f| f.load(Ordering::SeqCst))
    }
}

/// The waker of one task slot.
#[derive(Debug)]
struct TaskWaker {
    woken: Arc<Woken>,
    index: usize,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.woken.wake(self.index);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.wake(self.index);
    }
}

/// A task slot: free, or holding a task (its future taken out while it is polled).
struct Task {
    future: Option<Pin<Box<dyn Future<Output = ()>>>>,
    generation: u32,
    in_use: bool,
}

/// The task slots and the free ones.
struct Tasks {
    slots: Vec<Task>,
    free: Vec<usize>,
}

impl Tasks {
    fn new(capacity: usize) -> Self {
        Self {
            slots: (0..capacity)
                .map(|_| Task {
                    future: None,
                    generation: 0,
                    in_use: false,
                })
                .collect(),
            // Slot 0 is `block_on`'s: never handed out.
            free: (1..capacity).rev().collect(),
        }
    }

    /// Frees a slot: the next task in it has a new generation, so a stale id cancels nothing.
    fn free(&mut self, index: usize) {
        if let Some(task) = self.slots.get_mut(index)
            && task.in_use
        {
            task.in_use = false;
            task.generation = task.generation.wrapping_add(1);
            self.free.push(index);
        }
    }
}

/// A spawned task, to cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskId {
    index: usize,
    generation: u32,
}

/// What waits on an I/O source.
#[derive(Debug, Default)]
struct Interest {
    read: Option<Waker>,
    write: Option<Waker>,
}

/// A timer that waits.
#[derive(Debug)]
struct Alarm {
    at: Instant,
    waker: Option<Waker>,
}

/// A table of fixed capacity: inserting into a full one fails, and nothing reallocates.
#[derive(Debug)]
struct Table<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Table<T> {
    fn new(capacity: usize) -> Self {
        Self {
            slots: (0..capacity).map(|_| None).collect(),
            free: (0..capacity).rev().collect(),
        }
    }

    fn insert(&mut self, value: T) -> Option<usize> {
        let index = self.free.pop()?;
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some(value);
        }
        Some(index)
    }

    fn remove(&mut self, index: usize) -> Option<T> {
        let value = self.slots.get_mut(index)?.take()?;
        self.free.push(index);
        Some(value)
    }

    fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.slots.get_mut(index)?.as_mut()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// A table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Full;

impl Runtime {
    /// A runtime with tables of `capacity`.
    pub(crate) fn new(capacity: Capacity) -> io::Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let eventfd = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        epoll::add(
            &epoll,
            &eventfd,
            epoll::EventData::new_u64(NOTIFY),
            epoll::EventFlags::IN,
        )?;
        let slots = capacity.tasks + 1;
        let woken = Arc::new(Woken {
            flags: (0..slots).map(|_| AtomicBool::new(false)).collect(),
            sleeping: AtomicBool::new(false),
            eventfd,
        });
        let wakers = (0..slots)
            .map(|index| {
                Waker::from(Arc::new(TaskWaker {
                    woken: woken.clone(),
                    index,
                }))
            })
            .collect();
        let tasks = Tasks::new(slots);
        Ok(Self {
            epoll,
            woken,
            wakers,
            tasks: RefCell::new(tasks),
            sources: RefCell::new(Table::new(capacity.sources)),
            timers: RefCell::new(Table::new(capacity.timers)),
            events: RefCell::new(Vec::with_capacity(EVENTS)),
            timers_overflowed: Cell::new(false),
        })
    }

    /// Spawns `future` (one allocation: its box); fails when every task slot is taken.
    pub(crate) fn spawn(&self, future: impl Future<Output = ()> + 'static) -> Result<TaskId, Full> {
        let mut tasks = self.tasks.borrow_mut();
        let index = tasks.free.pop().ok_or(Full)?;
        let task = tasks.slots.get_mut(index).ok_or(Full)?;
        task.future = Some(Box::pin(future));
        task.in_use = true;
        let generation = task.generation;
        self.woken.wake(index);
        Ok(TaskId { index, generation })
    }

    /// Cancels a task (drops its future) unless it has ended already.
    pub(crate) fn cancel(&self, id: TaskId) {
        let future = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(task) = tasks.slots.get_mut(id.index) else {
                return;
            };
            if !task.in_use || task.generation != id.generation {
                return;
            }
            let future = task.future.take();
            if future.is_some() {
                tasks.free(id.index);
            } else {
                // It is being polled (it cancels itself): freed when its poll returns.
                task.generation = task.generation.wrapping_add(1);
            }
            future
        };
        // Dropped outside the borrow: its sockets and timers deregister themselves.
        drop(future);
    }

    /// How many tasks are spawned.
    #[cfg(test)]
    fn tasks(&self) -> usize {
        self.tasks
            .borrow()
            .slots
            .iter()
            .filter(|t| t.in_use)
            .count()
    }

    /// Runs `main` and every spawned task until `main` completes.
    pub(crate) fn block_on<F: Future>(&self, main: F) -> F::Output {
        let mut main = pin!(main);
        self.woken.wake(0);
        loop {
            if self.take_flag(0)
                && let Some(waker) = self.wakers.first()
                && let Poll::Ready(output) = main.as_mut().poll(&mut Context::from_waker(waker))
            {
                return output;
            }
            for index in 1..self.wakers.len() {
                if self.take_flag(index) {
                    self.poll_task(index);
                }
            }
            self.turn();
        }
    }

    fn take_flag(&self, index: usize) -> bool {
        self.woken
            .flags
            .get(index)
            .is_some_and(|f| f.swap(false, Ordering::SeqCst))
    }

    fn poll_task(&self, index: usize) {
        let (future, generation) = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.slots.get_mut(index) {
                Some(task) if task.in_use => (task.future.take(), task.generation),
                _ => return,
            }
        };
        let (Some(mut future), Some(waker)) = (future, self.wakers.get(index)) else {
            return;
        };
        let poll = future.as_mut().poll(&mut Context::from_waker(waker));
        let mut tasks = self.tasks.borrow_mut();
        let Some(task) = tasks.slots.get_mut(index) else {
            return;
        };
        if poll.is_pending() && task.generation == generation {
            task.future = Some(future);
            return;
        }
        // Ended, or cancelled while it ran: the slot is free again.
        if task.generation == generation {
            tasks.free(index);
        } else {
            task.in_use = false;
            tasks.free.push(index);
        }
        drop(tasks);
        drop(future);
    }

    /// Waits for I/O, a timer or a wake-up from another thread (not at all when a task is
    /// woken already), and wakes what is ready.
    fn turn(&self) {
        // The request lines of the tasks just run, in one write (lockstep::log::HELD).
        lockstep::log::flush();
        let now = Instant::now();
        let mut timeout = self
            .next_alarm()
            .map(|at| at.saturating_duration_since(now));
        self.woken.sleeping.store(true, Ordering::SeqCst);
        if self.woken.any() {
            timeout = Some(Duration::ZERO);
        }
        let timespec = timeout.map(|d| {
            // Whole milliseconds, rounded up: epoll's unit; an early return would spin.
            let millis = d.as_nanos().div_ceil(1_000_000);
            let millis = u64::try_from(millis).unwrap_or(u64::MAX).min(86_400_000);
            rustix::event::Timespec {
                tv_sec: i64::try_from(millis / 1000).unwrap_or(i64::MAX),
                tv_nsec: i64::try_from((millis % 1000) * 1_000_000).unwrap_or(0),
            }
        });
        let mut events = self.events.borrow_mut();
        events.clear();
        let waited = epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut *events),
            timespec.as_ref(),
        );
        self.woken.sleeping.store(false, Ordering::SeqCst);
        if let Err(e) = waited
            && e != rustix::io::Errno::INTR
        {
            lockstep::log::warn(&format!("waiting for events failed: {e}"));
        }
        {
            let mut sources = self.sources.borrow_mut();
            for event in events.iter() {
                let key = event.data.u64();
                if key == NOTIFY {
                    let mut count = [0u8; 8];
                    let _ = rustix::io::read(&self.woken.eventfd, &mut count);
                    continue;
                }
                let interest = usize::try_from(key)
                    .ok()
                    .and_then(|index| sources.get_mut(index));
                if let Some(interest) = interest {
                    for waker in [interest.read.take(), interest.write.take()]
                        .into_iter()
                        .flatten()
                    {
                        waker.wake();
                    }
                }
            }
        }
        drop(events);
        let now = Instant::now();
        for alarm in self.timers.borrow_mut().slots.iter_mut().flatten() {
            if alarm.at <= now
                && let Some(waker) = alarm.waker.take()
            {
                waker.wake();
            }
        }
    }

    /// The earliest instant a timer waits for.
    fn next_alarm(&self) -> Option<Instant> {
        self.timers
            .borrow()
            .slots
            .iter()
            .flatten()
            .filter(|a| a.waker.is_some())
            .map(|a| a.at)
            .min()
    }
}

// ---------------------------------------------------------------------------------------------
// I/O sources
// ---------------------------------------------------------------------------------------------

/// A non-blocking file descriptor (a socket, a pipe) registered with the runtime: its
/// operations wait for readiness instead of blocking. Dropping it deregisters and closes it.
#[derive(Debug)]
pub(crate) struct Io<T: AsFd> {
    rt: &'static Runtime,
    key: usize,
    inner: T,
}

/// The direction an operation waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Read,
    Write,
}

impl<T: AsFd> Io<T> {
    /// Registers `inner`, made non-blocking.
    pub(crate) fn new(rt: &'static Runtime, inner: T) -> io::Result<Self> {
        rustix::io::ioctl_fionbio(&inner, true)?;
        let key = rt
            .sources
            .borrow_mut()
            .insert(Interest::default())
            .ok_or_else(|| io::Error::other("too many open connections"))?;
        if let Err(e) = epoll::add(
            &rt.epoll,
            &inner,
            epoll::EventData::new_u64(key as u64),
            epoll::EventFlags::ONESHOT,
        ) {
            let _ = rt.sources.borrow_mut().remove(key);
            return Err(e.into());
        }
        Ok(Self { rt, key, inner })
    }

    /// The registered descriptor.
    pub(crate) const fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Runs `op` until it does not fail with `WouldBlock`, waiting for readability between
    /// attempts. Cancel-safe when `op` is: a dropped wait has done nothing.
    pub(crate) async fn read_with<R>(
        &self,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        poll_fn(|cx| self.poll_op(cx, Direction::Read, &mut op)).await
    }

    /// As [`Io::read_with`], waiting for writability.
    pub(crate) async fn write_with<R>(
        &self,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        poll_fn(|cx| self.poll_op(cx, Direction::Write, &mut op)).await
    }

    fn poll_op<R>(
        &self,
        cx: &mut Context<'_>,
        direction: Direction,
        op: &mut impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        match op(&self.inner) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            done => return Poll::Ready(done),
        }
        match self.arm(cx, direction) {
            Ok(()) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Remembers the task's waker and asks epoll for one event in the directions waited in.
    fn arm(&self, cx: &mut Context<'_>, direction: Direction) -> io::Result<()> {
        let mut sources = self.rt.sources.borrow_mut();
        let Some(interest) = sources.get_mut(self.key) else {
            return Err(io::Error::other("the source is not registered"));
        };
        let slot = match direction {
            Direction::Read => &mut interest.read,
            Direction::Write => &mut interest.write,
        };
        match slot {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
        let mut flags = epoll::EventFlags::ONESHOT;
        if interest.read.is_some() {
            flags |= epoll::EventFlags::IN | epoll::EventFlags::RDHUP;
        }
        if interest.write.is_some() {
            flags |= epoll::EventFlags::OUT;
        }
        epoll::modify(
            &self.rt.epoll,
            &self.inner,
            epoll::EventData::new_u64(self.key as u64),
            flags,
        )?;
        Ok(())
    }
}

impl<T: AsFd> Drop for Io<T> {
    fn drop(&mut self) {
        let _ = epoll::delete(&self.rt.epoll, &self.inner);
        let _ = self.rt.sources.borrow_mut().remove(self.key);
    }
}

// ---------------------------------------------------------------------------------------------
// Timers
// ---------------------------------------------------------------------------------------------

/// Completes at an instant. Its place in the timer table is taken when it first waits and
/// given back when it completes or is dropped.
#[derive(Debug)]
pub(crate) struct Sleep {
    rt: &'static Runtime,
    at: Instant,
    slot: Option<usize>,
}

impl Sleep {
    /// Completes at `at` (at once if it has passed).
    pub(crate) const fn until(rt: &'static Runtime, at: Instant) -> Self {
        Self { rt, at, slot: None }
    }

    /// Completes after `duration`.
    pub(crate) fn after(rt: &'static Runtime, duration: Duration) -> Self {
        let now = Instant::now();
        // A duration past what `Instant` holds: a year is as good as for ever here.
        let at = now
            .checked_add(duration)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400));
        Self::until(rt, at)
    }

    fn release(&mut self) {
        if let Some(slot) = self.slot.take() {
            let _ = self.rt.timers.borrow_mut().remove(slot);
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            self.release();
            return Poll::Ready(());
        }
        let rt = self.rt;
        let mut timers = rt.timers.borrow_mut();
        if let Some(alarm) = self.slot.and_then(|slot| timers.get_mut(slot)) {
            match &alarm.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => alarm.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        let alarm = Alarm {
            at: self.at,
            waker: Some(cx.waker().clone()),
        };
        if let Some(slot) = timers.insert(alarm) {
            self.slot = Some(slot);
            return Poll::Pending;
        }
        drop(timers);
        // Cannot happen with the capacities `linux` gives (a few timers per task at most);
        // if it does, firing early is safe: a time-out ends a connection or retries sooner.
        if !rt.timers_overflowed.replace(true) {
            lockstep::log::warn("the timer table is full: timers fire early");
        }
        Poll::Ready(())
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};

    fn runtime(tasks: usize, sources: usize, timers: usize) -> &'static Runtime {
        Box::leak(Box::new(
            Runtime::new(Capacity {
                tasks,
                sources,
                timers,
            })
            .unwrap(),
        ))
    }

    #[test]
    fn test_block_on_returns_main_output() {
        let rt = runtime(1, 1, 1);
        assert_eq!(rt.block_on(async { 7 }), 7);
    }

    #[test]
    fn test_sleep_waits_at_least_its_duration() {
        let rt = runtime(1, 1, 2);
        let start = Instant::now();
        rt.block_on(Sleep::after(rt, Duration::from_millis(30)));
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert_eq!(rt.timers.borrow().len(), 0);
    }

    #[test]
    fn test_timer_table_full_fires_early_without_panic() {
        let rt = runtime(1, 1, 1);
        rt.block_on(async {
            let mut long = pin!(Sleep::after(rt, Duration::from_secs(3600)));
            // Takes the only slot.
            assert!(
                futures_lite::future::poll_once(long.as_mut())
                    .await
                    .is_none()
            );
            // The next finds the table full and completes at once.
            Sleep::after(rt, Duration::from_secs(3600)).await;
        });
        assert_eq!(rt.timers.borrow().len(), 0, "dropping gives the slot back");
    }

    #[test]
    fn test_spawned_tasks_run_and_free_their_slots() {
        let rt = runtime(2, 1, 2);
        let done = std::rc::Rc::new(Cell::new(0));
        for _ in 0..2 {
            let done = done.clone();
            rt.spawn(async move {
                Sleep::after(rt, Duration::from_millis(5)).await;
                done.set(done.get() + 1);
            })
            .unwrap();
        }
        assert_eq!(rt.spawn(async {}), Err(Full));
        rt.block_on(async {
            while done.get() < 2 {
                Sleep::after(rt, Duration::from_millis(1)).await;
            }
        });
        // The task slots are free again once the ended tasks have been polled out.
        rt.block_on(async {});
        assert_eq!(rt.tasks(), 0);
        assert!(rt.spawn(async {}).is_ok());
    }

    #[test]
    fn test_cancel_drops_the_future_and_a_stale_id_changes_nothing() {
        let rt = runtime(1, 1, 1);
        let dropped = std::rc::Rc::new(Cell::new(false));
        struct Flag(std::rc::Rc<Cell<bool>>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        let flag = Flag(dropped.clone());
        let id = rt
            .spawn(async move {
                let _flag = flag;
                std::future::pending::<()>().await;
            })
            .unwrap();
        rt.block_on(async {});
        rt.cancel(id);
        assert!(dropped.get());
        rt.block_on(async {});
        let next = rt.spawn(std::future::pending()).unwrap();
        assert_ne!(next, id);
        rt.cancel(id);
        assert_eq!(rt.tasks(), 1, "a stale id cancels nothing");
        rt.cancel(next);
    }

    #[test]
    fn test_io_reads_and_writes_a_socket_pair() {
        let rt = runtime(2, 4, 2);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = Io::new(rt, listener).unwrap();
        let mut client = TcpStream::connect(addr).unwrap();
        let got = rt.block_on(async {
            let (stream, _) = listener.read_with(|l| l.accept()).await.unwrap();
            let stream = Io::new(rt, stream).unwrap();
            client.write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            let n = stream.read_with(|mut s| s.read(&mut buf)).await.unwrap();
            stream.write_with(|mut s| s.write(b"pong")).await.unwrap();
            buf[..n].to_vec()
        });
        assert_eq!(got, b"ping");
        let mut pong = [0u8; 4];
        client.read_exact(&mut pong).unwrap();
        assert_eq!(&pong, b"pong");
        assert_eq!(
            rt.sources.borrow().len(),
            1,
            "the accepted stream deregistered"
        );
    }

    #[test]
    fn test_sources_table_full_is_an_error() {
        let rt = runtime(1, 1, 1);
        let a = Io::new(rt, TcpListener::bind("127.0.0.1:0").unwrap()).unwrap();
        let b = Io::new(rt, TcpListener::bind("127.0.0.1:0").unwrap());
        assert!(b.is_err());
        drop(a);
        assert!(Io::new(rt, TcpListener::bind("127.0.0.1:0").unwrap()).is_ok());
    }

    #[test]
    fn test_wake_from_another_thread_ends_the_wait() {
        let rt = runtime(1, 1, 1);
        let shared = Arc::new(std::sync::Mutex::new((false, None::<Waker>)));
        let other = shared.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let mut s = other.lock().unwrap();
            s.0 = true;
            if let Some(w) = s.1.take() {
                w.wake();
            }
        });
        rt.block_on(poll_fn(|cx| {
            let mut s = shared.lock().unwrap();
            if s.0 {
                Poll::Ready(())
            } else {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }));
        thread.join().unwrap();
    }
}
