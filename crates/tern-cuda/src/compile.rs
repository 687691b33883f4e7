//! NVRTC compilation of the embedded `.cu` kernel modules to CUBIN, with an on-disk cache.
//!
//! Each module is `kernels/common.cuh` followed by one `.cu` file, compiled for the real
//! architecture of the device (`--gpu-architecture=sm_XY`, so no PTX JIT happens at load time).
//! The CUBIN is cached under `$TERN_CUDA_CACHE`, else `$XDG_CACHE_HOME/tern/cuda`, else
//! `~/.cache/tern/cuda`, in a file named by module, architecture, NVRTC version and a 64-bit FNV-1a
//! hash of the source and options, so a changed kernel, GPU or NVRTC never reuses a stale binary.
//! Cache files are written atomically (temporary file + rename); a cache that cannot be read or
//! written only costs a recompile.

use std::ffi::{c_char, CStr, CString};
use std::path::PathBuf;

use cudarc::nvrtc::sys as nv;

use crate::error::{CudaError, Result};

const COMMON: &str = include_str!("kernels/common.cuh");

/// One kernel module: a name and its `.cu` source.
#[derive(Debug)]
pub(crate) struct Module {
    pub name: &'static str,
    pub src: &'static str,
}

pub(crate) const NORM: Module = Module { name: "norm", src: include_str!("kernels/norm.cu") };
pub(crate) const TERNARY: Module = Module { name: "ternary", src: include_str!("kernels/ternary.cu") };
pub(crate) const QUANT: Module = Module { name: "quant", src: include_str!("kernels/quant.cu") };
pub(crate) const DENSE: Module = Module { name: "dense", src: include_str!("kernels/dense.cu") };
pub(crate) const ATTN: Module = Module { name: "attn", src: include_str!("kernels/attn.cu") };
pub(crate) const OPS: Module = Module { name: "ops", src: include_str!("kernels/ops.cu") };
pub(crate) const IMMA: Module = Module { name: "imma", src: include_str!("kernels/imma.cu") };

/// Every module, for ahead-of-time compilation checks.
pub(crate) const ALL: [&Module; 7] = [&NORM, &TERNARY, &QUANT, &DENSE, &ATTN, &OPS, &IMMA];

/// The full source NVRTC sees for `m`.
pub(crate) fn full_source(m: &Module) -> String {
    format!("{COMMON}\n#line 1 \"{}.cu\"\n{}", m.name, m.src)
}

/// Whether the NVRTC library can be loaded.
pub(crate) fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the candidate library names.
    unsafe { nv::is_culib_present() }
}

fn missing_nvrtc() -> CudaError {
    CudaError::Library {
        library: "NVRTC (libnvrtc.so)",
        detail: "the runtime compiler was not found; install the CUDA toolkit (or the nvidia-cuda-nvrtc wheel) \
                 and add its lib directory to LD_LIBRARY_PATH"
            .into(),
    }
}

/// Runs `f`, turning a panic from cudarc's lazy symbol loading into an error.
pub(crate) fn guard<T>(library: &'static str, f: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let detail = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the library panicked while loading a symbol".into());
        CudaError::Library { library, detail }
    })
}

/// NVRTC's `(major, minor)` version.
pub(crate) fn nvrtc_version() -> Result<(i32, i32)> {
    if !nvrtc_present() {
        return Err(missing_nvrtc());
    }
    guard("NVRTC (libnvrtc.so)", || {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: plain out-parameters.
        let r = unsafe { nv::nvrtcVersion(&mut major, &mut minor) };
        (r == nv::nvrtcResult::NVRTC_SUCCESS).then_some((major, minor))
    })?
    .ok_or_else(|| CudaError::Library { library: "NVRTC (libnvrtc.so)", detail: "nvrtcVersion failed".into() })
}

/// 64-bit FNV-1a.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The kernel cache directory, if one can be named.
pub fn cache_dir() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = nonempty("TERN_CUDA_CACHE") {
        return Some(p);
    }
    if let Some(p) = nonempty("XDG_CACHE_HOME") {
        return Some(p.join("tern").join("cuda"));
    }
    nonempty("HOME").map(|h| h.join(".cache").join("tern").join("cuda"))
}

fn options(arch: (i32, i32)) -> Vec<String> {
    vec![
        format!("--gpu-architecture=sm_{}{}", arch.0, arch.1),
        "--std=c++17".into(),
        "-lineinfo".into(),
        "--fmad=true".into(),
    ]
}

