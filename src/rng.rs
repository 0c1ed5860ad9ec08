//! A small seeded random-number generator and reproducible node keys,
//! shared by the mesh lab and the simulation; a leaf module.

/// A small seeded generator (SplitMix64): reproducible runs without a
/// dependency on a random-number crate's stream stability.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A reproducible secret key for node `index` of a lab seeded with `seed`.
pub fn secret(seed: u64, index: usize) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"backchannel-lab");
    h.update(seed.to_be_bytes());
    h.update((index as u64).to_be_bytes());
    h.finalize().into()
}
