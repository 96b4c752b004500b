//! Webhook signatures (docs/PROTOCOL.md §1 and §7): the shared [`Secret`], the Bintray scheme,
//! lockstep's own timestamped scheme with its [`ReplayCache`], and [`select`], which decides
//! which scheme a request is checked with.
//!
//! # What each scheme authenticates
//! - **Bintray** (`X-Bintray-Hook-Hmac: base64(HMAC-SHA256(secret, package))`, [`BintrayMac`]):
//!   only that the sender knows the secret and the package name. The MAC is the same for every
//!   version of a package and never expires, so whoever saw one request can replay it forever,
//!   with any `version`. Kept for compatibility with Bintray and `conduct deploy`.
//! - **lockstep** (`X-Lockstep-Signature: t=<unix secs>,v1=<hex HMAC-SHA256(secret, "<t>." +
//!   raw body)>`, [`LockstepSignature`]): the whole body and the time it was signed. It is
//!   accepted only within a window around now, and at most once within it (the
//!   [`ReplayCache`]); past the window the timestamp refuses it.
//!
//! Neither covers the request target (path, `?tag=`) nor any other header.
//!
//! # Order of checks
//! The lockstep signature covers the raw body, so it is verified before the body is parsed: an
//! unauthenticated sender never reaches the JSON parser (401/403 before 400/422). The Bintray
//! MAC covers the package name, which only the parsed body gives, so there the body is parsed
//! first. [`select`] picks the scheme from the headers alone; the service runs the rest in the
//! order its scheme needs. Every MAC comparison is constant-time ([`Mac::verify_slice`]).

use core::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

use crate::hex;
use crate::status::Status;
use crate::text::{self, InlineStr};
use crate::time::{Duration, UnixTime};

/// The header of the Bintray scheme (docs/PROTOCOL.md §1).
pub const BINTRAY_HEADER: &str = "X-Bintray-Hook-Hmac";
/// The header of lockstep's scheme (docs/PROTOCOL.md §7).
pub const LOCKSTEP_HEADER: &str = "X-Lockstep-Signature";
/// The longest secret accepted, in bytes.
pub const MAX_SECRET_LEN: usize = 128;

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256.
pub const MAC_LEN: usize = 32;
/// Digits of `u64::MAX`.
const MAX_T_DIGITS: usize = 20;
/// Base64 of 32 bytes, with its padding.
const BINTRAY_B64_LEN: usize = 44;
/// `t=` + 20 digits + `,v1=` + 64 hex digits.
const LOCKSTEP_HEADER_MAX: usize = 90;

// ---------------------------------------------------------------------------------------------
// Secret

/// The shared webhook secret (`BINTRAY_WEBHOOK_SECRET`), 1 to [`MAX_SECRET_LEN`] bytes.
///
/// Never printed: `Debug` shows `Secret(..)` and there is no `Display`. Zeroized on drop (a
/// move may still leave a copy on the stack: best effort, as everywhere without pinning).
/// Cloned only where a second signer needs it (`lockstep serve` signs its outcome
/// notifications with the webhook secret); every clone is zeroized on drop too.
#[derive(Clone)]
pub struct Secret {
    bytes: heapless::Vec<u8, MAX_SECRET_LEN>,
}

/// Why bytes cannot be a [`Secret`]. Never shows the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SecretError {
    /// No bytes (after trimming the file's newline).
    Empty,
    /// Longer than [`MAX_SECRET_LEN`] bytes.
    TooLong,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "the webhook secret is empty",
            Self::TooLong => "the webhook secret is longer than 128 bytes",
        })
    }
}

impl core::error::Error for SecretError {}

impl Secret {
    /// A secret of exactly these bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, SecretError> {
        if bytes.is_empty() {
            return Err(SecretError::Empty);
        }
        let bytes = heapless::Vec::from_slice(bytes).map_err(|_| SecretError::TooLong)?;
        Ok(Self { bytes })
    }

    /// A secret read from a file: one trailing `\n` or `\r\n` is not part of it (editors end
    /// files with one).
    pub fn from_file_contents(contents: &[u8]) -> Result<Self, SecretError> {
        let trimmed = match contents {
            [rest @ .., b'\r', b'\n'] | [rest @ .., b'\n'] => rest,
            all => all,
        };
        Self::new(trimmed)
    }

    fn expose(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // The bytes are never shortened: the live ones are all that were ever written.
        self.bytes.as_mut_slice().zeroize();
        self.bytes.clear();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Secret {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Secret(..)");
    }
}

/// HMAC-SHA256 keyed with `key` of any length.
///
/// Derives HMAC's block-sized key itself (RFC 2104 §2: hash a key longer than a block, then pad
/// with zeros) so that keying is infallible and needs no `unwrap`.
fn keyed(key: &[u8]) -> HmacSha256 {
    let mut block = hmac::digest::Key::<HmacSha256>::default();
    if key.len() > block.len() {
        let mut hashed = <Sha256 as sha2::Digest>::digest(key);
        for (dst, src) in block.iter_mut().zip(hashed.iter()) {
            *dst = *src;
        }
        hashed.as_mut_slice().zeroize();
    } else {
        for (dst, src) in block.iter_mut().zip(key) {
            *dst = *src;
        }
    }
    let mac = HmacSha256::new(&block);
    block.as_mut_slice().zeroize();
    mac
}

/// HMAC-SHA256 of the concatenated `parts`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    let mut mac = keyed(key);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a signature is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SignatureError {
    /// No signature header of an enabled scheme.
    Missing,
    /// `X-Lockstep-Signature` without `t=`.
    MissingTimestamp,
    /// `X-Lockstep-Signature` without `v1=`.
    MissingMac,
    /// `t=` is not 1 to 20 ASCII digits, or does not fit in 64 bits.
    BadTimestamp,
    /// `v1=` is not 64 hexadecimal digits.
    BadMac,
    /// `X-Lockstep-Signature` repeats `t` or `v1`.
    Duplicate,
    /// `X-Bintray-Hook-Hmac` is not standard padded base64 of exactly 32 bytes.
    BadBase64,
    /// Well-formed, but not made with this secret over this message.
    Mismatch,
    /// The timestamp is farther from now than the window, in either direction.
    Stale,
    /// This signature was already accepted and is still within its window.
    Replayed,
    /// Every slot of the replay cache holds a live signature: refused rather than unchecked.
    ReplayCacheFull,
}

