//! The CUDA executor of the plan (cargo feature `cuda`): the same [`Plan`] the CPU interprets, run
//! with tern-cuda's kernels on device buffers.
//!
//! * Weights are uploaded once in their packed formats ([`tern_cuda::CudaLinear`]: T2 ternary, ggml
//!   blocks, dense); norms as f32. A tied head shares the embedding upload.
//! * Activations live in one device buffer per [`Buf`], grown to the largest row count seen; int8
//!   activations of ternary layers in one buffer per padded width.
//! * Fusions, rewrites of the plan made once at construction ([`XOp`]; the fixture tests check them
//!   against the unfused CPU executor):
//!   - `RmsNorm X → Xn` + the ternary `Linear`s reading `Xn` (q / k / v, gate / up) → one fused
//!     RMSNorm + int8 quantization kernel and one `ternary_gemv_many` launch (`Xn` itself is written
//!     only if a later op reads it);
//!   - `Glu` + `RmsNorm Gate` (BitNet's FFN sub-norm) + ternary `down` → one GLU + norm + quantize
//!     kernel and the GEMV;
//!   - `Linear → O` followed by `Add X += O` → the projection accumulates into `X`;
//!   - `Rope q` + `Rope k` + `Attention` → one RoPE + KV-write kernel and flash-decoding attention
//!     for all sequences of the batch at once, through per-row (sequence, position) tables and
//!     per-sequence cache addresses ([`tern_cuda::BatchTables`]).
//! * Decode steps (every sequence of the call has exactly one new token, no length-dependent RoPE)
//!   are captured as CUDA graphs, one per (rows, context bucket of [`GRAPH_BUCKET`] positions), and
//!   replayed: the step's only host work is one upload of the batch tables, one of the token ids,
//!   the graph launch and the logits download. Positions and cache addresses are read from the
//!   tables on the device, so a graph serves any sequences; a graph is dropped whenever a device
//!   buffer has been freed since its capture ([`tern_cuda::CudaDevice::free_epoch`]). The first step
//!   of a new shape runs eagerly (allocating whatever it needs); the second is captured. Set
//!   `TERN_CUDA_GRAPHS=0` to run every step eagerly.
//! * RoPE tables are `[position][rot/2]` on the device, covering the largest cache capacity seen;
//!   `dynamic` RoPE (frequencies depend on the sequence length) rewrites the table rows of each call
//!   and takes the per-sequence attention path without graphs.
//! * KV caches live on the device ([`CudaKv`]), allocated by the first call that runs a sequence.
//!   Only logits come back to the host.

use std::collections::{HashMap, HashSet};

use crate::linear::{Linear, LinearWeight, TernaryScale};
use crate::model::{KvCache, KvStore, Logits, Model, SeqInput};
use crate::plan::{last_rows, two, Buf, LinRef, NormRef, Op, Plan};
use crate::{ModelError, Result};
use tern_cuda::{
    AttnDims, AttnScratch, BatchTables, CudaDense, CudaDevice, CudaLinear, CudaQuant, CudaTernary, CudaWeight,
    DeviceBuf, Graph, I8Acts, LinearScratch, Norm, Rope as RopeTables, ScaleMode, SeqTable, TernaryPart,
};
use tern_kernels::ops::Activation;

/// Decode graphs are captured per context bucket of this many positions (the attention grid is
/// sized for the bucket's end; shorter contexts skip the empty key ranges).
pub const GRAPH_BUCKET: usize = 256;

/// Most graphs kept at once (oldest dropped first).
const MAX_GRAPHS: usize = 32;

fn cu(e: tern_cuda::CudaError) -> ModelError {
    ModelError::Device(e.to_string())
}

/// A sequence's KV cache on the device: per layer `[kv_head][position][head_dim]` f32, and the
/// one-element device buffer holding the sequence's first new position for the per-sequence path.
#[derive(Debug)]
pub struct CudaKv {
    k: Vec<DeviceBuf<f32>>,
    v: Vec<DeviceBuf<f32>>,
    pos0: DeviceBuf<i32>,
}

/// Where a fused quantization takes its RMSNorm weight from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum QNorm {
    /// A norm of the plan (`RmsNorm` op fused into the quantization).
    Plan { w: NormRef, offset: f32 },
    /// A ternary linear's own input norm (`use_rms_norm`).
    Input(LinRef),
}

/// One step of the executor: a plan op, or a fused group of plan ops.
#[derive(Clone, Debug, PartialEq)]
enum XOp {
    Embed,
    Norm {
        src: Buf,
        dst: Buf,
        w: NormRef,
        offset: f32,
    },
    /// Any weight format through `CudaDevice::linear` (quantizes itself when ternary).
    Linear {
        w: LinRef,
        src: Buf,
        dst: Buf,
        accumulate: bool,
    },
    /// int8 quantization of `src` into activation slot `slot`: optionally the GLU product first
    /// (`src` = Gate, with Up), optionally an RMSNorm; `out_norm` also stores the normalised rows.
    Quant {
        src: Buf,
        glu: Option<Activation>,
        norm: Option<QNorm>,
        slot: usize,
        out_norm: Option<Buf>,
    },
    /// Ternary products of the activations in `slot` (one launch per four matrices).
    Ternary {
        parts: Vec<(LinRef, Buf)>,
        slot: usize,
        accumulate: bool,
    },
    Add {
        dst: Buf,
        src: Buf,
    },
    Glu {
        act: Activation,
    },
    Attention {
        layer: usize,
        window: Option<usize>,
        scale: f32,
        local: bool,
    },
    Head {
        offset: f32,
        softcap: Option<f32>,
    },
}

