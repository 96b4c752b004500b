//! The `signature` target: both schemes on arbitrary headers, and on signatures the harness
//! makes itself with a known key (the verifier has no fuzzing bypass).

use crate::signature::{
    BintrayMac, Headers, LockstepSignature, Presented, ReplayCache, Schemes, Secret,
    SignatureError, bintray_sign, lockstep_sign, select,
};
use crate::status::Status;
use crate::time::{Duration, UnixTime};

const WINDOW: Duration = Duration::from_secs(300);
const MAX_BODY: usize = 256;

/// Input layout (missing bytes read as zero):
/// - bytes 0..8: `t`, u64 little-endian;
/// - bytes 8..10: i16 little-endian, shifted right by 6: `now − t` in seconds, −512..=511, so
///   both window edges (±300, ±301) are reachable;
/// - byte 10: which byte of the signed MAC and of the body to flip;
/// - byte 11: where the rest splits into a raw `X-Lockstep-Signature` (before) and a raw
///   `X-Bintray-Hook-Hmac` (after);
/// - bytes 12..: the rest: the body (its first 256 bytes) and, if UTF-8, the package name.
pub fn signature(data: &[u8]) {
    let Ok(secret) = Secret::new(b"fuzz-secret") else {
        return;
    };
    let (head, rest) = data.split_at(data.len().min(12));
    let byte = |i: usize| head.get(i).copied().unwrap_or(0);
    let t = u64::from_le_bytes(core::array::from_fn(byte));
    let offset = i16::from_le_bytes([byte(8), byte(9)]).wrapping_shr(6);
    let now = UnixTime::from_secs(t.saturating_add_signed(i64::from(offset)));
    let flip = usize::from(byte(10));
    let package = core::str::from_utf8(rest).unwrap_or("fuzz");

    // Arbitrary headers, under every configuration: only 401s before verifying; no panic.
    let (raw_lockstep, raw_bintray) = rest
        .split_at_checked(usize::from(byte(11)))
        .unwrap_or((rest, &[]));
    let headers = Headers {
        bintray: Some(raw_bintray),
        lockstep: Some(raw_lockstep),
    };
    let mut cache = ReplayCache::<2>::new();
    for schemes in [Schemes::BOTH, Schemes::BINTRAY_ONLY, Schemes::LOCKSTEP_ONLY] {
        match select(schemes, headers) {
            Ok(Presented::Lockstep(sig)) => {
                if let Ok(fresh) = sig.verify(&secret, rest, now, WINDOW, &cache) {
                    let _ = cache.insert(fresh, now, WINDOW);
                }
            }
            Ok(Presented::Bintray(mac)) => {
                let _ = mac.verify(&secret, package);
            }
            Err(e) => assert_eq!(e.status(), Status::Unauthorized),
        }
    }

    // Signed by the harness: accepted exactly within the window, once.
    let mut body_buf = [0u8; MAX_BODY];
    let (body, _) = body_buf.split_at_mut(rest.len().min(MAX_BODY));
    body.iter_mut().zip(rest).for_each(|(dst, src)| *dst = *src);
    let value = lockstep_sign(&secret, t, body);
    let signed = value.as_str().as_bytes();
    let check = |header: &[u8], body: &[u8], cache: &ReplayCache<1>| {
        LockstepSignature::parse(header)
            .and_then(|sig| sig.verify(&secret, body, now, WINDOW, cache))
    };
    let mut cache = ReplayCache::<1>::new();
    let in_window = now.as_secs().abs_diff(t) <= WINDOW.as_secs();
    match check(signed, body, &cache) {
        Ok(fresh) => {
            assert!(in_window);
            assert_eq!(cache.insert(fresh, now, WINDOW), Ok(()));
            assert_eq!(check(signed, body, &cache), Err(SignatureError::Replayed));
        }
        Err(e) => assert!(!in_window && e == SignatureError::Stale),
    }

    // One byte changed in the MAC's hex or in the body: the MAC, checked first, refuses it.
    let mut tampered = [0u8; 90];
    // A header longer than the longest one would be cut here, and fail to verify.
    let (tampered, _) = tampered.split_at_mut(signed.len().min(90));
    tampered
        .iter_mut()
        .zip(signed)
        .for_each(|(dst, src)| *dst = *src);
    if let Some(c) = tampered.get_mut(signed.len().saturating_sub(64).saturating_add(flip & 63)) {
        *c = if *c == b'0' { b'1' } else { b'0' };
    }
    assert_eq!(check(tampered, body, &cache), Err(SignatureError::Mismatch));
    if let Some(b) = flip.checked_rem(body.len()).and_then(|i| body.get_mut(i)) {
        *b = !*b;
        assert_eq!(check(signed, body, &cache), Err(SignatureError::Mismatch));
    }

    // Bintray: its own MAC verifies; a package one character shorter does not.
    let mac = BintrayMac::parse(bintray_sign(&secret, package).as_str().as_bytes());
    assert_eq!(mac.and_then(|mac| mac.verify(&secret, package)), Ok(()));
    let mut shorter = package.chars();
    if shorter.next_back().is_some() {
        assert_eq!(
            mac.and_then(|mac| mac.verify(&secret, shorter.as_str())),
            Err(SignatureError::Mismatch)
        );
    }
}