impl SignatureError {
    /// The HTTP status of the refusal: 401 malformed or missing, 403 not verified, 503 busy.
    pub const fn status(self) -> Status {
        match self {
            Self::Missing
            | Self::MissingTimestamp
            | Self::MissingMac
            | Self::BadTimestamp
            | Self::BadMac
            | Self::Duplicate
            | Self::BadBase64 => Status::Unauthorized,
            Self::Mismatch | Self::Stale | Self::Replayed => Status::Forbidden,
            Self::ReplayCacheFull => Status::ServiceUnavailable,
        }
    }

    /// A short, stable label for metrics: `missing`, `malformed`, `mismatch`, `stale`,
    /// `replayed` or `busy`.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::MissingTimestamp
            | Self::MissingMac
            | Self::BadTimestamp
            | Self::BadMac
            | Self::Duplicate
            | Self::BadBase64 => "malformed",
            Self::Mismatch => "mismatch",
            Self::Stale => "stale",
            Self::Replayed => "replayed",
            Self::ReplayCacheFull => "busy",
        }
    }
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "no signature header of an accepted scheme",
            Self::MissingTimestamp => "X-Lockstep-Signature has no t=",
            Self::MissingMac => "X-Lockstep-Signature has no v1=",
            Self::BadTimestamp => "X-Lockstep-Signature t= is not a Unix time in 1 to 20 digits",
            Self::BadMac => "X-Lockstep-Signature v1= is not 64 hexadecimal digits",
            Self::Duplicate => "X-Lockstep-Signature repeats a key",
            Self::BadBase64 => "X-Bintray-Hook-Hmac is not the base64 of 32 bytes",
            Self::Mismatch => "signature does not match",
            Self::Stale => "signature timestamp outside the accepted window",
            Self::Replayed => "signature already used",
            Self::ReplayCacheFull => "replay cache full of live signatures",
        })
    }
}

impl core::error::Error for SignatureError {}

// ---------------------------------------------------------------------------------------------
// Bintray scheme

/// A parsed `X-Bintray-Hook-Hmac`: the 32 bytes of HMAC-SHA256(secret, package name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BintrayMac([u8; MAC_LEN]);

impl BintrayMac {
    /// Parses the header value: standard base64 with padding of exactly 32 bytes (spaces and
    /// tabs around it ignored, as HTTP allows).
    pub fn parse(header: &[u8]) -> Result<Self, SignatureError> {
        let header = trim_ows(header);
        // 44 characters decode to 31, 32 or 33 bytes; anything else is not our MAC anyway.
        if header.len() != BINTRAY_B64_LEN {
            return Err(SignatureError::BadBase64);
        }
        let mut decoded = [0u8; MAC_LEN + 1];
        match STANDARD.decode_slice(header, &mut decoded) {
            Ok(MAC_LEN) => {}
            _ => return Err(SignatureError::BadBase64),
        }
        let mut mac = [0u8; MAC_LEN];
        for (dst, src) in mac.iter_mut().zip(decoded) {
            *dst = src;
        }
        Ok(Self(mac))
    }

    /// Checks, in constant time, that this is the MAC of `package` under `secret`.
    #[must_use = "an unchecked signature authenticates nothing"]
    pub fn verify(&self, secret: &Secret, package: &str) -> Result<(), SignatureError> {
        let mut mac = keyed(secret.expose());
        mac.update(package.as_bytes());
        mac.verify_slice(&self.0)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// A value of `X-Bintray-Hook-Hmac`, as [`bintray_sign`] writes it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BintrayHeaderValue([u8; BINTRAY_B64_LEN]);

impl BintrayHeaderValue {
    /// The 44 base64 characters.
    pub fn as_str(&self) -> &str {
        // `bintray_sign` writes all 44 bytes, as base64's ASCII: the prefix is the whole.
        text::utf8_prefix(&self.0)
    }
}

impl fmt::Debug for BintrayHeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Signs `package` as Bintray does (for tests and `lockstep deploy`).
pub fn bintray_sign(secret: &Secret, package: &str) -> BintrayHeaderValue {
    let mac = hmac_sha256(secret.expose(), &[package.as_bytes()]);
    let mut out = [0u8; BINTRAY_B64_LEN];
    // 32 bytes always encode to exactly 44 characters.
    let _ = STANDARD.encode_slice(mac, &mut out);
    BintrayHeaderValue(out)
}

// ---------------------------------------------------------------------------------------------
// lockstep scheme

/// A parsed `X-Lockstep-Signature`: the timestamp (with its digits as sent, which the MAC
/// covers) and the MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LockstepSignature {
    t: u64,
    t_digits: InlineStr<MAX_T_DIGITS>,
    mac: [u8; MAC_LEN],
}

impl LockstepSignature {
    /// Parses `t=<secs>,v1=<hex>`: comma-separated `key=value` items in any order, spaces and
    /// tabs around items, keys and values ignored, unknown keys ignored (later versions may add
    /// some), `t` and `v1` each exactly once. Hex of either case is accepted.
    pub fn parse(header: &[u8]) -> Result<Self, SignatureError> {
        let mut t = None;
        let mut mac = None;
        for item in header.split(|&b| b == b',') {
            let mut kv = item.splitn(2, |&b| b == b'=');
            // `splitn` yields the key, then the value if there is a `=`: an item without one
            // counts as its key with an empty value.
            let (key, value) = match (kv.next(), kv.next()) {
                (Some(key), Some(value)) => (key, value),
                _ => (item, &[][..]),
            };
            let (key, value) = (trim_ows(key), trim_ows(value));
            match key {
                b"t" if t.is_some() => return Err(SignatureError::Duplicate),
                b"t" => t = Some(parse_timestamp(value).ok_or(SignatureError::BadTimestamp)?),
                b"v1" if mac.is_some() => return Err(SignatureError::Duplicate),
                b"v1" => mac = Some(parse_hex_mac(value).ok_or(SignatureError::BadMac)?),
                _ => {}
            }
        }
        let (t, t_digits) = t.ok_or(SignatureError::MissingTimestamp)?;
        let mac = mac.ok_or(SignatureError::MissingMac)?;
        Ok(Self { t, t_digits, mac })
    }

