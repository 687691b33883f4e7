//! The error type of tern-cuda: every failure (missing driver or library, driver call, NVRTC
//! compilation, shape mismatch) is a [`CudaError`] naming what failed; nothing in this
//! crate panics on a missing CUDA installation.

/// Errors from the CUDA backend.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// A CUDA shared library (driver, NVRTC, cuBLAS) could not be loaded or lacks a symbol.
    #[error("CUDA {library} is not available: {detail}")]
    Library { library: &'static str, detail: String },
    /// No device with this ordinal.
    #[error("no CUDA device {ordinal}: {count} device(s) present")]
    NoDevice { ordinal: usize, count: usize },
    /// The GPU is older than tern's kernels support.
    #[error("CUDA device {ordinal} ({name}) has compute capability {major}.{minor}; tern needs 8.0 (Ampere) or newer")]
    Arch { ordinal: usize, name: String, major: i32, minor: i32 },
    /// A CUDA driver call failed.
    #[error("CUDA {op} failed: {detail}")]
    Driver { op: &'static str, detail: String },
    /// A cuBLAS call failed.
    #[error("cuBLAS {op} failed: {detail}")]
    Blas { op: &'static str, detail: String },
    /// NVRTC could not compile a kernel module.
    #[error("NVRTC failed to compile kernel module {module} for {arch}: {detail}")]
    Compile { module: &'static str, arch: String, detail: String },
    /// Buffer or matrix sizes that do not fit the operation.
    #[error("{op}: {what}: expected {expected}, found {found}")]
    Shape { op: &'static str, what: &'static str, expected: usize, found: usize },
    /// A weight format or parameter this backend has no kernel for.
    #[error("{0}")]
    Unsupported(String),
}

/// Shorthand result type.
pub type Result<T, E = CudaError> = std::result::Result<T, E>;

impl CudaError {
    pub(crate) fn driver(op: &'static str, e: impl std::fmt::Display) -> CudaError {
        CudaError::Driver { op, detail: e.to_string() }
    }

    pub(crate) fn blas(op: &'static str, e: impl std::fmt::Display) -> CudaError {
        CudaError::Blas { op, detail: e.to_string() }
    }
}

/// Checks `found == expected` for an operation's argument.
pub(crate) fn check(op: &'static str, what: &'static str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(CudaError::Shape { op, what, expected, found })
    }
}

/// Checks `found >= expected` (a buffer at least this long).
pub(crate) fn check_min(op: &'static str, what: &'static str, expected: usize, found: usize) -> Result<()> {
    if found >= expected {
        Ok(())
    } else {
        Err(CudaError::Shape { op, what, expected, found })
    }
}