/// Buffers an op reads and writes (for the liveness checks of the fusions).
fn reads_writes(op: &Op) -> (Vec<Buf>, Vec<Buf>) {
    match *op {
        Op::Embed => (vec![], vec![Buf::X]),
        Op::RmsNorm { src, dst, .. } => (vec![src], vec![dst]),
        Op::Linear { src, dst, .. } => (vec![src], vec![dst]),
        Op::Rope { buf, .. } => (vec![buf], vec![buf]),
        Op::Attention { .. } => (vec![Buf::Q, Buf::K, Buf::V], vec![Buf::Att]),
        Op::Add { dst, src } => (vec![dst, src], vec![dst]),
        Op::Glu { .. } => (vec![Buf::Gate, Buf::Up], vec![Buf::Gate]),
        Op::Head { .. } => (vec![Buf::X], vec![Buf::Xn]),
    }
}

/// Whether `buf`'s current contents are read by `ops[from..]` before being overwritten.
fn read_later(ops: &[Op], from: usize, buf: Buf) -> bool {
    for op in ops.iter().skip(from) {
        let (r, w) = reads_writes(op);
        if r.contains(&buf) {
            return true;
        }
        if w.contains(&buf) {
            return false;
        }
    }
    false
}

/// The fused op list of a plan (see the module docs), and the padded width of each int8
/// activation slot.
fn fuse(ops: &[Op], m: &Model, lins: &[CudaLinear]) -> (Vec<XOp>, Vec<usize>) {
    let nl = m.layers.len();
    let c = &m.config;
    let mut out = Vec::with_capacity(ops.len());
    let mut slots: Vec<usize> = Vec::new();
    let mut slot_of = |kp: usize| match slots.iter().position(|&k| k == kp) {
        Some(i) => i,
        None => {
            slots.push(kp);
            slots.len() - 1
        }
    };
    // A ternary linear without its own input norm: its padded width.
    let plain_ternary = |w: LinRef| match &lins[lin_index(w, nl)] {
        CudaLinear { weight: CudaWeight::Ternary(t), input_norm: None, .. } => Some((t.padded_cols(), t.cols())),
        _ => None,
    };
    // The run of ternary linears at ops[j..] reading `src` with one padded width and input width
    // `width`, writing distinct buffers other than `src`.
    let group = |j: usize, src: Buf, width: usize| -> (Vec<(LinRef, Buf)>, usize) {
        let mut parts: Vec<(LinRef, Buf)> = Vec::new();
        let mut kp0 = 0;
        for op in ops.iter().skip(j) {
            let Op::Linear { w, src: s, dst } = *op else { break };
            let Some((kp, cols)) = plain_ternary(w) else { break };
            if s != src || dst == src || cols != width || parts.iter().any(|p| p.1 == dst) {
                break;
            }
            if parts.is_empty() {
                kp0 = kp;
            } else if kp != kp0 {
                break;
            }
            parts.push((w, dst));
        }
        (parts, kp0)
    };
    // `Linear → O; Add X += O` with O dead afterwards: accumulate into X (the part's output
    // becomes X).
    let accumulates = |parts: &mut [(LinRef, Buf)], next: usize| -> bool {
        let acc = parts.len() == 1
            && parts[0].1 == Buf::O
            && matches!(ops.get(next), Some(Op::Add { dst: Buf::X, src: Buf::O }))
            && !read_later(ops, next + 1, Buf::O);
        if acc {
            parts[0].1 = Buf::X;
        }
        acc
    };
    let mut rope_local = false;
    let mut i = 0;
    while i < ops.len() {
        match ops[i] {
            Op::Embed => out.push(XOp::Embed),
            Op::RmsNorm { src, dst, w, offset } => {
                let d = m.norm(w).len();
                let width = src.width(c);
                let (mut parts, kp) = if d == width { group(i + 1, dst, width) } else { (Vec::new(), 0) };
                let next = i + 1 + parts.len();
                let needs_out = read_later(ops, next, dst);
                if parts.is_empty() || (needs_out && src == dst) {
                    out.push(XOp::Norm { src, dst, w, offset });
                } else {
                    let slot = slot_of(kp);
                    out.push(XOp::Quant {
                        src,
                        glu: None,
                        norm: Some(QNorm::Plan { w, offset }),
                        slot,
                        out_norm: needs_out.then_some(dst),
                    });
                    let acc = accumulates(&mut parts, next);
                    out.push(XOp::Ternary { parts, slot, accumulate: acc });
                    i = next + usize::from(acc);
                    continue;
                }
            }
            Op::Glu { act } => {
                let mut j = i + 1;
                let mut norm = None;
                if let Some(Op::RmsNorm { src: Buf::Gate, dst: Buf::Gate, w, offset }) = ops.get(j) {
                    if m.norm(*w).len() == c.ffn {
                        norm = Some(QNorm::Plan { w: *w, offset: *offset });
                        j += 1;
                    }
                }
                let (mut parts, kp) = group(j, Buf::Gate, c.ffn);
                let next = j + parts.len();
                if parts.is_empty() || read_later(ops, next, Buf::Gate) {
                    out.push(XOp::Glu { act });
                } else {
                    let slot = slot_of(kp);
                    out.push(XOp::Quant { src: Buf::Gate, glu: Some(act), norm, slot, out_norm: None });
                    let acc = accumulates(&mut parts, next);
                    out.push(XOp::Ternary { parts, slot, accumulate: acc });
                    i = next + usize::from(acc);
                    continue;
                }
            }
            Op::Linear { w, src, dst } => {
                let (mut parts, kp) = group(i, src, src.width(c));
                if !parts.is_empty() {
                    let next = i + parts.len();
                    let slot = slot_of(kp);
                    out.push(XOp::Quant { src, glu: None, norm: None, slot, out_norm: None });
                    let acc = accumulates(&mut parts, next);
                    out.push(XOp::Ternary { parts, slot, accumulate: acc });
                    i = next + usize::from(acc);
                    continue;
                }
                let l = &lins[lin_index(w, nl)];
                if let (CudaWeight::Ternary(t), Some(_)) = (&l.weight, &l.input_norm) {
                    if t.cols() == src.width(c) && dst != src {
                        let slot = slot_of(t.padded_cols());
                        let mut parts = vec![(w, dst)];
                        let acc = accumulates(&mut parts, i + 1);
                        out.push(XOp::Quant { src, glu: None, norm: Some(QNorm::Input(w)), slot, out_norm: None });
                        out.push(XOp::Ternary { parts, slot, accumulate: acc });
                        i += 1 + usize::from(acc);
                        continue;
                    }
                }
                let acc = dst == Buf::O
                    && matches!(ops.get(i + 1), Some(Op::Add { dst: Buf::X, src: Buf::O }))
                    && !read_later(ops, i + 2, Buf::O);
                out.push(XOp::Linear { w, src, dst: if acc { Buf::X } else { dst }, accumulate: acc });
                i += 1 + usize::from(acc);
                continue;
            }
            // Fused into the attention op that follows (RoPE + KV write).
            Op::Rope { local, .. } => rope_local = local,
            Op::Attention { layer, window, scale } => {
                out.push(XOp::Attention { layer, window, scale, local: rope_local })
            }
            Op::Add { dst, src } => out.push(XOp::Add { dst, src }),
            Op::Head { offset, softcap } => out.push(XOp::Head { offset, softcap }),
        }
        i += 1;
    }
    (out, slots)
}