    /// The timestamp, in seconds since the Unix epoch.
    pub const fn timestamp(&self) -> u64 {
        self.t
    }

    /// The MAC (`v1`).
    pub const fn mac(&self) -> &[u8; MAC_LEN] {
        &self.mac
    }

    /// Checks the signature of `body`, in this order: the MAC, in constant time
    /// ([`SignatureError::Mismatch`]); then `|now − t| ≤ window` in whole seconds, both
    /// directions, edges included ([`SignatureError::Stale`]); then that `replay` does not hold
    /// it ([`SignatureError::Replayed`]).
    ///
    /// The returned [`Fresh`] must go to [`ReplayCache::insert`] once the request is accepted.
    #[must_use = "an unchecked signature authenticates nothing"]
    pub fn verify<const N: usize>(
        &self,
        secret: &Secret,
        body: &[u8],
        now: UnixTime,
        window: Duration,
        replay: &ReplayCache<N>,
    ) -> Result<Fresh, SignatureError> {
        let mut mac = keyed(secret.expose());
        mac.update(self.t_digits.as_str().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&self.mac)
            .map_err(|_| SignatureError::Mismatch)?;
        if now.as_secs().abs_diff(self.t) > window.as_secs() {
            return Err(SignatureError::Stale);
        }
        if replay.contains(&self.mac, now, window) {
            return Err(SignatureError::Replayed);
        }
        Ok(Fresh {
            mac: self.mac,
            t: self.t,
        })
    }
}

/// Trims the spaces and tabs HTTP allows around values and list items.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// 1 to 20 ASCII digits that fit in a `u64`: the value and the digits as sent.
fn parse_timestamp(digits: &[u8]) -> Option<(u64, InlineStr<MAX_T_DIGITS>)> {
    if digits.is_empty() {
        return None;
    }
    let mut kept = InlineStr::EMPTY;
    let mut value = 0u64;
    for &b in digits {
        let digit = b.checked_sub(b'0').filter(|d| *d < 10)?;
        value = value.checked_mul(10)?.checked_add(u64::from(digit))?;
        kept.push(char::from(b)).ok()?;
    }
    Some((value, kept))
}

/// Exactly 64 hex digits of either case.
fn parse_hex_mac(hex: &[u8]) -> Option<[u8; MAC_LEN]> {
    hex::decode(hex).ok()
}

/// Proof that a lockstep signature verified and was not in the replay cache when checked.
///
/// Not `Clone`: it is spent by [`ReplayCache::insert`].
#[must_use = "record the signature with ReplayCache::insert once the request is accepted"]
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Fresh {
    mac: [u8; MAC_LEN],
    t: u64,
}

impl Fresh {
    /// The signature's timestamp, in seconds since the Unix epoch.
    pub const fn timestamp(&self) -> u64 {
        self.t
    }

    /// Its entry's persistent form, to record before the request is answered.
    pub const fn stamp(&self) -> Stamp {
        Stamp {
            mac: self.mac,
            t: self.t,
        }
    }

    /// Live in a [`ReplayCache`] until its window has passed.
    fn is_live(&self, now: UnixTime, window: Duration) -> bool {
        now.as_secs() <= self.t.saturating_add(window.as_secs())
    }
}

/// A replay-cache entry as a store keeps it (`core::journal`): an accepted signature's MAC and
/// timestamp. Neither is secret: both travelled in the request's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stamp {
    /// The MAC of `v1=`.
    pub mac: [u8; MAC_LEN],
    /// `t=`, seconds since the Unix epoch.
    pub t: u64,
}

/// A value of `X-Lockstep-Signature` (`t=<secs>,v1=<hex>`), as [`lockstep_sign`] writes it.
#[derive(Clone, PartialEq, Eq)]
pub struct LockstepHeaderValue(heapless::String<LOCKSTEP_HEADER_MAX>);

impl LockstepHeaderValue {
    /// The header value, without the header name.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for LockstepHeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Signs `body` at Unix time `t` seconds with lockstep's scheme.
///
/// `lockstep sign` prints `X-Lockstep-Signature: ` followed by [`LockstepHeaderValue::as_str`].
pub fn lockstep_sign(secret: &Secret, t: u64, body: &[u8]) -> LockstepHeaderValue {
    use fmt::Write as _;

    // The buffers hold the longest values (20 digits): writing cannot fail.
    let mut digits = heapless::String::<MAX_T_DIGITS>::new();
    let _ = write!(digits, "{t}");
    let mac = hmac_sha256(secret.expose(), &[digits.as_bytes(), b".", body]);
    let mut out = heapless::String::new();
    let _ = write!(out, "t={digits},v1={}", hex::Lower(&mac));
    LockstepHeaderValue(out)
}

// ---------------------------------------------------------------------------------------------
// Replay cache

/// The lockstep signatures accepted within their window, in `N` fixed slots.
///
/// An entry is live while `now ≤ t + window` (whole seconds); afterwards the window refuses
/// its signature anyway and the slot is free again. A live entry is never evicted, which would
/// re-open its replay: when every slot is live, new signatures are refused as busy (503).
///
/// The service drives it in this order, without yielding in between:
/// 1. [`LockstepSignature::verify`] against the cache: 403 `Replayed` if present;
/// 2. [`has_room`](Self::has_room) before admitting the request: 503 if not;
/// 3. admit it (only an accepted request enters the cache);
/// 4. [`insert`](Self::insert) the [`Fresh`] proof.
///
/// MACs are compared in variable time here: they come from verified headers, which travel in
/// the clear, so they are no secret.
#[derive(Debug)]
pub struct ReplayCache<const N: usize> {
    slots: [Option<Fresh>; N],
    /// How many of the slots are used: the configured capacity, at most `N`.
    limit: usize,
}

impl<const N: usize> Default for ReplayCache<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> ReplayCache<N> {
    /// An empty cache.
    pub const fn new() -> Self {
        Self {
            slots: [const { None }; N],
            limit: N,
        }
    }

