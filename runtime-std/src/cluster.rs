//! Cluster mode (`--etcd`): several `lockstep serve` instances, one of them active.
//!
//! Each instance holds an etcd lease (`--lease-ttl`), kept alive by a thread of its own. The
//! active instance is the one whose lease holds the key `/lockstep/leader` (taken in a
//! transaction: created only if absent); the others wait, without listening, and take the key
//! when its lease expires (its holder died, or lost etcd for longer than the TTL). The active
//! instance's journal is in etcd ([`EtcdLog`]), not in its data directory, so the instance that
//! takes over restores every deployment from it and resumes those in flight, as a restart does.
//!
//! Every write of the journal is a transaction guarded by the leader key's lease: once an
//! instance no longer holds it, nothing it appends is recorded, and since the agent commits
//! before it hands out a job, it starts no new step. When etcd says the lease is gone, the
//! instance exits (status 1) at once: a supervisor restarts it, as a standby.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::etcd::{Compare, Etcd, EtcdError, Op, prefix_end};
use crate::journal::RemoteLog;
use crate::log;
use crate::url::BaseUrl;

/// Cluster mode's settings (`--etcd`, `--lease-ttl`).
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// etcd's client URLs.
    pub endpoints: Vec<BaseUrl>,
    /// The lease's time to live: how long a dead active instance holds its place.
    pub lease_ttl: Duration,
    /// Where the others reach this instance when it is active (`None`: its listen address).
    pub advertise: Option<std::net::SocketAddr>,
}

/// The deadline of one etcd call: a journal commit waits for it on the service's thread, so
/// an etcd that does not answer stalls the service this long once, then the journal is broken
/// (webhooks 503 at once) until the lease thread sees etcd answer again.
pub const ETCD_TIMEOUT: Duration = Duration::from_secs(1);

/// The prefix of every key lockstep keeps in etcd.
pub const PREFIX: &str = "/lockstep/";
/// The most bytes of one journal chunk written in a rewrite (etcd refuses requests over
/// 1.5 MiB by default; base64 makes 512 KiB about 683 KiB).
pub const CHUNK: usize = 512 * 1024;

/// This instance in the cluster: its lease and what it answers as.
#[derive(Debug)]
pub struct Member {
    etcd: Arc<Etcd>,
    lease: i64,
    ttl: Duration,
    /// What the leader key holds while this instance is active: the address the standbys
    /// relay connections to.
    address: String,
    /// Whether etcd answered the lease thread's last renewal.
    answers: Arc<AtomicBool>,
}

impl Member {
    /// Takes a lease of `ttl` and keeps it alive from a thread of its own (every third of
    /// it); when etcd answers that the lease has expired, the process exits with status 1.
    ///
    /// # Errors
    /// When etcd grants no lease.
    pub fn join(etcd: Arc<Etcd>, ttl: Duration, address: String) -> Result<Self, EtcdError> {
        let lease = etcd.grant(ttl.as_secs().max(1))?;
        let keeper = etcd.clone();
        let every = (ttl / 3).max(Duration::from_millis(100));
        let answers = Arc::new(AtomicBool::new(true));
        let told = answers.clone();
        let spawned = std::thread::Builder::new()
            .name("lease".into())
            .stack_size(256 * 1024)
            .spawn(move || keep_alive(&keeper, lease, every, &told));
        if let Err(e) = spawned {
            return Err(EtcdError::Unreachable(format!(
                "no thread to keep the lease: {e}"
            )));
        }
        log::info(&format!(
            "cluster: lease {lease:x} of {}s taken from etcd",
            ttl.as_secs()
        ));
        Ok(Self {
            etcd,
            lease,
            ttl,
            address,
            answers,
        })
    }

    /// Gives the lease back (the leader key goes with it): a standby takes over at once.
    pub fn leave(&self) {
        match self.etcd.revoke(self.lease) {
            Ok(()) => log::info("cluster: the lease is given back; a standby takes over"),
            Err(e) => log::warn(&format!(
                "cluster: the lease could not be given back ({e}); a standby takes over when it \
                 expires"
            )),
        }
    }