/// Captured decode graphs, valid while no device buffer has been freed since `epoch`.
#[derive(Default)]
struct Graphs {
    map: HashMap<(usize, usize), Graph>,
    order: Vec<(usize, usize)>,
    seen: HashSet<(usize, usize)>,
    /// Shapes whose capture failed: always eager.
    failed: HashSet<(usize, usize)>,
    epoch: u64,
}

/// Device state of one model: uploaded weights, activation buffers, RoPE tables, scratch, graphs.
pub struct CudaExec {
    dev: CudaDevice,
    xops: Vec<XOp>,
    /// `layer * 7 + projection`, then the head at `n_layers * 7`; the embedding table is the head's
    /// weight when tied, else `embed`.
    lins: Vec<CudaLinear>,
    embed: Option<CudaLinear>,
    /// `layer * 8 + kind`, then the final norm at `n_layers * 8`.
    norms: Vec<Option<DeviceBuf<f32>>>,
    bufs: Vec<DeviceBuf<f32>>,
    rows: usize,
    /// int8 activations per padded width (`slot_kp`).
    acts: Vec<I8Acts>,
    slot_kp: Vec<usize>,
    /// Per-sequence staging for the per-sequence (dynamic RoPE) attention path: q, k, v, att.
    stage: Vec<DeviceBuf<f32>>,
    stage_rows: usize,
    ids: DeviceBuf<i32>,
    host_ids: Vec<i32>,
    batch: BatchTables,
    /// Global and local (sliding-layer) RoPE tables, and how many positions they cover.
    tables: [Option<(DeviceBuf<f32>, DeviceBuf<f32>)>; 2],
    table_positions: usize,
    host_cos: Vec<f32>,
    host_sin: Vec<f32>,
    inv_freq: Vec<f32>,
    lin_scratch: LinearScratch,
    attn_scratch: AttnScratch,
    logits: DeviceBuf<f32>,
    graphs: Graphs,
    use_graphs: bool,
    /// `TERN_CUDA_STATS=1`: per-call counters and timings, printed to stderr when dropped.
    stats: Option<Box<ExecStats>>,
}

/// Counters and host / device timings of the forward calls (diagnostics, `TERN_CUDA_STATS=1`).
struct ExecStats {
    calls: u64,
    replays: u64,
    captures: u64,
    eager: u64,
    capture_failed: u64,
    resets: u64,
    /// Seconds: host work before the op run (uploads), enqueueing the run or replay, waiting
    /// for the device plus the logits download.
    host_pre: f64,
    host_run: f64,
    wait_download: f64,
    /// Device seconds between events around the run or replay.
    device: f64,
    ev: (tern_cuda::cudarc::driver::CudaEvent, tern_cuda::cudarc::driver::CudaEvent),
}

impl Drop for CudaExec {
    fn drop(&mut self) {
        if let Some(s) = &self.stats {
            let n = s.calls.max(1) as f64;
            eprintln!(
                "tern-cuda stats: {} calls ({} graph replays, {} captures, {} eager, {} failed captures, {} graph resets); \
                 per call: host uploads {:.1} us, enqueue {:.1} us, wait + logits download {:.1} us, device {:.1} us",
                s.calls,
                s.replays,
                s.captures,
                s.eager,
                s.capture_failed,
                s.resets,
                s.host_pre / n * 1e6,
                s.host_run / n * 1e6,
                s.wait_download / n * 1e6,
                s.device / n * 1e6
            );
        }
    }
}

impl std::fmt::Debug for CudaExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaExec({})", self.dev.info().name)
    }
}

fn lin_index(r: LinRef, n_layers: usize) -> usize {
    match r {
        LinRef::Q(l) => l * 7,
        LinRef::K(l) => l * 7 + 1,
        LinRef::V(l) => l * 7 + 2,
        LinRef::O(l) => l * 7 + 3,
        LinRef::Gate(l) => l * 7 + 4,
        LinRef::Up(l) => l * 7 + 5,
        LinRef::Down(l) => l * 7 + 6,
        LinRef::Head => n_layers * 7,
    }
}

fn norm_index(r: NormRef, n_layers: usize) -> usize {
    match r {
        NormRef::Attn(l) => l * 8,
        NormRef::QNorm(l) => l * 8 + 1,
        NormRef::KNorm(l) => l * 8 + 2,
        NormRef::AttnSub(l) => l * 8 + 3,
        NormRef::PostAttn(l) => l * 8 + 4,
        NormRef::Ffn(l) => l * 8 + 5,
        NormRef::FfnSub(l) => l * 8 + 6,
        NormRef::PostFfn(l) => l * 8 + 7,
        NormRef::Final => n_layers * 8,
    }
}

