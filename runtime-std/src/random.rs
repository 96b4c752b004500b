//! Deployment ids' randomness: the OS's, drawn [`BATCH`] ids at a time.
//!
//! Every webhook draws an id before core knows whether it starts a deployment (a redelivery
//! keeps its first id), so each request made a `getrandom` call: one of the four system calls
//! of a kept-alive request to `lockstep serve`, of the five to `lockstep-minimal` (`strace -c`). Drawing 32 ids' worth at once makes it one call per 32 requests; each id's
//! bytes are handed out once and zeroed in the pool as they leave it.

use std::sync::{Mutex, PoisonError};

/// Ids drawn per call to the OS.
pub const BATCH: usize = 32;

const ID_LEN: usize = 16;

struct Pool {
    bytes: [u8; ID_LEN * BATCH],
    /// How many of `bytes` were handed out (all of them: draw again first).
    used: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    bytes: [0; ID_LEN * BATCH],
    used: ID_LEN * BATCH,
});

/// 16 bytes from the OS's random number generator, for
/// [`DeploymentId::random_v4`](lockstep_core::deployer::DeploymentId::random_v4).
///
/// # Errors
/// The OS's generator failed (then nothing was handed out).
pub fn id_bytes() -> Result<[u8; ID_LEN], getrandom::Error> {
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    if pool.used >= pool.bytes.len() {
        getrandom::fill(&mut pool.bytes)?;
        pool.used = 0;
    }
    let at = pool.used;
    let mut id = [0u8; ID_LEN];
    if let Some(taken) = pool.bytes.get_mut(at..at + ID_LEN) {
        id.copy_from_slice(taken);
        taken.fill(0);
    }
    pool.used = at + ID_LEN;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn test_ids_are_distinct_across_batches() {
        let ids: HashSet<[u8; ID_LEN]> = (0..BATCH * 3 + 1).map(|_| id_bytes().unwrap()).collect();
        assert_eq!(ids.len(), BATCH * 3 + 1);
        assert!(!ids.contains(&[0; ID_LEN]));
    }
}