    /// Whether etcd answered the lease's last renewal: a broken journal is only rewritten
    /// then (a rewrite tried while etcd is away would stall the service for its deadline).
    pub fn etcd_answers(&self) -> bool {
        self.answers.load(Ordering::SeqCst)
    }

    /// The leader key.
    pub fn leader_key() -> Vec<u8> {
        format!("{PREFIX}leader").into_bytes()
    }

    /// Waits until this instance holds the leader key (bound to its lease), telling
    /// `holder` where the active instance is each time it reads it; says in the log when
    /// that changes. etcd unreachable: tries again every second.
    pub fn campaign(&self, mut holder_at: impl FnMut(&str)) {
        let key = Self::leader_key();
        let mut said = None::<String>;
        loop {
            let taken = self.etcd.txn(
                &[Compare::Absent(&key)],
                &[Op::Put {
                    key: &key,
                    value: self.address.as_bytes(),
                    lease: self.lease,
                }],
                &[Op::Get(&key)],
            );
            let holder = match taken {
                Ok(t) if t.succeeded => {
                    log::info(&format!(
                        "cluster: this instance is active (it holds {PREFIX}leader)"
                    ));
                    return;
                }
                Ok(t) => t
                    .reads
                    .first()
                    .and_then(|kvs| kvs.first())
                    .map(|kv| {
                        if kv.lease == self.lease {
                            // Ours already (a campaign retried after an unanswered one).
                            String::new()
                        } else {
                            String::from_utf8_lossy(&kv.value).into_owned()
                        }
                    })
                    .unwrap_or_default(),
                Err(e) => format!("unknown: {e}"),
            };
            if holder.is_empty() {
                log::info(&format!(
                    "cluster: this instance is active (it holds {PREFIX}leader)"
                ));
                return;
            }
            if !holder.starts_with("unknown") {
                holder_at(&holder);
            }
            if said.as_deref() != Some(holder.as_str()) {
                log::info(&format!(
                    "cluster: standby; the active instance is at {holder} (connections are \
                     relayed to it); taking over when its lease expires (at most {}s after it \
                     stops)",
                    self.ttl.as_secs()
                ));
                said = Some(holder);
            }
            std::thread::sleep(Duration::from_secs(1).min(self.ttl / 3));
        }
    }
}

/// Renews `lease` every `every` for ever; exits the process when etcd says it has expired.
fn keep_alive(etcd: &Etcd, lease: i64, every: Duration, answers: &AtomicBool) {
    let mut unanswered_since: Option<Instant> = None;
    loop {
        std::thread::sleep(every);
        match etcd.keepalive(lease) {
            Ok(ttl) if ttl > 0 => {
                answers.store(true, Ordering::SeqCst);
                if let Some(since) = unanswered_since.take() {
                    log::info(&format!(
                        "cluster: etcd answers again (after {}ms); the lease holds",
                        since.elapsed().as_millis()
                    ));
                }
            }
            Ok(_) => {
                log::error(&format!(
                    "cluster: the lease {lease:x} has expired (etcd lost this instance for \
                     longer than its TTL): exiting, so that nothing more is done on its behalf"
                ));
                std::process::exit(1);
            }
            Err(e) => {
                answers.store(false, Ordering::SeqCst);
                if unanswered_since.is_none() {
                    log::warn(&format!(
                        "cluster: the lease cannot be renewed ({e}); the journal is not written \
                         (webhooks 503, no step starts) until etcd answers"
                    ));
                    unanswered_since = Some(Instant::now());
                }
            }
        }
    }
}

/// The journal's bytes in etcd: chunks under `/lockstep/journal/<generation>/<n>`, the live
/// generation in `/lockstep/generation`. A commit appends a chunk; a rewrite writes a new
/// generation, then switches to it and deletes the old ones in one transaction. Every write
/// is guarded by the leader key's lease.
#[derive(Debug)]
pub struct EtcdLog {
    etcd: Arc<Etcd>,
    lease: i64,
    generation: u64,
    next: u64,
}

