//! [`CudaDevice`]: one GPU, its CUDA context and stream, lazily compiled kernel modules, and
//! device buffers ([`DeviceBuf`]).
//!
//! Loading: cudarc is built with `dynamic-loading`, so `libcuda.so`, `libnvrtc.so` and
//! `libcublas.so` are opened at run time. [`CudaDevice::new`] first checks that the driver and NVRTC
//! libraries can be opened, then creates the context inside `catch_unwind`, so a machine without
//! CUDA (or with a driver lacking a symbol) gets a [`CudaError::Library`] instead of a panic.
//!
//! Streams: everything runs on one non-default stream owned by the device (capturable into CUDA
//! graphs); cudarc's per-buffer event tracking is disabled because there is only one stream.
//! Kernel arguments are passed as raw device addresses, so operations that work in place (RMSNorm,
//! RoPE) can read and write the same buffer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::{
    sys as cu, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig,
    ValidAsZeroBits,
};

use crate::compile::{self, Module};
use crate::error::{CudaError, Result};

const DRIVER_LIB: &str = "driver (libcuda.so)";

/// What [`CudaDevice::new`] found out about the GPU.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    /// Compute capability `(major, minor)`; kernels are compiled for `sm_{major}{minor}`.
    pub arch: (i32, i32),
    pub total_mem: usize,
    pub sm_count: i32,
    pub l2_bytes: i32,
    /// `cuDriverGetVersion`, e.g. 13000 for CUDA 13.0.
    pub driver_version: i32,
    /// NVRTC `(major, minor)`.
    pub nvrtc_version: (i32, i32),
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cuda:{} {} (sm_{}{}, {} SMs, {:.1} GiB, driver {}.{}, NVRTC {}.{})",
            self.ordinal,
            self.name,
            self.arch.0,
            self.arch.1,
            self.sm_count,
            self.total_mem as f64 / (1u64 << 30) as f64,
            self.driver_version / 1000,
            self.driver_version % 1000 / 10,
            self.nvrtc_version.0,
            self.nvrtc_version.1
        )
    }
}

struct Inner {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    info: DeviceInfo,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    funcs: Mutex<HashMap<&'static str, CudaFunction>>,
    blas: Mutex<Option<crate::blas::Blas>>,
    /// Split-K partial sums and tile counters of the tensor-core GEMM, allocated once (fixed size).
    splitk: Mutex<Option<SplitK>>,
    /// Counts dropped buffers of this device (see [`CudaDevice::free_epoch`]).
    freed: Arc<AtomicU64>,
    /// Counts allocations (see [`CudaDevice::alloc_count`]).
    allocs: AtomicU64,
}

/// Scratch of the split-K GEMM: `part` holds the int32 partial sums of every split, `counters` one
/// arrival counter per output tile (zero between calls).
pub(crate) struct SplitK {
    pub(crate) part: DeviceBuf<i32>,
    pub(crate) counters: DeviceBuf<i32>,
}

/// Elements of the split-K partial-sum buffer (splits × tokens × rows of the largest split GEMM;
/// 16 MiB).
pub(crate) const SPLITK_ELEMS: usize = 1 << 22;
/// Tiles of the split-K counter buffer.
pub(crate) const SPLITK_TILES: usize = 1 << 16;

/// One CUDA GPU with its stream; cheap to clone (shared handle).
#[derive(Clone)]
pub struct CudaDevice {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaDevice({})", self.inner.info)
    }
}

/// Whether the CUDA driver library can be opened (no GPU check).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the candidate library names.
    unsafe { cu::is_culib_present() }
}

/// Number of CUDA devices, or an error when the driver is missing or fails to initialise.
pub fn device_count() -> Result<usize> {
    if !driver_present() {
        return Err(missing_driver());
    }
    let n = compile::guard(DRIVER_LIB, || {
        cudarc::driver::result::init()?;
        CudaContext::device_count()
    })?
    .map_err(|e| CudaError::driver("cuInit/cuDeviceGetCount", e))?;
    Ok(n.max(0) as usize)
}

fn missing_driver() -> CudaError {
    CudaError::Library {
        library: DRIVER_LIB,
        detail: "no NVIDIA driver library was found (is this a machine with an NVIDIA GPU and driver installed?)"
            .into(),
    }
}