/// Cache file path for `m` on `arch` with NVRTC `ver`.
fn cache_path(m: &Module, arch: (i32, i32), ver: (i32, i32), src: &str) -> Option<PathBuf> {
    let opts = options(arch).join(" ");
    let h = fnv1a(&[src.as_bytes(), opts.as_bytes()]);
    cache_dir().map(|d| d.join(format!("{}-sm{}{}-nvrtc{}.{}-{h:016x}.cubin", m.name, arch.0, arch.1, ver.0, ver.1)))
}

/// A compiled module: the CUBIN and whether it came from the disk cache.
pub(crate) struct Compiled {
    pub cubin: Vec<u8>,
    pub from_cache: bool,
}

/// The CUBIN of `m` for `arch`: from the cache unless `fresh`, else compiled (and cached).
pub(crate) fn cubin(m: &Module, arch: (i32, i32), fresh: bool) -> Result<Compiled> {
    let ver = nvrtc_version()?;
    let src = full_source(m);
    let path = cache_path(m, arch, ver, &src);
    if !fresh {
        if let Some(p) = &path {
            if let Ok(bytes) = std::fs::read(p) {
                if bytes.starts_with(b"\x7fELF") {
                    return Ok(Compiled { cubin: bytes, from_cache: true });
                }
            }
        }
    }
    let cubin = compile(m, &src, &options(arch), arch)?.0;
    if let Some(p) = &path {
        // Best effort: a read-only or full disk only means compiling again next time.
        let _ = write_atomic(p, &cubin);
    }
    Ok(Compiled { cubin, from_cache: false })
}

