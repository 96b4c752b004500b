//! lockstep's core: everything that decides something, and nothing that waits.
//!
//! This crate is deterministic and sans-IO. It reads no clock (time is an argument: [`time`]),
//! opens no socket and no file, allocates nothing and never panics on input: it is
//! `#![no_std]` without `alloc`, and `#![forbid(unsafe_code)]`. The runtimes (`lockstep` on
//! std, `lockstep-minimal` on picoserve) feed it bytes and timestamps and carry out what it
//! answers, so the same logic runs on a server and on a microcontroller, and tests drive it
//! faster than real time.
//!
//! Modules, in the order a webhook meets them:
//! - [`webhook`]: the request target and JSON body of a registry's notification, parsed into a
//!   borrowed, validated [`webhook::Notification`].
//! - [`signature`]: the shared [`signature::Secret`], the Bintray scheme and lockstep's own
//!   timestamped scheme with its replay cache; constant-time comparisons.
//! - [`bundle`]: digests, bundle ids, versions and the operator's bundle shorthand.
//! - [`conductr`]: the ConductR control API codec: the bundle list, the load and scale
//!   requests, multipart bodies, the bundle event stream.
//! - [`agent`]: carries out the deployer's commands over HTTP, generic over the platform's
//!   connections, clock, timers and bundle store.
//! - [`archive`]: the bundle.conf inside a bundle zip, read through [`archive::RandomAccess`].
//! - [`hocon`]: the bounded HOCON reader for bundle.conf and settings.conf.
//! - [`json`]: the strict JSON scanner the parsers run before serde-json-core.
//! - [`status`]: the HTTP status each refusal answers.
//! - [`time`]: milliseconds, monotonic and wall-clock.
//!
//! Every parser follows the same contract: after it returns `Ok`, the value is valid and nothing
//! derived from it can fail; every error is a small `Copy` enum whose variants each name one
//! reason, with a [`status::Status`] for the HTTP answer.

#![no_std]
#![forbid(unsafe_code)]
// Panic-freedom is a promise of this crate: no unwrap, no indexing, no unchecked arithmetic.
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
// Tests may relax them, once for every test module (after the deny, which it overrides).
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

pub mod agent;
pub mod archive;
pub mod bundle;
pub mod conductr;
pub mod deployer;
mod hex;
pub mod hocon;
pub mod json;
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