fn upload_linear(dev: &CudaDevice, l: &Linear) -> tern_cuda::Result<CudaLinear> {
    let (weight, input_norm) = match &l.weight {
        LinearWeight::Dense(m) => (CudaWeight::Dense(CudaDense::upload(dev, m)?), None),
        LinearWeight::Quant(m) => (CudaWeight::Quant(CudaQuant::upload(dev, m)?), None),
        LinearWeight::Ternary { w, scale, input_norm } => {
            let mode = match *scale {
                TernaryScale::Multiply(s) => ScaleMode::Multiply(s),
                TernaryScale::Divide(s) => ScaleMode::Divide(s),
            };
            let norm = match input_norm {
                Some((w, eps)) => Some((dev.upload(w)?, *eps)),
                None => None,
            };
            (CudaWeight::Ternary(CudaTernary::upload(dev, w, mode)?), norm)
        }
        LinearWeight::Int8(_) => {
            return Err(tern_cuda::CudaError::Unsupported(
                "per-row int8 weights (a CPU head format) on CUDA: use --head-quant f16|q8|q6|q4".into(),
            ))
        }
    };
    let bias = match &l.bias {
        Some(b) => Some(dev.upload(b)?),
        None => None,
    };
    Ok(CudaLinear { weight, bias, input_norm })
}

/// Shapes of one forward call that the op runner needs.
#[derive(Clone, Copy)]
struct Step {
    t_n: usize,
    n_active: usize,
    /// Rows of logits wanted: all rows, or each active sequence's last.
    which: Logits,
    /// Upper bound of every row's position + 1 (sizes the attention grid).
    max_keys: usize,
    /// Length-dependent RoPE: per-sequence attention path.
    dynamic: bool,
}

impl CudaExec {
    /// Opens GPU `ordinal` and uploads `m`'s weights.
    pub fn new(m: &Model, ordinal: usize) -> Result<CudaExec> {
        let dev = CudaDevice::new(ordinal).map_err(cu)?;
        let nl = m.layers.len();
        let mut lins = Vec::with_capacity(nl * 7 + 1);
        for li in 0..nl {
            for r in [
                LinRef::Q(li),
                LinRef::K(li),
                LinRef::V(li),
                LinRef::O(li),
                LinRef::Gate(li),
                LinRef::Up(li),
                LinRef::Down(li),
            ] {
                lins.push(
                    upload_linear(&dev, m.linear(r))
                        .map_err(|e| ModelError::Device(format!("uploading {r:?}: {e}")))?,
                );
            }
        }
        lins.push(
            upload_linear(&dev, m.linear(LinRef::Head))
                .map_err(|e| ModelError::Device(format!("uploading the LM head: {e}")))?,
        );
        let embed = match &m.lm_head {
            Some(_) => Some(
                upload_linear(&dev, &m.embed)
                    .map_err(|e| ModelError::Device(format!("uploading the embeddings: {e}")))?,
            ),
            None => None,
        };
        let mut norms = Vec::with_capacity(nl * 8 + 1);
        for li in 0..nl {
            for r in [
                NormRef::Attn(li),
                NormRef::QNorm(li),
                NormRef::KNorm(li),
                NormRef::AttnSub(li),
                NormRef::PostAttn(li),
                NormRef::Ffn(li),
                NormRef::FfnSub(li),
                NormRef::PostFfn(li),
            ] {
                let w = m.norm(r);
                norms.push(if w.is_empty() { None } else { Some(dev.upload(w).map_err(cu)?) });
            }
        }
        norms.push(Some(dev.upload(&m.norm).map_err(cu)?));
        let plan = Plan::build(m);
        let (xops, slot_kp) = fuse(&plan.ops, m, &lins);
        let ids = dev.alloc::<i32>(1).map_err(cu)?;
        let logits = dev.alloc::<f32>(1).map_err(cu)?;
        let use_graphs = std::env::var("TERN_CUDA_GRAPHS").map_or(true, |v| v != "0");
        let stats = match std::env::var("TERN_CUDA_STATS") {
            Ok(v) if v != "0" => Some(Box::new(ExecStats {
                calls: 0,
                replays: 0,
                captures: 0,
                eager: 0,
                capture_failed: 0,
                resets: 0,
                host_pre: 0.0,
                host_run: 0.0,
                wait_download: 0.0,
                device: 0.0,
                ev: (dev.event().map_err(cu)?, dev.event().map_err(cu)?),
            })),
            _ => None,
        };
        Ok(CudaExec {
            stats,
            xops,
            lins,
            embed,
            norms,
            bufs: Vec::new(),
            rows: 0,
            acts: Vec::new(),
            slot_kp,
            stage: Vec::new(),
            stage_rows: 0,
            ids,
            host_ids: Vec::new(),
            batch: BatchTables::new(),
            tables: [None, None],
            table_positions: 0,
            host_cos: Vec::new(),
            host_sin: Vec::new(),
            inv_freq: Vec::new(),
            lin_scratch: LinearScratch::default(),
            attn_scratch: AttnScratch::default(),
            logits,
            graphs: Graphs::default(),
            use_graphs,
            dev,
        })
    }

    /// The GPU's name.
    pub fn device_name(&self) -> &str {
        &self.dev.info().name
    }

    /// Executor ops per forward pass after fusion (kernel launches are about 1.5 per op).
    pub fn fused_op_count(&self) -> usize {
        self.xops.len()
    }