    /// An empty cache using only `capacity` of its `N` slots (configuration within a compiled
    /// maximum); at least 1.
    pub const fn with_capacity(capacity: usize) -> Self {
        let mut cache = Self::new();
        cache.limit = if capacity == 0 {
            1
        } else if capacity < N {
            capacity
        } else {
            N
        };
        cache
    }

    /// The number of slots in use.
    pub const fn capacity(&self) -> usize {
        self.limit
    }

    /// The slots in use: the first `limit`.
    fn used(&self) -> impl Iterator<Item = &Option<Fresh>> {
        self.slots.iter().take(self.limit)
    }

    /// Whether a signature with this MAC was accepted and is still live.
    pub fn contains(&self, mac: &[u8; MAC_LEN], now: UnixTime, window: Duration) -> bool {
        self.live_entries(now, window).any(|e| e.mac == *mac)
    }

    /// Whether a slot is free or expired, so that [`insert`](Self::insert) will succeed.
    pub fn has_room(&self, now: UnixTime, window: Duration) -> bool {
        self.used()
            .any(|slot| slot.as_ref().is_none_or(|e| !e.is_live(now, window)))
    }

    /// Records an accepted signature in a free or expired slot.
    ///
    /// Refuses with [`SignatureError::ReplayCacheFull`] when every slot is live, and with
    /// [`SignatureError::Replayed`] when the same signature was recorded since it was verified.
    pub fn insert(
        &mut self,
        fresh: Fresh,
        now: UnixTime,
        window: Duration,
    ) -> Result<(), SignatureError> {
        if self.contains(&fresh.mac, now, window) {
            return Err(SignatureError::Replayed);
        }
        let limit = self.limit;
        let slot = self
            .slots
            .iter_mut()
            .take(limit)
            .find(|slot| slot.as_ref().is_none_or(|e| !e.is_live(now, window)))
            .ok_or(SignatureError::ReplayCacheFull)?;
        *slot = Some(fresh);
        Ok(())
    }

    /// Puts back an entry read from a store after a restart, if it is still live (an expired
    /// one is refused by the window anyway). Refuses as [`insert`](Self::insert) does.
    pub fn restore(
        &mut self,
        stamp: Stamp,
        now: UnixTime,
        window: Duration,
    ) -> Result<(), SignatureError> {
        let fresh = Fresh {
            mac: stamp.mac,
            t: stamp.t,
        };
        if !fresh.is_live(now, window) {
            return Ok(());
        }
        self.insert(fresh, now, window)
    }

    /// The live entries, for a store to rewrite.
    pub fn stamps(&self, now: UnixTime, window: Duration) -> impl Iterator<Item = Stamp> + '_ {
        self.live_entries(now, window).map(Fresh::stamp)
    }

    /// The number of live entries (for metrics).
    pub fn live(&self, now: UnixTime, window: Duration) -> usize {
        self.live_entries(now, window).count()
    }

    fn live_entries(&self, now: UnixTime, window: Duration) -> impl Iterator<Item = &Fresh> {
        self.used()
            .flatten()
            .filter(move |e| e.is_live(now, window))
    }
}

// ---------------------------------------------------------------------------------------------
// Scheme selection

/// Which schemes are accepted (configuration). At least one is: see [`Schemes::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Schemes {
    bintray: bool,
    lockstep: bool,
}

/// Why a [`Schemes`] cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SchemesError {
    /// Neither scheme is enabled: every webhook would be refused.
    NoneEnabled,
}

impl fmt::Display for SchemesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoneEnabled => "at least one signature scheme must be enabled",
        })
    }
}

impl core::error::Error for SchemesError {}

impl Default for Schemes {
    fn default() -> Self {
        Self::BOTH
    }
}

impl Schemes {
    /// Both schemes (the default).
    pub const BOTH: Self = Self {
        bintray: true,
        lockstep: true,
    };
    /// Only the Bintray scheme.
    pub const BINTRAY_ONLY: Self = Self {
        bintray: true,
        lockstep: false,
    };
    /// Only lockstep's scheme.
    pub const LOCKSTEP_ONLY: Self = Self {
        bintray: false,
        lockstep: true,
    };

    /// The given schemes; refuses to enable none.
    pub const fn new(bintray: bool, lockstep: bool) -> Result<Self, SchemesError> {
        if bintray || lockstep {
            Ok(Self { bintray, lockstep })
        } else {
            Err(SchemesError::NoneEnabled)
        }
    }

    /// Whether the Bintray scheme is accepted.
    pub const fn bintray(self) -> bool {
        self.bintray
    }

    /// Whether lockstep's scheme is accepted.
    pub const fn lockstep(self) -> bool {
        self.lockstep
    }
}

/// The raw values of the signature headers of a request, if present.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Headers<'a> {
    /// `X-Bintray-Hook-Hmac`.
    pub bintray: Option<&'a [u8]>,
    /// `X-Lockstep-Signature`.
    pub lockstep: Option<&'a [u8]>,
}

/// The signature a request will be checked with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Presented {
    /// The Bintray scheme: verify after parsing the body.
    Bintray(BintrayMac),
    /// lockstep's scheme: verify before parsing the body.
    Lockstep(LockstepSignature),
}