fn write_atomic(path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("cache path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    let tmp =
        dir.join(format!(".{}.{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("k"), std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn nvrtc_err(r: nv::nvrtcResult) -> String {
    // SAFETY: nvrtcGetErrorString returns a static C string for any result code.
    let p = unsafe { nv::nvrtcGetErrorString(r) };
    if p.is_null() {
        format!("{r:?}")
    } else {
        // SAFETY: non-null static NUL-terminated string.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// Compiles `src` with NVRTC; returns the CUBIN and the compiler log.
pub(crate) fn compile(m: &Module, src: &str, opts: &[String], arch: (i32, i32)) -> Result<(Vec<u8>, String)> {
    if !nvrtc_present() {
        return Err(missing_nvrtc());
    }
    let arch_s = format!("sm_{}{}", arch.0, arch.1);
    let fail = |detail: String| CudaError::Compile { module: m.name, arch: arch_s.clone(), detail };
    let c_src = CString::new(src).map_err(|_| fail("source contains a NUL byte".into()))?;
    let c_name = CString::new(format!("{}.cu", m.name)).map_err(|_| fail("bad module name".into()))?;
    let c_opts: Vec<CString> = opts
        .iter()
        .map(|o| CString::new(o.as_str()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| fail("bad option".into()))?;
    let opt_ptrs: Vec<*const c_char> = c_opts.iter().map(|c| c.as_ptr()).collect();
    guard("NVRTC (libnvrtc.so)", || {
        let mut prog: nv::nvrtcProgram = std::ptr::null_mut();
        // SAFETY: valid NUL-terminated strings that outlive the program; no headers.
        let r = unsafe {
            nv::nvrtcCreateProgram(&mut prog, c_src.as_ptr(), c_name.as_ptr(), 0, std::ptr::null(), std::ptr::null())
        };
        if r != nv::nvrtcResult::NVRTC_SUCCESS {
            return Err(fail(format!("nvrtcCreateProgram: {}", nvrtc_err(r))));
        }
        // SAFETY: `prog` is a live program; option pointers outlive the call.
        let rc = unsafe { nv::nvrtcCompileProgram(prog, opt_ptrs.len() as i32, opt_ptrs.as_ptr()) };
        let log = program_log(prog);
        let out = if rc != nv::nvrtcResult::NVRTC_SUCCESS {
            Err(fail(format!("{}\n{log}", nvrtc_err(rc))))
        } else {
            let mut size = 0usize;
            // SAFETY: live program, out-parameter.
            let r = unsafe { nv::nvrtcGetCUBINSize(prog, &mut size) };
            if r != nv::nvrtcResult::NVRTC_SUCCESS || size == 0 {
                Err(fail(format!("nvrtcGetCUBINSize: {}", nvrtc_err(r))))
            } else {
                let mut buf = vec![0u8; size];
                // SAFETY: `buf` holds the `size` bytes NVRTC reported.
                let r = unsafe { nv::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char) };
                if r != nv::nvrtcResult::NVRTC_SUCCESS {
                    Err(fail(format!("nvrtcGetCUBIN: {}", nvrtc_err(r))))
                } else {
                    Ok((buf, log))
                }
            }
        };
        // SAFETY: destroys the program created above exactly once.
        unsafe { nv::nvrtcDestroyProgram(&mut prog) };
        out
    })?
}

fn program_log(prog: nv::nvrtcProgram) -> String {
    let mut size = 0usize;
    // SAFETY: live program, out-parameter.
    if unsafe { nv::nvrtcGetProgramLogSize(prog, &mut size) } != nv::nvrtcResult::NVRTC_SUCCESS || size == 0 {
        return String::new();
    }
    let mut buf = vec![0u8; size];
    // SAFETY: `buf` holds `size` bytes as NVRTC reported.
    if unsafe { nv::nvrtcGetProgramLog(prog, buf.as_mut_ptr() as *mut c_char) } != nv::nvrtcResult::NVRTC_SUCCESS {
        return String::new();
    }
    String::from_utf8_lossy(&buf).trim_end_matches('\0').trim().to_string()
}

/// Fills the kernel cache with every module for `arch` (no GPU needed, only NVRTC); returns each
/// module's name, whether it was already cached, and its cache file.
pub fn precompile_all(arch: (i32, i32)) -> Result<Vec<(&'static str, bool, Option<PathBuf>)>> {
    let ver = nvrtc_version()?;
    ALL.iter()
        .map(|m| cubin(m, arch, false).map(|c| (m.name, c.from_cache, cache_path(m, arch, ver, &full_source(m)))))
        .collect()
}

/// Compiles one module afresh (bypassing the cache) and returns the seconds NVRTC took.
pub fn time_fresh_compile(name: &str, arch: (i32, i32)) -> Result<f64> {
    let m = ALL
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| CudaError::Unsupported(format!("no kernel module {name}")))?;
    let t = std::time::Instant::now();
    compile(m, &full_source(m), &options(arch), arch)?;
    Ok(t.elapsed().as_secs_f64())
}

/// Compiles every module for `arch` with `--ptxas-options=-v` and returns each module's name and
/// compiler log (registers, spills), without a GPU. Used by tests and tools to check the kernels on
/// machines that only have NVRTC.
pub fn check_all_modules(arch: (i32, i32)) -> Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    let only = std::env::var("TERN_CUDA_CHECK_MODULES").ok();
    for m in ALL.iter().filter(|m| only.as_deref().is_none_or(|o| o.split(',').any(|n| n == m.name))) {
        let mut opts = options(arch);
        opts.push("--ptxas-options=-v".into());
        let (_, log) = compile(m, &full_source(m), &opts, arch)?;
        out.push((m.name, log));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles every module for sm_80 and sm_90 where NVRTC is available (no GPU needed) and
    /// fails on spills; prints a notice and passes where it is not.
    #[test]
    fn all_modules_compile_with_nvrtc() {
        if !nvrtc_present() {
            eprintln!("NOTICE: NVRTC not found; kernel compilation not checked (set LD_LIBRARY_PATH to a libnvrtc.so)");
            return;
        }
        for arch in [(8, 0), (9, 0)] {
            let logs = check_all_modules(arch).unwrap_or_else(|e| panic!("{e}"));
            for (name, log) in logs {
                if std::env::var_os("TERN_CUDA_PTXAS_LOG").is_some() {
                    eprintln!("== {name} sm_{}{}\n{log}", arch.0, arch.1);
                }
                // A few bytes of spill (one pointer) are tolerated; real register pressure is not.
                for line in log.lines().filter(|l| l.contains("spill stores")) {
                    let bytes: usize = line
                        .split("bytes spill stores")
                        .next()
                        .and_then(|p| p.rsplit(',').next())
                        .and_then(|n| n.trim().parse().ok())
                        .unwrap_or(0);
                    assert!(bytes <= 16, "{name} sm_{}{}: {line}", arch.0, arch.1);
                }
            }
        }
    }

    #[test]
    fn hash_changes_with_input() {
        assert_ne!(fnv1a(&[b"a", b"b"]), fnv1a(&[b"ab"]));
        assert_ne!(fnv1a(&[b"x"]), fnv1a(&[b"y"]));
    }

    #[test]
    fn cache_key_names_arch_and_version() {
        let p = cache_path(&NORM, (9, 0), (13, 0), "src");
        if let Some(p) = p {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            assert!(n.starts_with("norm-sm90-nvrtc13.0-") && n.ends_with(".cubin"), "{n}");
            assert_ne!(p, cache_path(&NORM, (8, 0), (13, 0), "src").unwrap());
            assert_ne!(p, cache_path(&NORM, (9, 0), (12, 8), "src").unwrap());
            assert_ne!(p, cache_path(&NORM, (9, 0), (13, 0), "src2").unwrap());
        }
    }
}
