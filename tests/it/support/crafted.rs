//! Crafted ed25519 signatures: the edge cases of strict verification
//! (docs/PROTOCOL.md, "Strict verification"), built by hand with curve
//! arithmetic from a known secret, independently of the library.
//!
//! Each builder signs `SIGNING_DOMAIN || payload` the way ed25519 does,
//! `S = r + k·a (mod l)` with `k = SHA-512(R || A || M) mod l`, but lets the
//! test choose the bytes of `R` and `A` and the scalars behind them, so that
//! it can make signatures that one verifier accepts and another refuses.

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use prost::Message;
use sha2::{Digest, Sha512};

use super::wire::{Envelope, SIGNING_DOMAIN};

/// The group order l, little-endian.
pub const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// The identity point encoded with y = p + 1 (p = 2^255 − 19): a
/// non-canonical encoding that decoders which reduce y mod p accept.
pub const IDENTITY_Y_P_PLUS_1: [u8; 32] = {
    let mut b = [0xff; 32];
    b[0] = 0xee;
    b[31] = 0x7f;
    b
};

/// The secret scalar `a` of an ed25519 seed: SHA-512 of the seed, the first
/// half clamped (RFC 8032 §5.1.5).
pub fn secret_scalar(seed: &[u8; 32]) -> Scalar {
    let h = Sha512::digest(seed);
    let mut a = [0u8; 32];
    a.copy_from_slice(&h[..32]);
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    Scalar::from_bytes_mod_order(a)
}

/// The signing input of an envelope.
pub fn signing_input(payload: &[u8]) -> Vec<u8> {
    [SIGNING_DOMAIN, payload].concat()
}

/// `k = SHA-512(R || A || M) mod l`.
pub fn challenge(r: &[u8; 32], a: &[u8; 32], message: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(message);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// A signature whose first half is `r_bytes` (whatever point they encode)
/// and whose `S = r + k·a`: it satisfies `[S]B = [r]B + [k]([a]B)`.
pub fn sign_raw(a: &Scalar, key: &[u8; 32], r: &Scalar, r_bytes: [u8; 32], message: &[u8]) -> [u8; 64] {
    let k = challenge(&r_bytes, key, message);
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r_bytes);
    sig[32..].copy_from_slice(s.as_bytes());
    sig
}

/// A deterministic nonce scalar for test vectors.
pub fn nonce(label: &str, i: u32) -> Scalar {
    let mut h = Sha512::new();
    h.update(b"backchannel crafted nonce\n");
    h.update(label.as_bytes());
    h.update(i.to_le_bytes());
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// The encoded envelope.
pub fn envelope(payload: &[u8], key: [u8; 32], signature: [u8; 64]) -> Vec<u8> {
    Envelope {
        payload: payload.to_vec(),
        public_key: key.to_vec(),
        signature: signature.to_vec(),
    }
    .encode_to_vec()
}

/// `S + l` as a 256-bit integer: the same signature with a non-canonical S.
pub fn add_l(sig: [u8; 64]) -> [u8; 64] {
    let mut out = sig;
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
        out[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0, "S + l fits in 256 bits");
    out
}

/// A point of order 2: (0, −1).
pub fn order_2() -> EdwardsPoint {
    EIGHT_TORSION[4]
}

/// A point of order 8.
pub fn order_8() -> EdwardsPoint {
    EIGHT_TORSION[1]
}

/// The crafted signatures over one payload by the holder of `seed`.
pub struct Crafter {
    pub a: Scalar,
    pub key: [u8; 32],
    pub message: Vec<u8>,
}

impl Crafter {
    pub fn new(seed: &[u8; 32], payload: &[u8]) -> Self {
        let a = secret_scalar(seed);
        Self {
            a,
            key: EdwardsPoint::mul_base(&a).compress().to_bytes(),
            message: signing_input(payload),
        }
    }

    /// R = the identity (small order), S = k·a: the cofactorless equation
    /// holds, so plain (non-strict) verification and batch verification
    /// accept it; strict verification refuses a small-order R.
    pub fn identity_r(&self, r_bytes: [u8; 32]) -> [u8; 64] {
        sign_raw(&self.a, &self.key, &Scalar::ZERO, r_bytes, &self.message)
    }

    /// R = [r]B + T for a torsion point T, S = r + k·a: off by T, so every
    /// single verification refuses it, while batch verification with a
    /// random multiplier z accepts it whenever z·T is the identity.
    pub fn torsion_r(&self, r: &Scalar, t: EdwardsPoint) -> [u8; 64] {
        let r_bytes = (EdwardsPoint::mul_base(r) + t).compress().to_bytes();
        sign_raw(&self.a, &self.key, r, r_bytes, &self.message)
    }
}

/// A key of mixed order, A = [a]B + T (T of order 8), and a signature that
/// strict verification accepts: R = [r]B with the first nonce r = nonce(label,
/// i) for which 8 divides k, so that [k]T vanishes. Returns (key, signature, i).
pub fn mixed_order_key_signature(a: &Scalar, message: &[u8], label: &str) -> ([u8; 32], [u8; 64], u32) {
    let key = (EdwardsPoint::mul_base(a) + order_8()).compress().to_bytes();
    for i in 0.. {
        let r = nonce(label, i);
        let r_bytes = EdwardsPoint::mul_base(&r).compress().to_bytes();
        if challenge(&r_bytes, &key, message).as_bytes()[0].is_multiple_of(8) {
            return (key, sign_raw(a, &key, &r, r_bytes, message), i);
        }
    }
    unreachable!("one nonce in eight works")
}

/// Whether 32 bytes are the canonical encoding of the point they decode to.
pub fn is_canonical(bytes: &[u8; 32]) -> bool {
    CompressedEdwardsY(*bytes)
        .decompress()
        .is_some_and(|p| p.compress().to_bytes() == *bytes)
}

/// The point 32 bytes decode to (y reduced mod p, as ed25519-dalek does).
pub fn point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    CompressedEdwardsY(*bytes).decompress()
}

/// Some 32 bytes that are not the encoding of any curve point.
pub fn not_a_point() -> [u8; 32] {
    (2u8..)
        .map(|y| {
            let mut b = [0u8; 32];
            b[0] = y;
            b
        })
        .find(|b| point(b).is_none())
        .expect("some small y is not on the curve")
}
