//! Memory-read bandwidth probe: the ceiling decode kernels are measured against (`tern bench
//! --bandwidth`).
//!
//! [`read_all`] streams a buffer once through the thread pool, each task XOR-folding its contiguous
//! share with 64-byte loads (AVX-512, or AVX2 / portable u64 loads) into a checksum so the reads
//! cannot be optimized away. The work split is the pool's [`ThreadPool::for_range`], the same the
//! matrix kernels use, so the number is what this pool can pull from memory.

use crate::isa::Isa;
use crate::pool::ThreadPool;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes per task unit (the split is in multiples of this).
const UNIT: usize = 64 * 1024;

/// Reads every byte of `data` once on `pool`; returns an XOR checksum of its 64-bit words (the
/// trailing `len % 8` bytes are folded in one at a time).
pub fn read_all(pool: &ThreadPool, data: &[u8]) -> u64 {
    let isa = crate::simd::level();
    let acc = AtomicU64::new(0);
    let units = data.len().div_ceil(UNIT);
    pool.for_range(units, 1, &|u0, u1| {
        let chunk = &data[u0 * UNIT..(u1 * UNIT).min(data.len())];
        acc.fetch_xor(fold(isa, chunk), Ordering::Relaxed);
    });
    acc.into_inner()
}

/// XOR of the 64-bit little-endian words of `chunk` (tail bytes shifted in one by one).
fn fold(isa: Isa, chunk: &[u8]) -> u64 {
    let n64 = chunk.len() / 64 * 64;
    let (body, tail) = chunk.split_at(n64);
    let mut h = match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` only returns paths this CPU supports.
        Isa::Avx512Vnni => unsafe { fold_avx512(body) },
        _ => fold_portable(body),
    };
    let mut words = tail.chunks_exact(8);
    for w in &mut words {
        h ^= u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
    }
    for (i, &b) in words.remainder().iter().enumerate() {
        h ^= u64::from(b) << (8 * i);
    }
    h
}

fn fold_portable(body: &[u8]) -> u64 {
    let mut acc = [0u64; 8];
    for line in body.chunks_exact(64) {
        for (a, w) in acc.iter_mut().zip(line.chunks_exact(8)) {
            *a ^= u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        }
    }
    acc.iter().fold(0, |h, &a| h ^ a)
}

/// `body.len()` must be a multiple of 64.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fold_avx512(body: &[u8]) -> u64 {
    use core::arch::x86_64::*;
    let lines = body.len() / 64;
    let p = body.as_ptr();
    let mut a = [_mm512_setzero_si512(); 4];
    let mut i = 0;
    while i + 4 <= lines {
        for (j, acc) in a.iter_mut().enumerate() {
            // SAFETY: line i + j < lines: its 64 bytes are inside `body`.
            let v = unsafe { _mm512_loadu_si512(p.add((i + j) * 64).cast()) };
            *acc = _mm512_xor_si512(*acc, v);
        }
        i += 4;
    }
    while i < lines {
        // SAFETY: line i < lines.
        let v = unsafe { _mm512_loadu_si512(p.add(i * 64).cast()) };
        a[0] = _mm512_xor_si512(a[0], v);
        i += 1;
    }
    let v = _mm512_xor_si512(_mm512_xor_si512(a[0], a[1]), _mm512_xor_si512(a[2], a[3]));
    let mut w = [0u64; 8];
    // SAFETY: `w` holds 64 bytes.
    unsafe { _mm512_storeu_si512(w.as_mut_ptr().cast(), v) };
    w.iter().fold(0, |h, &x| h ^ x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_the_xor_of_words() {
        let pool = ThreadPool::new(3);
        for len in [0usize, 5, 64, 1000, UNIT * 3 + 77] {
            let data: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
            let mut want = 0u64;
            let mut words = data.chunks_exact(8);
            for w in &mut words {
                want ^= u64::from_le_bytes(w.try_into().unwrap());
            }
            // Tail bytes are folded per task chunk; chunks are multiples of UNIT, so only the global
            // tail is partial.
            for (i, &b) in words.remainder().iter().enumerate() {
                want ^= u64::from(b) << (8 * i);
            }
            assert_eq!(read_all(&pool, &data), want, "len {len}");
            assert_eq!(fold(Isa::Scalar, &data), want, "len {len}");
        }
    }
}