    /// Grows the activation buffers to `rows` rows.
    fn ensure_rows(&mut self, m: &Model, rows: usize) -> Result<()> {
        if rows <= self.rows && !self.bufs.is_empty() {
            return Ok(());
        }
        let rows = rows.max(self.rows);
        self.bufs = Buf::ALL
            .iter()
            .map(|b| self.dev.alloc::<f32>(rows * b.width(&m.config)))
            .collect::<tern_cuda::Result<_>>()
            .map_err(cu)?;
        self.acts = self
            .slot_kp
            .iter()
            .map(|&kp| I8Acts::new(&self.dev, rows, kp))
            .collect::<tern_cuda::Result<_>>()
            .map_err(cu)?;
        self.ids = self.dev.alloc::<i32>(rows).map_err(cu)?;
        self.rows = rows;
        Ok(())
    }

    fn ensure_stage(&mut self, m: &Model, rows: usize) -> Result<()> {
        if rows <= self.stage_rows && !self.stage.is_empty() {
            return Ok(());
        }
        let c = &m.config;
        self.stage = [Buf::Q, Buf::K, Buf::V, Buf::Att]
            .iter()
            .map(|b| self.dev.alloc::<f32>(rows * b.width(c)))
            .collect::<tern_cuda::Result<_>>()
            .map_err(cu)?;
        self.stage_rows = rows;
        Ok(())
    }

    /// Grows the RoPE tables to `capacity` positions (rows filled with the length-independent
    /// frequencies).
    fn ensure_tables(&mut self, m: &Model, capacity: usize) -> Result<()> {
        if capacity <= self.table_positions {
            return Ok(());
        }
        let half = m.rope.rot_dim / 2;
        for (i, slot) in self.tables.iter_mut().enumerate() {
            if i == 0 || m.rope_local.is_some() {
                let c = self.dev.alloc::<f32>(capacity * half).map_err(cu)?;
                let s = self.dev.alloc::<f32>(capacity * half).map_err(cu)?;
                *slot = Some((c, s));
            }
        }
        self.table_positions = capacity;
        self.write_tables(m, 0, capacity, 0)
    }

    /// Writes RoPE table rows `from..to` with the frequencies of a sequence of length `seq_len`.
    fn write_tables(&mut self, m: &Model, from: usize, to: usize, seq_len: usize) -> Result<()> {
        let half = m.rope.rot_dim / 2;
        let to = to.min(self.table_positions);
        if from >= to {
            return Ok(());
        }
        for (i, rope) in [Some(&m.rope), m.rope_local.as_ref()].into_iter().enumerate() {
            let Some(rope) = rope else { continue };
            rope.inv_freq_for(seq_len, &mut self.inv_freq);
            self.host_cos.resize((to - from) * half, 0.0);
            self.host_sin.resize((to - from) * half, 0.0);
            for p in from..to {
                let r = (p - from) * half..(p - from + 1) * half;
                rope.cos_sin(&self.inv_freq, p, &mut self.host_cos[r.clone()], &mut self.host_sin[r]);
            }
            if let Some((c, s)) = &mut self.tables[i] {
                self.dev.write_at(&self.host_cos, c, from * half).map_err(cu)?;
                self.dev.write_at(&self.host_sin, s, from * half).map_err(cu)?;
            }
        }
        Ok(())
    }