impl EtcdLog {
    /// The journal's bytes as etcd holds them (empty when it holds none), and the log that
    /// appends to them as `member`.
    ///
    /// # Errors
    /// When etcd does not answer, or holds a generation that is not a number.
    pub fn load(member: &Member) -> Result<(Self, Vec<u8>), EtcdError> {
        let etcd = member.etcd.clone();
        let generation = match etcd.range(&generation_key(), None)?.first() {
            None => 0,
            Some(kv) => String::from_utf8_lossy(&kv.value)
                .parse::<u64>()
                .map_err(|_| EtcdError::Malformed(format!("{PREFIX}generation")))?,
        };
        let mut bytes = Vec::new();
        let mut next = 0;
        if generation > 0 {
            let start = chunk_prefix(generation);
            for kv in etcd.range(&start, Some(&prefix_end(&start)))? {
                bytes.extend_from_slice(&kv.value);
                next += 1;
            }
        }
        Ok((
            Self {
                etcd,
                lease: member.lease,
                generation,
                next,
            },
            bytes,
        ))
    }

    /// Where the journal is, for messages.
    pub fn place(&self) -> String {
        let endpoints: Vec<&str> = self.etcd.endpoints().iter().map(|e| e.as_str()).collect();
        format!("{PREFIX}journal/ in etcd ({})", endpoints.join(","))
    }
}

impl RemoteLog for EtcdLog {
    fn place(&self) -> String {
        Self::place(self)
    }

    /// Appends `bytes` as the next chunk, if this instance is still the active one: an error
    /// when etcd does not answer, or the leader key is no longer this instance's.
    fn append(&mut self, bytes: &[u8]) -> Result<(), String> {
        let key = chunk_key(self.generation, self.next);
        self.guarded(&[Op::Put {
            key: &key,
            value: bytes,
            lease: 0,
        }])?;
        self.next += 1;
        Ok(())
    }

    /// Writes a new generation, then switches to it and deletes the old ones in one
    /// transaction.
    fn rewrite(&mut self, bytes: &[u8]) -> Result<(), String> {
        let new = self.generation + 1;
        // What an interrupted rewrite left at this generation or later.
        let from = chunk_prefix(new);
        let end = prefix_end(format!("{PREFIX}journal/").as_bytes());
        self.guarded(&[Op::Delete {
            key: &from,
            end: &end,
        }])?;
        let mut count = 0;
        for (n, chunk) in bytes.chunks(CHUNK).enumerate() {
            let key = chunk_key(new, n as u64);
            self.guarded(&[Op::Put {
                key: &key,
                value: chunk,
                lease: 0,
            }])?;
            count += 1;
        }
        let old_start = chunk_prefix(0);
        let value = new.to_string();
        self.guarded(&[
            Op::Put {
                key: &generation_key(),
                value: value.as_bytes(),
                lease: 0,
            },
            Op::Delete {
                key: &old_start,
                end: &from,
            },
        ])?;
        self.generation = new;
        self.next = count;
        Ok(())
    }
}

impl EtcdLog {
    fn guarded(&mut self, ops: &[Op<'_>]) -> Result<(), String> {
        let leader = Member::leader_key();
        let txn = self
            .etcd
            .txn(&[Compare::Lease(&leader, self.lease)], ops, &[])
            .map_err(|e| e.to_string())?;
        if !txn.succeeded {
            return Err(format!(
                "this instance no longer holds {PREFIX}leader (its lease expired)"
            ));
        }
        Ok(())
    }
}

fn generation_key() -> Vec<u8> {
    format!("{PREFIX}generation").into_bytes()
}

fn chunk_prefix(generation: u64) -> Vec<u8> {
    format!("{PREFIX}journal/{generation:020}/").into_bytes()
}

fn chunk_key(generation: u64, n: u64) -> Vec<u8> {
    format!("{PREFIX}journal/{generation:020}/{n:020}").into_bytes()
}
