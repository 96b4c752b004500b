//! lockstep's core: everything that decides something, and the driver that carries it out.
//!
//! The crate is `#![no_std]` without `alloc`, `#![forbid(unsafe_code)]`, and never panics on
//! input. The runtimes (`lockstep` on std, `lockstep-minimal` on picoserve) feed it bytes and
//! timestamps and carry out what it answers, so the same logic runs on a server and on a
//! microcontroller, and tests drive it faster than real time. The design is in
//! `docs/DESIGN.md`, every wire format in `docs/PROTOCOL.md`.
//!
//! Its modules are of three kinds, and imports point one way: decisions use formats, the
//! driver uses both, and no format imports a decision or the driver.
//!
//! **Formats** — sans-IO parsers and writers. Each parses into borrowed, validated types:
//! after `Ok`, nothing derived can fail; each error is a small `Copy` enum with a
//! [`status::Status`] where it answers HTTP.
//! - [`webhook`]: the request target and JSON body of a registry's notification.
//! - [`signature`]: the shared [`signature::Secret`], the Bintray scheme and lockstep's own
//!   timestamped scheme with its replay cache; constant-time comparisons.
//! - [`bundle`]: digests, bundle ids, versions and the operator's bundle shorthand.
//! - [`hocon`]: the bounded HOCON reader for bundle.conf and settings.conf.
//! - [`archive`]: the bundle.conf inside a bundle zip, read through [`archive::RandomAccess`].
//! - [`index`]: a package's `versions.json`, streamed: was a version published before
//!   another?
//! - [`conductr`]: the ConductR control API: the bundle list, the load and scale requests,
//!   multipart bodies, the bundle event stream.
//! - [`json`], [`text`], [`time`], [`status`], [`limits`]: the strict JSON scanner, inline
//!   strings and writers, milliseconds (monotonic and wall-clock: time is always an
//!   argument), HTTP statuses, and the limits several modules share.
//!
//! **Decisions** — deterministic and sans-IO: they read no clock, open nothing and wait for
//! nothing; inputs in, outputs polled out.
//! - [`deployer`]: the lock-step machine (admission, the per-key schedule, each deployment's
//!   steps), its events, and the record's persistent form ([`deployer::persist`]).
//! - [`ledger`]: what is kept for reading: event logs, retention, the newest-first listing.
//! - [`service`]: what both HTTP fronts share: routes, the order of a webhook's checks, the
//!   status and one-line body of every refusal.
//! - [`budget`]: which connections a server keeps when more arrive than it serves at once:
//!   waiting ones are shed for newcomers, event streams are capped.
//!
//! **The driver** — [`agent`]: async, but still `no_std`, allocation-free and generic over
//! the platform's connections, clock, timers and bundle store. It carries the deployer's
//! commands out over HTTP and decides nothing. It stays a module of this crate rather than a
//! crate of its own: it holds to the same promises (no std, no alloc, no unsafe, no panics)
//! under the same lints, both runtimes embed it with the deciding modules, and the boundary a
//! crate would enforce is kept by the import rule above.

#![no_std]
#![forbid(unsafe_code)]
// Panic-freedom is a promise of this crate: no unwrap, no indexing, no unchecked arithmetic.
// Test builds relax them once, below.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented
)]
// Tests fail loudly instead, relaxed once for every test module (after the deny, which this
// overrides); the crate's own build, what ships, keeps every denial above.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        reason = "tests fail loudly"
    )
)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod access;
pub mod agent;
pub mod archive;
pub mod budget;
pub mod bundle;
pub mod conductr;
pub mod deployer;
mod hex;
pub mod hocon;
pub mod index;
pub mod journal;
pub mod json;
pub mod ledger;
pub mod limits;
pub mod service;
pub mod signature;
pub mod status;
pub mod text;
pub mod time;
pub mod webhook;

#[cfg(feature = "_fuzz")]
pub mod fuzz;
#[cfg(feature = "_sim")]
pub mod sim;