/// Picks and parses the signature to check (docs/PROTOCOL.md §7).
///
/// When lockstep's scheme is enabled and its header present, only that header is used, even if
/// malformed: no fallback to the weaker scheme. Otherwise the Bintray header, if its scheme is
/// enabled. A header of a disabled scheme is ignored; nothing usable is
/// [`SignatureError::Missing`].
pub fn select(schemes: Schemes, headers: Headers<'_>) -> Result<Presented, SignatureError> {
    match (headers.lockstep, headers.bintray) {
        (Some(value), _) if schemes.lockstep => {
            LockstepSignature::parse(value).map(Presented::Lockstep)
        }
        (_, Some(value)) if schemes.bintray => BintrayMac::parse(value).map(Presented::Bintray),
        _ => Err(SignatureError::Missing),
    }
}

#[cfg(test)]
mod tests {
    use std::format;
    use std::string::{String, ToString};
    use std::vec::Vec;

    use super::*;

    const WINDOW: Duration = Duration::from_secs(300);
    const T: u64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"package":"visualizer","version":"v2-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}"#;
    // B='{"package":"visualizer","version":"v2-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}'
    // printf '%s' "1700000000.$B" | openssl dgst -sha256 -hmac secret
    const BODY_MAC: &str = "9d3c85c268a89af0e3cca7a047d0ab896a38a1c61f490daaab08bfc486b22d6f";

