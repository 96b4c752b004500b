//! Entry points of the fuzz targets, shared with the test that replays `fuzz/seeds/`. Not API:
//! behind the `_fuzz` feature. Each takes arbitrary bytes, must never panic except on a broken
//! invariant, and asserts what must hold for every input.

mod archive;
mod conductr;
mod deployer;
mod download;
mod hocon;
mod index;
mod journal;
mod record;
mod shorthand;
mod signature;
mod webhook;

pub use archive::archive;
pub use conductr::conductr;
pub use deployer::deployer;
pub use download::download;
pub use hocon::hocon;
pub use index::index;
pub use journal::journal;
pub use record::record;
pub use shorthand::shorthand;
pub use signature::signature;
pub use webhook::webhook;