impl CudaDevice {
    /// Opens GPU `ordinal`: checks the driver and NVRTC, creates the context and a stream, and
    /// reads the device's properties. Kernels are compiled on first use.
    pub fn new(ordinal: usize) -> Result<CudaDevice> {
        let count = device_count()?;
        if ordinal >= count {
            return Err(CudaError::NoDevice { ordinal, count });
        }
        let nvrtc_version = compile::nvrtc_version()?;
        let ctx = compile::guard(DRIVER_LIB, || CudaContext::new(ordinal))?
            .map_err(|e| CudaError::driver("context creation", e))?;
        // SAFETY: this crate uses a single stream per device, so no cross-stream tracking is needed;
        // buffers are created after this call.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| CudaError::driver("cuStreamCreate", e))?;
        let attr =
            |a: cu::CUdevice_attribute| ctx.attribute(a).map_err(|e| CudaError::driver("cuDeviceGetAttribute", e));
        let major = attr(cu::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let minor = attr(cu::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        let sm_count = attr(cu::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
        let l2_bytes = attr(cu::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?;
        let name = ctx.name().map_err(|e| CudaError::driver("cuDeviceGetName", e))?;
        if major < 8 {
            return Err(CudaError::Arch { ordinal, name, major, minor });
        }
        let total_mem = ctx.total_mem().map_err(|e| CudaError::driver("cuDeviceTotalMem", e))?;
        let mut driver_version = 0i32;
        // SAFETY: out-parameter; the driver library is loaded (the context exists).
        unsafe { cu::cuDriverGetVersion(&mut driver_version) };
        let info = DeviceInfo {
            ordinal,
            name,
            arch: (major, minor),
            total_mem,
            sm_count,
            l2_bytes,
            driver_version,
            nvrtc_version,
        };
        Ok(CudaDevice {
            inner: Arc::new(Inner {
                ctx,
                stream,
                info,
                modules: Mutex::new(HashMap::new()),
                funcs: Mutex::new(HashMap::new()),
                blas: Mutex::new(None),
                splitk: Mutex::new(None),
                freed: Arc::new(AtomicU64::new(0)),
                allocs: AtomicU64::new(0),
            }),
        })
    }

    /// The device's properties.
    pub fn info(&self) -> &DeviceInfo {
        &self.inner.info
    }

    /// The cudarc context (for graph capture, events and other work this crate does not wrap).
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.inner.ctx
    }

    /// The stream every operation of this device is queued on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.inner.stream
    }

    /// Waits until all queued work has finished; reports asynchronous kernel errors.
    pub fn synchronize(&self) -> Result<()> {
        self.inner.stream.synchronize().map_err(|e| CudaError::driver("cuStreamSynchronize", e))
    }

    /// Compiles (or loads from the cache) every kernel module now, instead of on first use.
    pub fn warm_up(&self) -> Result<()> {
        for m in compile::ALL {
            self.module(m)?;
        }
        Ok(())
    }

    fn module(&self, m: &'static Module) -> Result<Arc<CudaModule>> {
        let mut mods = self.inner.modules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(md) = mods.get(m.name) {
            return Ok(md.clone());
        }
        let arch = self.inner.info.arch;
        let c = compile::cubin(m, arch, false)?;
        let load = |bytes: Vec<u8>| self.inner.ctx.load_module(cudarc::nvrtc::Ptx::from_binary(bytes));
        let md = match load(c.cubin) {
            Ok(md) => md,
            // A corrupt or foreign cache file: compile afresh (this also rewrites the cache).
            Err(_) if c.from_cache => {
                let c = compile::cubin(m, arch, true)?;
                load(c.cubin).map_err(|e| CudaError::driver("cuModuleLoadData", e))?
            }
            Err(e) => return Err(CudaError::driver("cuModuleLoadData", e)),
        };
        mods.insert(m.name, md.clone());
        Ok(md)
    }

    pub(crate) fn blas_slot(&self) -> &Mutex<Option<crate::blas::Blas>> {
        &self.inner.blas
    }

    /// The split-K scratch, allocated (zeroed) on first use; its addresses never change afterwards.
    pub(crate) fn splitk_addrs(&self) -> Result<(u64, u64)> {
        let mut slot = self.inner.splitk.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(SplitK { part: self.alloc(SPLITK_ELEMS)?, counters: self.alloc(SPLITK_TILES)? });
        }
        let sk = slot.as_ref().ok_or_else(|| CudaError::Unsupported("split-K scratch missing".into()))?;
        Ok((sk.part.device_addr(), sk.counters.device_addr()))
    }

    /// How many buffers of this device have been freed so far. A CUDA graph bakes in the addresses
    /// of the buffers it was captured with; while this number is unchanged none of them can have
    /// been freed, so replaying it is safe.
    pub fn free_epoch(&self) -> u64 {
        self.inner.freed.load(Ordering::Acquire)
    }

    /// How many buffers of this device have been allocated so far (a capture during which this
    /// changes allocated inside the graph's recording and should be discarded).
    pub fn alloc_count(&self) -> u64 {
        self.inner.allocs.load(Ordering::Acquire)
    }

    /// The kernel `name` of module `m`.
    pub(crate) fn func(&self, m: &'static Module, name: &'static str) -> Result<CudaFunction> {
        if let Some(f) = self.inner.funcs.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Ok(f.clone());
        }
        let md = self.module(m)?;
        let f = md.load_function(name).map_err(|e| CudaError::driver("cuModuleGetFunction", e))?;
        self.inner.funcs.lock().unwrap_or_else(|p| p.into_inner()).insert(name, f.clone());
        Ok(f)
    }