    fn secret() -> Secret {
        Secret::new(b"secret").unwrap()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Standard base64 (the crate's `encode` needs `alloc`).
    fn b64(bytes: &[u8]) -> String {
        let mut out = [0u8; 128];
        let len = STANDARD.encode_slice(bytes, &mut out).unwrap();
        String::from_utf8(out[..len].to_vec()).unwrap()
    }

    fn at(secs: u64) -> UnixTime {
        UnixTime::from_secs(secs)
    }

    fn header(t: &str, mac: &str) -> String {
        format!("t={t},v1={mac}")
    }

    fn verify_at(sig: &LockstepSignature, now: u64) -> Result<Fresh, SignatureError> {
        sig.verify(&secret(), BODY, at(now), WINDOW, &ReplayCache::<4>::new())
    }

    // ---- HMAC ----------------------------------------------------------------------------

    #[test]
    fn test_hmac_rfc4231() {
        // RFC 4231 §4.2–§4.8, HMAC-SHA-256 results.
        let cases: [(Vec<u8>, &[u8], &str); 6] = [
            (
                [0x0b; 20].to_vec(),
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                [0xaa; 20].to_vec(),
                &[0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                (1..=25).collect(),
                &[0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                [0xaa; 131].to_vec(),
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                [0xaa; 131].to_vec(),
                b"This is a test using a larger than block-size key and a larger than block-size \
                  data. The key needs to be hashed before being used by the HMAC algorithm.",
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (key, data, expected) in cases {
            assert_eq!(hex(&hmac_sha256(&key, &[data])), expected);
        }
        // RFC 4231 §4.6 (test case 5): output truncated to 128 bits.
        let mac = hmac_sha256(&[0x0c; 20], &[b"Test With Truncation"]);
        assert_eq!(hex(&mac[..16]), "a3b6167473100ee06e0c796c2955552b");
        // Parts are concatenated.
        assert_eq!(
            hmac_sha256(b"Jefe", &[b"what do ya ", b"", b"want for nothing?"]),
            hmac_sha256(b"Jefe", &[b"what do ya want for nothing?"])
        );
    }

    #[test]
    fn test_hmac_keying_matches_library() {
        // `keyed` derives the block key itself; the library's own keying must agree at every
        // length, across the block size (64) where hashing starts.
        for len in 0..=130 {
            let key: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut ours = keyed(&key);
            let mut theirs = HmacSha256::new_from_slice(&key).unwrap();
            ours.update(b"message");
            theirs.update(b"message");
            assert_eq!(
                ours.finalize().into_bytes(),
                theirs.finalize().into_bytes(),
                "{len}"
            );
        }
    }

    // ---- Secret --------------------------------------------------------------------------

    #[test]
    fn test_parse_secret_lengths() {
        assert_eq!(Secret::new(b"").unwrap_err(), SecretError::Empty);
        assert_eq!(Secret::new(&[7; 128]).unwrap().expose(), &[7; 128]);
        assert_eq!(Secret::new(&[7; 129]).unwrap_err(), SecretError::TooLong);
        assert_eq!(Secret::new(&[7; 1000]).unwrap_err(), SecretError::TooLong);
    }

    #[test]
    fn test_parse_secret_file_contents() {
        let from = |c: &[u8]| Secret::from_file_contents(c).map(|s| s.expose().to_vec());
        assert_eq!(from(b"secret\n").unwrap(), b"secret");
        assert_eq!(from(b"secret\r\n").unwrap(), b"secret");
        assert_eq!(from(b"secret").unwrap(), b"secret");
        // Only one newline is trimmed; nothing else is.
        assert_eq!(from(b"secret\n\n").unwrap(), b"secret\n");
        assert_eq!(from(b" secret \r").unwrap(), b" secret \r");
        assert_eq!(from(b"\n").unwrap_err(), SecretError::Empty);
        assert_eq!(from(b"\r\n").unwrap_err(), SecretError::Empty);
        let mut long = [b'x'; 129].to_vec();
        long[128] = b'\n';
        assert_eq!(from(&long).unwrap().len(), 128);
    }

    #[test]
    fn test_secret_never_printed() {
        let s = Secret::new(b"hunter2-very-secret").unwrap();
        let debug = format!("{s:?}");
        assert_eq!(debug, "Secret(..)");
        assert!(!debug.contains("hunter2"));
        assert!(!SecretError::TooLong.to_string().contains("hunter2"));
    }

    // ---- Bintray scheme ------------------------------------------------------------------

    const BINTRAY_VECTOR: &str = "2un791uBDf59/fHrIOWMqt0mhwEoH0yqkZXmz//4alQ=";

    #[test]
    fn test_verify_bintray_vector() {
        // docs/PROTOCOL.md §1: key `secret`, package `reactive-maps-backend-summary`.
        let package = "reactive-maps-backend-summary";
        assert_eq!(bintray_sign(&secret(), package).as_str(), BINTRAY_VECTOR);
        let mac = BintrayMac::parse(BINTRAY_VECTOR.as_bytes()).unwrap();
        assert_eq!(mac.verify(&secret(), package), Ok(()));
        assert_eq!(
            mac.verify(&secret(), "reactive-maps-backend-summarY"),
            Err(SignatureError::Mismatch)
        );
        let other = Secret::new(b"secreT").unwrap();
        assert_eq!(mac.verify(&other, package), Err(SignatureError::Mismatch));
        // Surrounding whitespace is HTTP's, not the value's.
        let padded = format!(" \t{BINTRAY_VECTOR} ");
        assert_eq!(BintrayMac::parse(padded.as_bytes()), Ok(mac));
    }

    #[test]
    fn test_reject_bintray_base64() {
        let reject = |v: &[u8]| assert_eq!(BintrayMac::parse(v), Err(SignatureError::BadBase64));
        reject(b"");
        reject(b"====");
        // Not base64: a character outside the alphabet, URL-safe alphabet, no padding.
        reject(b"2un791uBDf59/fHrIOWMqt0mhwEoH0yqkZXmz//4al!=");
        reject(b"2un791uBDf59_fHrIOWMqt0mhwEoH0yqkZXmz__4alQ=");
        reject(b"2un791uBDf59/fHrIOWMqt0mhwEoH0yqkZXmz//4alQ");
        // Non-canonical trailing bits.
        reject(b"2un791uBDf59/fHrIOWMqt0mhwEoH0yqkZXmz//4alR=");
        // 31 and 33 bytes.
        reject(b64(&[1u8; 31]).as_bytes());
        reject(b64(&[1u8; 33]).as_bytes());
        reject(b64(&[1u8; 64]).as_bytes());
        assert!(BintrayMac::parse(b64(&[1u8; 32]).as_bytes()).is_ok());
    }

    // ---- lockstep scheme: parsing ----------------------------------------------------------

    #[test]
    fn test_parse_lockstep() {
        let sig = LockstepSignature::parse(header("1700000000", BODY_MAC).as_bytes()).unwrap();
        assert_eq!(sig.timestamp(), T);
        assert_eq!(sig.mac().as_slice(), unhex(BODY_MAC));
        // Any order, unknown keys ignored, spaces and tabs tolerated, uppercase hex.
        let upper = BODY_MAC.to_ascii_uppercase();
        for value in [
            format!("v1={BODY_MAC},t=1700000000"),
            format!("t=1700000000,v0=zz,v1={BODY_MAC},future=1=2,flag"),
            format!(" t=1700000000 ,\tv1={BODY_MAC}\t"),
            format!("t = 1700000000, v1 = {BODY_MAC}"),
            format!("t=1700000000,,v1={upper},"),
        ] {
            assert_eq!(
                LockstepSignature::parse(value.as_bytes()),
                Ok(sig),
                "{value}"
            );
        }
        let max = LockstepSignature::parse(header("18446744073709551615", BODY_MAC).as_bytes());
        assert_eq!(max.unwrap().timestamp(), u64::MAX);
    }

    #[test]
    fn test_reject_lockstep_malformed() {
        use SignatureError::*;
        let m = BODY_MAC;
        let cases: [(String, SignatureError); 18] = [
            (String::new(), MissingTimestamp),
            (format!("v1={m}"), MissingTimestamp),
            (format!("T=1,v1={m}"), MissingTimestamp),
            ("t=1700000000".into(), MissingMac),
            ("t=1700000000,v2=00".into(), MissingMac),
            (header("", m), BadTimestamp),
            (format!("t,v1={m}"), BadTimestamp),
            (header("abc", m), BadTimestamp),
            (header("-1", m), BadTimestamp),
            (header("+1", m), BadTimestamp),
            (header("1 2", m), BadTimestamp),
            (header("000000000000000000001", m), BadTimestamp),
            (header("18446744073709551616", m), BadTimestamp),
            (header("1", &m[..63]), BadMac),
            (header("1", &format!("{m}0")), BadMac),
            (header("1", &format!("{}g", &m[..63])), BadMac),
            (format!("t=1,t=1,v1={m}"), Duplicate),
            (format!("t=1,v1={m},v1={m}"), Duplicate),
        ];
        for (value, expected) in cases {
            let got = LockstepSignature::parse(value.as_bytes());
            assert_eq!(got, Err(expected), "{value}");
            assert_eq!(expected.status(), Status::Unauthorized);
            assert_eq!(expected.reason(), "malformed");
        }
        assert_eq!(LockstepSignature::parse(b"v1=,t=1"), Err(BadMac));
        assert_eq!(LockstepSignature::parse(b"\xff\xfe"), Err(MissingTimestamp));
    }

    // ---- lockstep scheme: verifying --------------------------------------------------------

    #[test]
    fn test_verify_lockstep_vectors() {
        let sig = LockstepSignature::parse(header("1700000000", BODY_MAC).as_bytes()).unwrap();
        assert_eq!(verify_at(&sig, T).unwrap().timestamp(), T);
        assert_eq!(
            lockstep_sign(&secret(), T, BODY).as_str(),
            header("1700000000", BODY_MAC)
        );

        // The digits are covered exactly as sent: leading zeros change the MAC.
        // printf '%s' "0001700000000.$B" | openssl dgst -sha256 -hmac secret
        let zeros = "08249f80a63860bf56ff352a5415d0c97d71f3a9eac76e724610d2681ddd54a5";
        let sig = LockstepSignature::parse(header("0001700000000", zeros).as_bytes()).unwrap();
        assert_eq!(sig.timestamp(), T);
        assert!(verify_at(&sig, T).is_ok());
        let sig = LockstepSignature::parse(header("0001700000000", BODY_MAC).as_bytes()).unwrap();
        assert_eq!(verify_at(&sig, T), Err(SignatureError::Mismatch));

        // An empty body.
        // printf '%s' "1." | openssl dgst -sha256 -hmac lockstep
        let empty = "82a0a6e6905258fc4e44c7ea0f8117c53a95202c53235555bfdf884812b312ff";
        let key = Secret::new(b"lockstep").unwrap();
        assert_eq!(lockstep_sign(&key, 1, b"").as_str(), header("1", empty));
        let sig = LockstepSignature::parse(header("1", empty).as_bytes()).unwrap();
        let cache = ReplayCache::<1>::new();
        assert!(sig.verify(&key, b"", at(1), WINDOW, &cache).is_ok());

        // The longest value fits its buffer.
        let long = lockstep_sign(&key, u64::MAX, b"");
        assert_eq!(long.as_str().len(), LOCKSTEP_HEADER_MAX);
        let sig = LockstepSignature::parse(long.as_str().as_bytes()).unwrap();
        // Its MAC verifies (checked first); no UnixTime reaches that second, hence Stale.
        let err = sig.verify(&key, b"", at(u64::MAX), Duration::MAX, &cache);
        assert_eq!(err, Err(SignatureError::Stale));
    }

    #[test]
    fn test_verify_lockstep_mismatch() {
        let sig = LockstepSignature::parse(header("1700000000", BODY_MAC).as_bytes()).unwrap();
        let other = Secret::new(b"secreT").unwrap();
        let cache = ReplayCache::<1>::new();
        let err = sig.verify(&other, BODY, at(T), WINDOW, &cache);
        assert_eq!(err, Err(SignatureError::Mismatch));
        let mut body = BODY.to_vec();
        body[10] ^= 1;
        let err = sig.verify(&secret(), &body, at(T), WINDOW, &cache);
        assert_eq!(err, Err(SignatureError::Mismatch));
        // Another t with the same MAC does not verify, and the MAC is checked before the window.
        let sig = LockstepSignature::parse(header("1700000001", BODY_MAC).as_bytes()).unwrap();
        assert_eq!(verify_at(&sig, 0), Err(SignatureError::Mismatch));
        assert_eq!(SignatureError::Mismatch.status(), Status::Forbidden);
    }

    #[test]
    fn test_verify_lockstep_window_edges() {
        let sig = LockstepSignature::parse(header("1700000000", BODY_MAC).as_bytes()).unwrap();
        assert!(verify_at(&sig, T + 300).is_ok());
        assert!(verify_at(&sig, T - 300).is_ok());
        assert_eq!(verify_at(&sig, T + 301), Err(SignatureError::Stale));
        assert_eq!(verify_at(&sig, T - 301), Err(SignatureError::Stale));
        // Milliseconds are rounded down to whole seconds.
        let cache = ReplayCache::<1>::new();
        let now = UnixTime::from_millis((T + 300) * 1000 + 999);
        assert!(sig.verify(&secret(), BODY, now, WINDOW, &cache).is_ok());
        // A zero window accepts only the same second.
        assert!(
            sig.verify(&secret(), BODY, at(T), Duration::ZERO, &cache)
                .is_ok()
        );
        let err = sig.verify(&secret(), BODY, at(T + 1), Duration::ZERO, &cache);
        assert_eq!(err, Err(SignatureError::Stale));
        assert_eq!(SignatureError::Stale.status(), Status::Forbidden);
    }

    #[test]
    fn test_verify_lockstep_replayed() {
        let sig = LockstepSignature::parse(header("1700000000", BODY_MAC).as_bytes()).unwrap();
        let mut cache = ReplayCache::<4>::new();
        let fresh = sig.verify(&secret(), BODY, at(T), WINDOW, &cache).unwrap();
        cache.insert(fresh, at(T), WINDOW).unwrap();
        assert!(cache.contains(sig.mac(), at(T + 300), WINDOW));
        for now in [T, T + 1, T + 300] {
            let err = sig.verify(&secret(), BODY, at(now), WINDOW, &cache);
            assert_eq!(err, Err(SignatureError::Replayed));
        }
        // Past the window the entry is gone, and the window refuses the signature instead.
        assert!(!cache.contains(sig.mac(), at(T + 301), WINDOW));
        let err = sig.verify(&secret(), BODY, at(T + 301), WINDOW, &cache);
        assert_eq!(err, Err(SignatureError::Stale));
        // Two identical requests verified before either was recorded: the second insert refuses.
        let mut cache = ReplayCache::<4>::new();
        let first = verify_at_cache(&sig, &cache);
        let second = verify_at_cache(&sig, &cache);
        cache.insert(first, at(T), WINDOW).unwrap();
        assert_eq!(
            cache.insert(second, at(T), WINDOW),
            Err(SignatureError::Replayed)
        );
        assert_eq!(cache.live(at(T), WINDOW), 1);
    }

    fn verify_at_cache<const N: usize>(sig: &LockstepSignature, cache: &ReplayCache<N>) -> Fresh {
        sig.verify(&secret(), BODY, at(T), WINDOW, cache).unwrap()
    }

    // ---- Replay cache ----------------------------------------------------------------------

    #[test]
    fn test_replay_cache_full_then_expiry() {
        let key = secret();
        let mut cache = ReplayCache::<3>::new();
        assert_eq!(cache.capacity(), 3);
        // Signed at T, T+10 and T+20; all accepted at T+20.
        for t in [T, T + 10, T + 20] {
            let value = lockstep_sign(&key, t, BODY);
            let sig = LockstepSignature::parse(value.as_str().as_bytes()).unwrap();
            let fresh = sig.verify(&key, BODY, at(T + 20), WINDOW, &cache).unwrap();
            assert!(cache.has_room(at(T + 20), WINDOW));
            cache.insert(fresh, at(T + 20), WINDOW).unwrap();
        }
        assert_eq!(cache.live(at(T + 20), WINDOW), 3);

        let value = lockstep_sign(&key, T + 30, BODY);
        let sig = LockstepSignature::parse(value.as_str().as_bytes()).unwrap();
        // At exactly T+300 the oldest entry is still live: full, 503.
        let now = at(T + 300);
        assert!(!cache.has_room(now, WINDOW));
        let fresh = sig.verify(&key, BODY, now, WINDOW, &cache).unwrap();
        assert_eq!(
            cache.insert(fresh, now, WINDOW),
            Err(SignatureError::ReplayCacheFull)
        );
        assert_eq!(
            SignatureError::ReplayCacheFull.status(),
            Status::ServiceUnavailable
        );
        assert_eq!(SignatureError::ReplayCacheFull.reason(), "busy");
        assert_eq!(cache.live(now, WINDOW), 3);
        // One second later it has expired and its slot is reused; the others stay.
        let now = at(T + 301);
        assert!(cache.has_room(now, WINDOW));
        assert_eq!(cache.live(now, WINDOW), 2);
        let fresh = sig.verify(&key, BODY, now, WINDOW, &cache).unwrap();
        cache.insert(fresh, now, WINDOW).unwrap();
        assert_eq!(cache.live(now, WINDOW), 3);
        assert!(!cache.has_room(now, WINDOW));
        assert!(cache.contains(sig.mac(), now, WINDOW));
    }

    #[test]
    fn test_replay_cache_zero_capacity() {
        let cache = ReplayCache::<0>::default();
        assert!(!cache.has_room(at(T), WINDOW));
        let sig = LockstepSignature::parse(header("1700000000", BODY_MAC).as_bytes()).unwrap();
        let fresh = verify_at_cache(&sig, &cache);
        let mut cache = cache;
        assert_eq!(
            cache.insert(fresh, at(T), WINDOW),
            Err(SignatureError::ReplayCacheFull)
        );
    }

    // ---- Scheme selection ------------------------------------------------------------------

    #[test]
    fn test_select_precedence() {
        let lockstep = header("1700000000", BODY_MAC);
        let both = Headers {
            bintray: Some(BINTRAY_VECTOR.as_bytes()),
            lockstep: Some(lockstep.as_bytes()),
        };
        let lockstep_sig = LockstepSignature::parse(lockstep.as_bytes()).unwrap();
        let bintray_mac = BintrayMac::parse(BINTRAY_VECTOR.as_bytes()).unwrap();

        assert_eq!(
            select(Schemes::default(), both),
            Ok(Presented::Lockstep(lockstep_sig))
        );
        // A malformed lockstep header is not rescued by a valid Bintray one.
        let bad = Headers {
            lockstep: Some(b"t=1"),
            ..both
        };
        assert_eq!(select(Schemes::BOTH, bad), Err(SignatureError::MissingMac));
        // lockstep disabled: its header, even malformed, is ignored.
        assert_eq!(
            select(Schemes::BINTRAY_ONLY, bad),
            Ok(Presented::Bintray(bintray_mac))
        );
        // Bintray disabled: its header is ignored.
        let only_bintray = Headers {
            bintray: Some(BINTRAY_VECTOR.as_bytes()),
            lockstep: None,
        };
        assert_eq!(
            select(Schemes::LOCKSTEP_ONLY, only_bintray),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            select(Schemes::BOTH, only_bintray),
            Ok(Presented::Bintray(bintray_mac))
        );
        assert_eq!(
            select(Schemes::BOTH, Headers::default()),
            Err(SignatureError::Missing)
        );
        let bad_b64 = Headers {
            bintray: Some(b"nope"),
            lockstep: None,
        };
        assert_eq!(
            select(Schemes::BOTH, bad_b64),
            Err(SignatureError::BadBase64)
        );
        assert_eq!(SignatureError::Missing.status(), Status::Unauthorized);
        assert_eq!(SignatureError::Missing.reason(), "missing");
    }

    #[test]
    fn test_schemes_new() {
        assert_eq!(Schemes::new(true, true), Ok(Schemes::BOTH));
        assert_eq!(Schemes::new(true, false), Ok(Schemes::BINTRAY_ONLY));
        assert_eq!(Schemes::new(false, true), Ok(Schemes::LOCKSTEP_ONLY));
        assert_eq!(Schemes::new(false, false), Err(SchemesError::NoneEnabled));
        assert!(Schemes::default().bintray() && Schemes::default().lockstep());
    }

    #[test]
    fn test_replay_cache_configured_capacity_edge() {
        let secret = Secret::new(b"secret").unwrap();
        let now = UnixTime::from_secs(T);
        let mut cache = ReplayCache::<4>::with_capacity(2);
        assert_eq!(cache.capacity(), 2);
        for n in 0..2u64 {
            let header = lockstep_sign(&secret, T + n, b"x");
            let sig = LockstepSignature::parse(header.as_str().as_bytes()).unwrap();
            let fresh = sig.verify(&secret, b"x", now, WINDOW, &cache).unwrap();
            assert!(cache.has_room(now, WINDOW));
            cache.insert(fresh, now, WINDOW).unwrap();
        }
        // Two of the four slots are in use: full at the configured capacity.
        assert!(!cache.has_room(now, WINDOW));
        let header = lockstep_sign(&secret, T + 2, b"x");
        let sig = LockstepSignature::parse(header.as_str().as_bytes()).unwrap();
        let fresh = sig.verify(&secret, b"x", now, WINDOW, &cache).unwrap();
        assert_eq!(
            cache.insert(fresh, now, WINDOW),
            Err(SignatureError::ReplayCacheFull)
        );
        assert_eq!(ReplayCache::<4>::with_capacity(0).capacity(), 1);
        assert_eq!(ReplayCache::<4>::with_capacity(9).capacity(), 4);
    }
}
