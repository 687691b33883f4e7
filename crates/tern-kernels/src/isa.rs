//! Run-time CPU feature detection with an override.
//!
//! The best instruction set is detected once. `TERN_ISA=scalar|avx2|avx512` (environment) or
//! [`set_override`] pins a lower path so tests and benchmarks can compare every path on one CPU.
//! Asking for a path the CPU lacks falls back to the best one it has, never to an illegal instruction.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// Instruction-set levels, ordered from least to most capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust, the reference every other path is tested against.
    Scalar = 0,
    /// x86-64 AVX2 + FMA.
    Avx2 = 1,
    /// x86-64 AVX-512 F/BW/VL with VNNI.
    Avx512Vnni = 2,
}

impl Isa {
    /// The name used by `TERN_ISA` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
        }
    }

    /// Parses a `TERN_ISA` value.
    pub fn parse(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" | "none" => Some(Isa::Scalar),
            "avx2" => Some(Isa::Avx2),
            "avx512" | "avx512vnni" | "avx512_vnni" => Some(Isa::Avx512Vnni),
            _ => None,
        }
    }
}

fn detect_hw() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512vnni")
        {
            return Isa::Avx512Vnni;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Scalar
}

/// The best ISA this CPU supports (ignores overrides).
pub fn hardware() -> Isa {
    static HW: OnceLock<Isa> = OnceLock::new();
    *HW.get_or_init(detect_hw)
}

const UNSET: u8 = u8::MAX;
static OVERRIDE: AtomicU8 = AtomicU8::new(UNSET);

/// Pins the ISA used by kernels (clamped to what the hardware supports). `None` clears the pin.
pub fn set_override(isa: Option<Isa>) {
    OVERRIDE.store(isa.map(|i| i as u8).unwrap_or(UNSET), Ordering::Relaxed);
}

/// The ISA kernels use now: the override or `TERN_ISA` if set (clamped to the hardware), else the best.
pub fn active() -> Isa {
    let hw = hardware();
    let o = OVERRIDE.load(Ordering::Relaxed);
    let wanted = match o {
        0 => Some(Isa::Scalar),
        1 => Some(Isa::Avx2),
        2 => Some(Isa::Avx512Vnni),
        _ => env_override(),
    };
    match wanted {
        Some(w) if w <= hw => w,
        _ => hw,
    }
}

fn env_override() -> Option<Isa> {
    static ENV: OnceLock<Option<Isa>> = OnceLock::new();
    *ENV.get_or_init(|| std::env::var("TERN_ISA").ok().and_then(|v| Isa::parse(&v)))
}
