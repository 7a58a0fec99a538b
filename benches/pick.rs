//! Benchmark input selection shared by the tenant benches: which tenant each operation
//! uses, uniform or Zipf-distributed. A small xorshift generator, not cryptography.
#![allow(dead_code, reason = "each bench uses some of these")]

/// A xorshift64 generator.
pub struct Pick(pub u64);

impl Pick {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `count` tenant indices among `n`: uniform, or Zipf with s = 1 (tenant k used in
/// proportion to 1/k), from a fixed seed per `n`.
pub fn indices(n: usize, zipf: bool, count: usize) -> Vec<usize> {
    let mut p = Pick((0x9e37_79b9_7f4a_7c15 ^ n as u64) | 1);
    if !zipf {
        return (0..count).map(|_| (p.next() % n as u64) as usize).collect();
    }
    let mut cdf = Vec::with_capacity(n);
    let mut acc = 0.0;
    for k in 1..=n {
        acc += 1.0 / k as f64;
        cdf.push(acc);
    }
    (0..count).map(|_| cdf.partition_point(|&c| c < p.unit() * acc).min(n - 1)).collect()
}

/// The load average (1, 5, 15 minutes), for the record: the machine may be shared.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Resident memory of this process in bytes (Linux), 0 where unknown.
pub fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}