    /// Launches `f` with raw kernel arguments (`args` point at the argument values).
    ///
    /// # Safety
    /// The arguments must match the kernel's parameter list in number, order and size, and every
    /// device address must be valid for the accesses the kernel makes with the given sizes.
    pub(crate) unsafe fn launch_raw(
        &self,
        f: &CudaFunction,
        cfg: LaunchConfig,
        args: &mut [*mut std::ffi::c_void],
    ) -> Result<()> {
        let stream = &self.inner.stream;
        self.inner.ctx.bind_to_thread().map_err(|e| CudaError::driver("cuCtxSetCurrent", e))?;
        // SAFETY: forwarded to the caller.
        unsafe {
            cudarc::driver::result::launch_kernel(
                f.cu_function(),
                cfg.grid_dim,
                cfg.block_dim,
                cfg.shared_mem_bytes,
                stream.cu_stream(),
                args,
            )
        }
        .map_err(|e| CudaError::driver("cuLaunchKernel", e))
    }

    // ---- buffers ----------------------------------------------------------------------------

    /// A zero-filled buffer of `len` elements.
    pub fn alloc<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> Result<DeviceBuf<T>> {
        self.inner.allocs.fetch_add(1, Ordering::AcqRel);
        let slice = self.inner.stream.alloc_zeros::<T>(len.max(1)).map_err(|e| CudaError::driver("cuMemAlloc", e))?;
        Ok(DeviceBuf { slice, len, freed: self.inner.freed.clone() })
    }

    /// A buffer holding a copy of `data`.
    pub fn upload<T: DeviceRepr + ValidAsZeroBits>(&self, data: &[T]) -> Result<DeviceBuf<T>> {
        if data.is_empty() {
            return self.alloc(0);
        }
        self.inner.allocs.fetch_add(1, Ordering::AcqRel);
        let slice = self.inner.stream.clone_htod(data).map_err(|e| CudaError::driver("cuMemcpyHtoD", e))?;
        Ok(DeviceBuf { slice, len: data.len(), freed: self.inner.freed.clone() })
    }

    /// Copies `data` into the start of `buf`.
    pub fn write<T: DeviceRepr>(&self, data: &[T], buf: &mut DeviceBuf<T>) -> Result<()> {
        crate::error::check_min("write", "buffer length", data.len(), buf.len)?;
        if data.is_empty() {
            return Ok(());
        }
        let mut view = buf.slice.slice_mut(..data.len());
        self.inner.stream.memcpy_htod(data, &mut view).map_err(|e| CudaError::driver("cuMemcpyHtoD", e))
    }

    /// Copies the whole buffer to the host (waits for queued work).
    pub fn download<T: DeviceRepr + Default + Clone>(&self, buf: &DeviceBuf<T>) -> Result<Vec<T>> {
        let mut out = vec![T::default(); buf.len];
        self.download_into(buf, &mut out)?;
        Ok(out)
    }

    /// Copies the first `out.len()` elements of `buf` to `out` (waits for queued work).
    pub fn download_into<T: DeviceRepr>(&self, buf: &DeviceBuf<T>, out: &mut [T]) -> Result<()> {
        crate::error::check_min("download", "buffer length", out.len(), buf.len)?;
        if out.is_empty() {
            return Ok(());
        }
        let view = buf.slice.slice(..out.len());
        self.inner.stream.memcpy_dtoh(&view, out).map_err(|e| CudaError::driver("cuMemcpyDtoH", e))?;
        self.synchronize()
    }

    /// Device-to-device copy of `src` into the start of `dst`.
    pub fn copy<T>(&self, src: &DeviceBuf<T>, dst: &mut DeviceBuf<T>) -> Result<()> {
        crate::error::check_min("copy", "destination length", src.len, dst.len)?;
        if src.len == 0 {
            return Ok(());
        }
        let s = src.slice.slice(..src.len);
        let mut d = dst.slice.slice_mut(..src.len);
        self.inner.stream.memcpy_dtod(&s, &mut d).map_err(|e| CudaError::driver("cuMemcpyDtoD", e))
    }