    /// [`Model::forward_batch`] on the device (arguments validated by the caller); the logits are
    /// copied into `out`.
    pub(crate) fn forward_batch(
        &mut self,
        m: &Model,
        seqs: &mut [SeqInput<'_>],
        which: Logits,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let t0 = std::time::Instant::now();
        let t_n: usize = seqs.iter().map(|s| s.tokens.len()).sum();
        self.ensure_rows(m, t_n)?;
        let n_active = seqs.iter().filter(|s| !s.tokens.is_empty()).count();
        let dynamic = m.rope.depends_on_len() || m.rope_local.as_ref().is_some_and(|r| r.depends_on_len());
        if dynamic && n_active > 1 {
            self.ensure_stage(m, seqs.iter().map(|s| s.tokens.len()).max().unwrap_or(1))?;
        }
        // Device caches, allocated on first use.
        for s in seqs.iter_mut() {
            if let KvStore::Empty = s.cache.store {
                s.cache.store = KvStore::Cuda(self.alloc_kv(s.cache)?);
            }
            if !matches!(s.cache.store, KvStore::Cuda(_)) {
                return Err(ModelError::CacheMismatch);
            }
        }
        // RoPE tables: cover every cache's capacity; dynamic RoPE rewrites the rows of each call.
        let cap = seqs.iter().map(|s| s.cache.capacity()).max().unwrap_or(0);
        self.ensure_tables(m, cap)?;
        let max_end = seqs.iter().filter(|s| !s.tokens.is_empty()).map(|s| s.cache.len() + s.tokens.len()).max();
        let max_end = max_end.unwrap_or(1);
        // One new token per sequence: a decode step (graph-capturable; the last row of each
        // sequence is its only row).
        let decode = t_n == n_active && !dynamic;
        let which = if decode { Logits::All } else { which };
        let max_keys = if decode { max_end.next_multiple_of(GRAPH_BUCKET) } else { max_end };
        let step = Step { t_n, n_active, which, max_keys, dynamic };
        let n_rows = match which {
            Logits::All => t_n,
            Logits::Last => n_active,
        };
        if self.logits.len() < n_rows * m.vocab() {
            self.logits = self.dev.alloc::<f32>(n_rows * m.vocab()).map_err(cu)?;
        }
        // Token ids and the batch tables (positions and cache addresses of every row).
        self.host_ids.clear();
        self.host_ids.extend(seqs.iter().flat_map(|s| s.tokens.iter()).map(|&t| t as i32));
        self.dev.write(&self.host_ids, &mut self.ids).map_err(cu)?;
        if !dynamic {
            let mut tabs = Vec::with_capacity(n_active);
            for s in seqs.iter() {
                if s.tokens.is_empty() {
                    continue;
                }
                let KvStore::Cuda(kv) = &s.cache.store else { return Err(ModelError::CacheMismatch) };
                tabs.push(SeqTable {
                    k: &kv.k,
                    v: &kv.v,
                    capacity: s.cache.capacity(),
                    pos0: s.cache.len(),
                    tokens: s.tokens.len(),
                });
            }
            self.batch.set(&self.dev, &tabs, m.config.n_kv_heads, m.config.head_dim).map_err(cu)?;
        }

        let t1 = std::time::Instant::now();
        if let Some(s) = &mut self.stats {
            s.calls += 1;
            s.host_pre += t1.duration_since(t0).as_secs_f64();
            self.dev.record(&s.ev.0).map_err(cu)?;
        }
        if decode && self.use_graphs {
            self.decode_graph(m, seqs, step)?;
        } else {
            self.run(m, seqs, step)?;
            if let Some(s) = &mut self.stats {
                s.eager += 1;
            }
        }
        let t2 = std::time::Instant::now();
        if let Some(s) = &mut self.stats {
            self.dev.record(&s.ev.1).map_err(cu)?;
            s.host_run += t2.duration_since(t1).as_secs_f64();
        }
        for s in seqs.iter_mut() {
            s.cache.len += s.tokens.len();
        }
        out.resize(n_rows * m.vocab(), 0.0);
        self.dev.download_into(&self.logits, out).map_err(cu)?;
        if let Some(s) = &mut self.stats {
            s.wait_download += t2.elapsed().as_secs_f64();
            s.device += f64::from(s.ev.0.elapsed_ms(&s.ev.1).map_err(|e| ModelError::Device(e.to_string()))?) / 1e3;
        }
        Ok(())
    }

    /// Runs the fused ops eagerly (or into a capture).
    fn run(&mut self, m: &Model, seqs: &mut [SeqInput<'_>], step: Step) -> Result<()> {
        let ops = std::mem::take(&mut self.xops);
        let res = self.run_ops(m, &ops, seqs, step);
        self.xops = ops;
        res
    }

    /// A decode step through a graph: replayed when one exists for its shape, captured when the
    /// shape was seen once before (everything it needs is allocated by then), else run eagerly.
    fn decode_graph(&mut self, m: &Model, seqs: &mut [SeqInput<'_>], step: Step) -> Result<()> {
        let key = (step.t_n, step.max_keys);
        let epoch = self.dev.free_epoch();
        if epoch != self.graphs.epoch {
            if let Some(s) = &mut self.stats {
                s.resets += 1;
            }
            self.graphs = Graphs { epoch, ..Graphs::default() };
        }
        if let Some(g) = self.graphs.map.get(&key) {
            if let Some(s) = &mut self.stats {
                s.replays += 1;
            }
            return g.replay().map_err(cu);
        }
        if let Some(s) = &mut self.stats {
            s.eager += 1;
        }
        if !self.graphs.seen.contains(&key) {
            self.graphs.seen.insert(key);
            return self.run(m, seqs, step);
        }
        if self.graphs.failed.contains(&key) {
            return self.run(m, seqs, step);
        }
        let dev = self.dev.clone();
        let allocs = dev.alloc_count();
        let g = dev.capture(|| self.run(m, seqs, step).map_err(|e| tern_cuda::CudaError::Unsupported(e.to_string())));
        let g = match g {
            Ok(g) => g,
            Err(e) => {
                // Something in the step cannot be recorded (e.g. a library call): run this shape
                // eagerly from now on (a genuine error shows up again in the eager run).
                tracing::debug!("CUDA graph capture of decode shape {key:?} failed: {e}");
                if let Some(s) = &mut self.stats {
                    s.capture_failed += 1;
                    eprintln!("tern-cuda: graph capture of decode shape {key:?} failed: {e}");
                }
                self.graphs.failed.insert(key);
                return self.run(m, seqs, step);
            }
        };
        if dev.free_epoch() != epoch || dev.alloc_count() != allocs {
            // Something was (re)allocated while recording: run this step eagerly and capture later.
            if let Some(s) = &mut self.stats {
                s.capture_failed += 1;
                eprintln!("tern-cuda: buffers changed while capturing decode shape {key:?}");
            }
            drop(g);
            self.graphs = Graphs { epoch: dev.free_epoch(), ..Graphs::default() };
            return self.run(m, seqs, step);
        }
        g.replay().map_err(cu)?;
        if let Some(s) = &mut self.stats {
            s.captures += 1;
            s.eager -= 1;
        }
        if self.graphs.order.len() >= MAX_GRAPHS {
            let old = self.graphs.order.remove(0);
            self.graphs.map.remove(&old);
        }
        self.graphs.order.push(key);
        self.graphs.map.insert(key, g);
        Ok(())
    }

    fn alloc_kv(&self, cache: &KvCache) -> Result<CudaKv> {
        let (nl, nkv, hd) = cache.dims();
        let per = nkv * cache.capacity() * hd;
        let mut k = Vec::with_capacity(nl);
        let mut v = Vec::with_capacity(nl);
        for _ in 0..nl {
            k.push(self.dev.alloc::<f32>(per).map_err(cu)?);
            v.push(self.dev.alloc::<f32>(per).map_err(cu)?);
        }
        Ok(CudaKv { k, v, pos0: self.dev.alloc::<i32>(1).map_err(cu)? })
    }

    /// Runs the fused plan; the logits rows are left in `self.logits`.
    fn run_ops(&mut self, m: &Model, ops: &[XOp], seqs: &mut [SeqInput<'_>], step: Step) -> Result<()> {
        let c = &m.config;
        let nl = m.layers.len();
        let eps = c.rms_eps;
        let t_n = step.t_n;
        for op in ops {
            match op {
                XOp::Embed => {
                    let table = match &self.embed {
                        Some(e) => &e.weight,
                        None => &self.lins[lin_index(LinRef::Head, nl)].weight,
                    };
                    let x = &mut self.bufs[Buf::X.index()];
                    self.dev.embed(table, &self.ids, t_n, c.embed_scale.unwrap_or(1.0), x, None).map_err(cu)?;
                }
                &XOp::Norm { src, dst, w, offset } => {
                    let wbuf = self.norms[norm_index(w, nl)].as_ref();
                    let Some(wbuf) = wbuf else {
                        return Err(ModelError::Device(format!("plan names absent norm {w:?}")));
                    };
                    let d = wbuf.len();
                    let rows = t_n * src.width(c) / d;
                    let norm = Norm { weight: Some(wbuf), eps, offset };
                    if src == dst {
                        self.dev.rms_norm_inplace(&mut self.bufs[dst.index()], norm, d, rows).map_err(cu)?;
                    } else {
                        let (s, dbuf) = two(&mut self.bufs, src, dst);
                        self.dev.rms_norm(s, norm, d, rows, dbuf).map_err(cu)?;
                    }
                }
                &XOp::Linear { w, src, dst, accumulate } => {
                    let l = &self.lins[lin_index(w, nl)];
                    let (s, d) = two(&mut self.bufs, src, dst);
                    self.dev.linear(l, s, t_n, d, &mut self.lin_scratch, accumulate).map_err(cu)?;
                }
                &XOp::Quant { src, glu, norm, slot, out_norm } => {
                    let norm = match norm {
                        None => None,
                        Some(QNorm::Plan { w, offset }) => {
                            let Some(wbuf) = self.norms[norm_index(w, nl)].as_ref() else {
                                return Err(ModelError::Device(format!("plan names absent norm {w:?}")));
                            };
                            Some(Norm { weight: Some(wbuf), eps, offset })
                        }
                        Some(QNorm::Input(r)) => match &self.lins[lin_index(r, nl)].input_norm {
                            Some((wbuf, e)) => Some(Norm { weight: Some(wbuf), eps: *e, offset: 0.0 }),
                            None => return Err(ModelError::Device(format!("{r:?} has no input norm"))),
                        },
                    };
                    let acts = &mut self.acts[slot];
                    let d = src.width(c);
                    match (glu, out_norm) {
                        (Some(act), _) => {
                            let (up, gate) = two(&mut self.bufs, Buf::Up, Buf::Gate);
                            self.dev.glu_quant_i8(act, gate, up, t_n, d, norm, acts).map_err(cu)?;
                        }
                        (None, Some(dst)) => {
                            let (s, o) = two(&mut self.bufs, src, dst);
                            self.dev.quantize_i8(s, t_n, d, norm, Some(o), acts).map_err(cu)?;
                        }
                        (None, None) => {
                            self.dev.quantize_i8(&self.bufs[src.index()], t_n, d, norm, None, acts).map_err(cu)?;
                        }
                    }
                }
                XOp::Ternary { parts, slot, accumulate } => {
                    let mut outs = many_mut(&mut self.bufs, parts.iter().map(|p| p.1));
                    let mut tparts = Vec::with_capacity(parts.len());
                    for (&(w, _), out) in parts.iter().zip(outs.iter_mut()) {
                        let l = &self.lins[lin_index(w, nl)];
                        let CudaWeight::Ternary(tw) = &l.weight else {
                            return Err(ModelError::Device(format!("{w:?} is not ternary")));
                        };
                        tparts.push(TernaryPart { w: tw, out, bias: l.bias.as_ref() });
                    }
                    self.dev.ternary_gemv_many(&mut tparts, &self.acts[*slot], *accumulate).map_err(cu)?;
                }
                &XOp::Add { dst, src } => {
                    let (s, d) = two(&mut self.bufs, src, dst);
                    self.dev.add(d, s, t_n * dst.width(c)).map_err(cu)?;
                }
                &XOp::Glu { act } => {
                    let (up, gate) = two(&mut self.bufs, Buf::Up, Buf::Gate);
                    self.dev.glu(act, gate, up, t_n * c.ffn).map_err(cu)?;
                }
                &XOp::Attention { layer, window, scale, local } => {
                    if step.dynamic {
                        self.attention_per_seq(m, seqs, layer, window, scale, local, step.n_active)?;
                    } else {
                        self.attention_rows(m, layer, window, scale, local, step.max_keys)?;
                    }
                }
                &XOp::Head { offset, softcap } => {
                    let h = c.hidden;
                    let final_norm = self.norms[norm_index(NormRef::Final, nl)].as_ref();
                    let n_rows = match step.which {
                        Logits::All => {
                            let (x, xn) = two(&mut self.bufs, Buf::X, Buf::Xn);
                            let norm = Norm { weight: final_norm, eps, offset };
                            self.dev.rms_norm(x, norm, h, t_n, xn).map_err(cu)?;
                            t_n
                        }
                        Logits::Last => {
                            let mut k = 0;
                            for last in last_rows(seqs.iter().map(|s| s.tokens.len())) {
                                let (x, xn) = two(&mut self.bufs, Buf::X, Buf::Xn);
                                self.dev.copy_range(x, last * h, xn, k * h, h).map_err(cu)?;
                                k += 1;
                            }
                            let norm = Norm { weight: final_norm, eps, offset };
                            self.dev.rms_norm_inplace(&mut self.bufs[Buf::Xn.index()], norm, h, k).map_err(cu)?;
                            k
                        }
                    };
                    let vocab = m.vocab();
                    let head = &self.lins[lin_index(LinRef::Head, nl)];
                    self.dev
                        .linear(
                            head,
                            &self.bufs[Buf::Xn.index()],
                            n_rows,
                            &mut self.logits,
                            &mut self.lin_scratch,
                            false,
                        )
                        .map_err(cu)?;
                    if let Some(cap) = softcap {
                        self.dev.softcap(&mut self.logits, cap, n_rows * vocab).map_err(cu)?;
                    }
                    return Ok(());
                }
            }
        }
        Err(ModelError::Device("plan has no Head op".into()))
    }

    fn attn_dims(&self, m: &Model, window: Option<usize>, scale: f32, capacity: usize) -> AttnDims {
        let c = &m.config;
        AttnDims {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            capacity,
            scale,
            window,
            softcap: None,
        }
    }

    /// RoPE + KV write + attention of every row of the batch at `layer` in two launches
    /// (three with the split combine), through the batch tables.
    fn attention_rows(
        &mut self,
        m: &Model,
        layer: usize,
        window: Option<usize>,
        scale: f32,
        local: bool,
        max_keys: usize,
    ) -> Result<()> {
        let half = m.rope.rot_dim / 2;
        let dims = self.attn_dims(m, window, scale, self.table_positions);
        let Some((cos, sin)) = &self.tables[usize::from(local)] else {
            return Err(ModelError::Device("RoPE table missing".into()));
        };
        let rope = RopeTables { cos, sin, half };
        let [_, _, q, k, v, att, ..] = &mut self.bufs[..] else { return Err(no_bufs()) };
        self.dev.rope_kv_rows(q, k, v, rope, &self.batch, layer, dims).map_err(cu)?;
        self.dev.attention_rows(q, &self.batch, layer, max_keys, dims, &mut self.attn_scratch, att).map_err(cu)
    }

    /// RoPE + KV write + attention for every sequence of the batch at `layer`, one sequence at a
    /// time (length-dependent RoPE rewrites the shared table rows before each).
    #[allow(clippy::too_many_arguments)]
    fn attention_per_seq(
        &mut self,
        m: &Model,
        seqs: &mut [SeqInput<'_>],
        layer: usize,
        window: Option<usize>,
        scale: f32,
        local: bool,
        n_active: usize,
    ) -> Result<()> {
        let c = &m.config;
        let (nh, nkv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
        let half = m.rope.rot_dim / 2;
        let mut r0 = 0;
        for s in seqs.iter_mut() {
            let (pos0, n) = (s.cache.len(), s.tokens.len());
            if n == 0 {
                continue;
            }
            let cap = s.cache.capacity();
            // Frequencies for this sequence's length: rewrite the rows it reads (the table is
            // shared by the sequences of a batch, so before every use).
            self.write_tables(m, pos0, pos0 + n, pos0 + n)?;
            let KvStore::Cuda(kv) = &mut s.cache.store else { return Err(ModelError::CacheMismatch) };
            if layer == 0 {
                self.dev.set_pos(&mut kv.pos0, pos0).map_err(cu)?;
            }
            let dims = self.attn_dims(m, window, scale, cap);
            let Some((cos, sin)) = &self.tables[usize::from(local)] else {
                return Err(ModelError::Device("RoPE table missing".into()));
            };
            let rope = RopeTables { cos, sin, half };
            let (kc, vc) = (&mut kv.k[layer], &mut kv.v[layer]);
            if n_active == 1 {
                let [_, _, q, k, v, att, ..] = &mut self.bufs[..] else { return Err(no_bufs()) };
                self.dev.rope_kv(q, k, v, n, rope, &kv.pos0, pos0 + n, kc, vc, dims).map_err(cu)?;
                self.dev.attention(q, kc, vc, n, &kv.pos0, pos0 + n, dims, &mut self.attn_scratch, att).map_err(cu)?;
            } else {
                let [sq, sk, sv, satt] = &mut self.stage[..] else { return Err(no_bufs()) };
                let [_, _, q, k, v, att, ..] = &mut self.bufs[..] else { return Err(no_bufs()) };
                self.dev.copy_range(q, r0 * nh * hd, sq, 0, n * nh * hd).map_err(cu)?;
                self.dev.copy_range(k, r0 * nkv * hd, sk, 0, n * nkv * hd).map_err(cu)?;
                self.dev.copy_range(v, r0 * nkv * hd, sv, 0, n * nkv * hd).map_err(cu)?;
                self.dev.rope_kv(sq, sk, sv, n, rope, &kv.pos0, pos0 + n, kc, vc, dims).map_err(cu)?;
                self.dev
                    .attention(sq, kc, vc, n, &kv.pos0, pos0 + n, dims, &mut self.attn_scratch, satt)
                    .map_err(cu)?;
                self.dev.copy_range(satt, 0, att, r0 * nh * hd, n * nh * hd).map_err(cu)?;
            }
            r0 += n;
        }
        Ok(())
    }
}

fn no_bufs() -> ModelError {
    ModelError::Device("activation buffers not allocated".into())
}

/// Mutable borrows of distinct buffers, in the order `which` names them (the fusion only groups
/// projections with distinct outputs).
fn many_mut(bufs: &mut [DeviceBuf<f32>], which: impl Iterator<Item = Buf>) -> Vec<&mut DeviceBuf<f32>> {
    let mut slots: Vec<Option<&mut DeviceBuf<f32>>> = bufs.iter_mut().map(Some).collect();
    which.filter_map(|b| slots.get_mut(b.index()).and_then(Option::take)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_follows_reads_and_writes() {
        let ops = [
            Op::RmsNorm { src: Buf::X, dst: Buf::Xn, w: NormRef::Attn(0), offset: 0.0 },
            Op::Linear { w: LinRef::Q(0), src: Buf::Xn, dst: Buf::Q },
            Op::Add { dst: Buf::X, src: Buf::O },
            Op::RmsNorm { src: Buf::X, dst: Buf::Xn, w: NormRef::Ffn(0), offset: 0.0 },
            Op::Head { offset: 0.0, softcap: None },
        ];
        assert!(read_later(&ops, 1, Buf::Xn));
        assert!(!read_later(&ops, 2, Buf::Xn));
        assert!(read_later(&ops, 2, Buf::O));
        assert!(!read_later(&ops, 3, Buf::O));
        assert!(read_later(&ops, 0, Buf::X));
    }
}
