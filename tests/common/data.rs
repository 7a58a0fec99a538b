//! Test data: deterministic pseudo-random bytes, the same on every run and machine.

/// `len` pseudo-random bytes (xorshift64, byte 3 of each state), different for each `seed`:
/// data that neither compresses to nothing nor repeats from chunk to chunk, so a swapped,
/// dropped or duplicated chunk always changes it.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let [_, _, _, byte, ..] = x.to_le_bytes();
            byte
        })
        .collect()
}