    /// Device-to-device copy of `len` elements from `src[src_off..]` to `dst[dst_off..]` (stream
    /// ordered; used to gather rows of a batch).
    pub fn copy_range<T>(
        &self,
        src: &DeviceBuf<T>,
        src_off: usize,
        dst: &mut DeviceBuf<T>,
        dst_off: usize,
        len: usize,
    ) -> Result<()> {
        let end = |o: usize| o.saturating_add(len);
        crate::error::check_min("copy_range", "source length", end(src_off), src.len)?;
        crate::error::check_min("copy_range", "destination length", end(dst_off), dst.len)?;
        if len == 0 {
            return Ok(());
        }
        let s = src.slice.slice(src_off..src_off + len);
        let mut d = dst.slice.slice_mut(dst_off..dst_off + len);
        self.inner.stream.memcpy_dtod(&s, &mut d).map_err(|e| CudaError::driver("cuMemcpyDtoD", e))
    }

    /// Copies `data` into `buf[off..off + data.len()]`.
    pub fn write_at<T: DeviceRepr>(&self, data: &[T], buf: &mut DeviceBuf<T>, off: usize) -> Result<()> {
        let end = off.saturating_add(data.len());
        crate::error::check_min("write_at", "buffer length", end, buf.len)?;
        if data.is_empty() {
            return Ok(());
        }
        let mut view = buf.slice.slice_mut(off..end);
        self.inner.stream.memcpy_htod(data, &mut view).map_err(|e| CudaError::driver("cuMemcpyHtoD", e))
    }

    /// Records the work `f` queues on the device's stream into a CUDA graph instead of running it
    /// (relaxed capture mode). Compile kernels first ([`CudaDevice::warm_up`]) and allocate every
    /// buffer before capturing. Kernels that read `pos0` from device memory (RoPE, attention) can
    /// be replayed at any position.
    pub fn capture(&self, f: impl FnOnce() -> Result<()>) -> Result<Graph> {
        let stream = &self.inner.stream;
        stream
            .begin_capture(cu::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
            .map_err(|e| CudaError::driver("cuStreamBeginCapture", e))?;
        let res = f();
        let graph =
            stream.end_capture(cu::CUgraphInstantiate_flags(0)).map_err(|e| CudaError::driver("cuStreamEndCapture", e));
        res?;
        graph?.map(|g| Graph { g }).ok_or_else(|| CudaError::driver("cuStreamEndCapture", "nothing was captured"))
    }

    /// A timing event (recorded on the device's stream with [`CudaDevice::record`]).
    pub fn event(&self) -> Result<cudarc::driver::CudaEvent> {
        self.inner
            .ctx
            .new_event(Some(cu::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| CudaError::driver("cuEventCreate", e))
    }

    /// Records `ev` on the device's stream.
    pub fn record(&self, ev: &cudarc::driver::CudaEvent) -> Result<()> {
        ev.record(&self.inner.stream).map_err(|e| CudaError::driver("cuEventRecord", e))
    }

    /// Free and total device memory in bytes.
    pub fn mem_info(&self) -> Result<(usize, usize)> {
        self.inner.ctx.mem_get_info().map_err(|e| CudaError::driver("cuMemGetInfo", e))
    }
}

/// A captured CUDA graph (see [`CudaDevice::capture`]).
pub struct Graph {
    g: cudarc::driver::CudaGraph,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Graph")
    }
}

impl Graph {
    /// Queues one replay of the graph on the stream it was captured from.
    pub fn replay(&self) -> Result<()> {
        self.g.launch().map_err(|e| CudaError::driver("cuGraphLaunch", e))
    }
}

/// A device buffer of `len` elements of `T`.
pub struct DeviceBuf<T> {
    pub(crate) slice: CudaSlice<T>,
    len: usize,
    freed: Arc<AtomicU64>,
}

impl<T> Drop for DeviceBuf<T> {
    fn drop(&mut self) {
        // The memory itself is released by `slice`'s own drop, after this.
        self.freed.fetch_add(1, Ordering::AcqRel);
    }
}

impl<T> std::fmt::Debug for DeviceBuf<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceBuf<{}>({})", std::any::type_name::<T>(), self.len)
    }
}

impl<T> DeviceBuf<T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw device address (for kernels of the caller's own; valid while `self` lives).
    pub fn device_addr(&self) -> u64 {
        let (p, _sync) = self.slice.device_ptr(self.slice.stream());
        p
    }

    /// The device address of element `i` (may equal `len`, for an end pointer).
    pub(crate) fn addr_at(&self, i: usize) -> u64 {
        self.device_addr() + (i * std::mem::size_of::<T>()) as u64
    }
}
