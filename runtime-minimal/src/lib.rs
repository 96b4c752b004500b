//! lockstep-minimal: lockstep as a `#![no_std]`, alloc-free picoserve application, for
//! appliances and microcontrollers, with a small Linux binary that runs it.
//!
//! The library holds what does not depend on the platform, so that it could run on embassy:
//! [`App`], the service on picoserve (every endpoint of `lockstep serve`, deciding nothing
//! itself: core's `service`, agent and ledger decide), and [`Hub`], the agent's sink that
//! feeds the event streams. The state is borrowed from the caller (statics, or leaked boxes
//! on a host); the app is generic over the [`Platform`] (randomness, the request log, and the
//! agent's sink, shelf, journal and clocks). The binary plugs in the platform.
#![no_std]

mod app;
mod http;
pub mod hub;

pub use app::{Admission, App, AppAgent, MAX_TARGET, Platform, Settings};
pub use hub::{Hub, MAX_STREAMS};
