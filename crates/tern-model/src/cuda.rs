//! The CUDA executor of the plan (cargo feature `cuda`): the same [`Plan`] the CPU interprets, run
//! op by op with tern-cuda's kernels on device buffers.
//!
//! * Weights are uploaded once in their packed formats ([`tern_cuda::CudaLinear`]: T2 ternary, ggml
//!   blocks, dense); norms as f32. A tied head shares the embedding upload.
//! * Activations live in one device buffer per [`Buf`], grown to the largest row count seen.
//! * Fusions (rewrites of the plan, checked by the fixture tests against the unfused CPU executor):
//!   `Rope q` + `Rope k` + `Attention` → one RoPE + KV-write kernel and flash-decoding attention;
//!   `Linear → O` followed by `Add X += O` → the projection accumulates into `X`.
//! * RoPE tables are `[position][rot/2]` on the device, covering the largest cache capacity seen;
//!   `dynamic` RoPE (frequencies depend on the sequence length) rewrites the table rows of each call.
//! * KV caches live on the device ([`CudaKv`]), allocated by the first call that runs a sequence.
//!   Only logits come back to the host.

use crate::linear::{Linear, LinearWeight, TernaryScale};
use crate::model::{KvCache, KvStore, Logits, Model, SeqInput};
use crate::plan::{Buf, LinRef, NormRef, Op, Plan};
use crate::{ModelError, Result};
use tern_cuda::{
    AttnDims, AttnScratch, CudaDense, CudaDevice, CudaLinear, CudaQuant, CudaTernary, CudaWeight, DeviceBuf,
    LinearScratch, Norm, Rope as RopeTables, ScaleMode,
};

fn cu(e: tern_cuda::CudaError) -> ModelError {
    ModelError::Device(e.to_string())
}

/// A sequence's KV cache on the device: per layer `[kv_head][position][head_dim]` f32, and the
/// one-element device buffer holding the sequence's first new position for the kernels.
#[derive(Debug)]
pub struct CudaKv {
    k: Vec<DeviceBuf<f32>>,
    v: Vec<DeviceBuf<f32>>,
    pos0: DeviceBuf<i32>,
}

/// Device state of one model: uploaded weights, activation buffers, RoPE tables, scratch.
pub struct CudaExec {
    dev: CudaDevice,
    plan: Plan,
    /// `layer * 7 + projection`, then the head at `n_layers * 7`; the embedding table is the head's
    /// weight when tied, else `embed`.
    lins: Vec<CudaLinear>,
    embed: Option<CudaLinear>,
    /// `layer * 8 + kind`, then the final norm at `n_layers * 8`.
    norms: Vec<Option<DeviceBuf<f32>>>,
    bufs: Vec<DeviceBuf<f32>>,
    rows: usize,
    /// Per-sequence staging for batched attention: q, k, v, att.
    stage: Vec<DeviceBuf<f32>>,
    stage_rows: usize,
    ids: DeviceBuf<i32>,
    host_ids: Vec<i32>,
    /// Global and local (sliding-layer) RoPE tables, and how many positions they cover.
    tables: [Option<(DeviceBuf<f32>, DeviceBuf<f32>)>; 2],
    table_positions: usize,
    host_cos: Vec<f32>,
    host_sin: Vec<f32>,
    inv_freq: Vec<f32>,
    lin_scratch: LinearScratch,
    attn_scratch: AttnScratch,
    logits: DeviceBuf<f32>,
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
    };
    let bias = match &l.bias {
        Some(b) => Some(dev.upload(b)?),
        None => None,
    };
    Ok(CudaLinear { weight, bias, input_norm })
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
        let ids = dev.alloc::<i32>(1).map_err(cu)?;
        let logits = dev.alloc::<f32>(1).map_err(cu)?;
        Ok(CudaExec {
            plan: Plan::build(m),
            lins,
            embed,
            norms,
            bufs: Vec::new(),
            rows: 0,
            stage: Vec::new(),
            stage_rows: 0,
            ids,
            host_ids: Vec::new(),
            tables: [None, None],
            table_positions: 0,
            host_cos: Vec::new(),
            host_sin: Vec::new(),
            inv_freq: Vec::new(),
            lin_scratch: LinearScratch::default(),
            attn_scratch: AttnScratch::default(),
            logits,
            dev,
        })
    }

    /// The GPU's name.
    pub fn device_name(&self) -> &str {
        &self.dev.info().name
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
        let t_n: usize = seqs.iter().map(|s| s.tokens.len()).sum();
        self.ensure_rows(m, t_n)?;
        let n_active = seqs.iter().filter(|s| !s.tokens.is_empty()).count();
        if n_active > 1 {
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
        // Token ids.
        self.host_ids.clear();
        self.host_ids.extend(seqs.iter().flat_map(|s| s.tokens.iter()).map(|&t| t as i32));
        self.dev.write(&self.host_ids, &mut self.ids).map_err(cu)?;

        let ops = std::mem::take(&mut self.plan.ops);
        let res = self.run_ops(m, &ops, seqs, which, t_n, n_active);
        self.plan.ops = ops;
        let n_rows = res?;
        for s in seqs.iter_mut() {
            s.cache.len += s.tokens.len();
        }
        out.resize(n_rows * m.vocab(), 0.0);
        self.dev.download_into(&self.logits, out).map_err(cu)
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

    /// Runs the plan; returns the number of logit rows left in `self.logits`.
    fn run_ops(
        &mut self,
        m: &Model,
        ops: &[Op],
        seqs: &mut [SeqInput<'_>],
        which: Logits,
        t_n: usize,
        n_active: usize,
    ) -> Result<usize> {
        let c = &m.config;
        let nl = m.layers.len();
        let eps = c.rms_eps;
        let mut rope_local = false;
        let mut skip_add = false;
        for (i, op) in ops.iter().enumerate() {
            match *op {
                Op::Embed => {
                    let table = match &self.embed {
                        Some(e) => &e.weight,
                        None => &self.lins[lin_index(LinRef::Head, nl)].weight,
                    };
                    let x = &mut self.bufs[Buf::X.index()];
                    self.dev.embed(table, &self.ids, t_n, c.embed_scale.unwrap_or(1.0), x, None).map_err(cu)?;
                }
                Op::RmsNorm { src, dst, w, offset } => {
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
                Op::Linear { w, src, dst } => {
                    // Fusion: `Linear → O; Add X += O` accumulates into X.
                    let fuse = dst == Buf::O && matches!(ops.get(i + 1), Some(Op::Add { dst: Buf::X, src: Buf::O }));
                    let target = if fuse { Buf::X } else { dst };
                    let l = &self.lins[lin_index(w, nl)];
                    let (s, d) = two(&mut self.bufs, src, target);
                    self.dev.linear(l, s, t_n, d, &mut self.lin_scratch, fuse).map_err(cu)?;
                    skip_add = fuse;
                }
                Op::Add { dst, src } => {
                    if skip_add {
                        skip_add = false;
                        continue;
                    }
                    let (s, d) = two(&mut self.bufs, src, dst);
                    self.dev.add(d, s, t_n * dst.width(c)).map_err(cu)?;
                }
                Op::Glu { act } => {
                    let (up, gate) = two(&mut self.bufs, Buf::Up, Buf::Gate);
                    self.dev.glu(act, gate, up, t_n * c.ffn).map_err(cu)?;
                }
                // Fused into the attention op that follows (RoPE + KV write).
                Op::Rope { local, .. } => rope_local = local,
                Op::Attention { layer, window, scale } => {
                    self.attention(m, seqs, layer, window, scale, rope_local, n_active)?;
                }
                Op::Head { offset, softcap } => {
                    let h = c.hidden;
                    let n_rows = match which {
                        Logits::All => {
                            let (x, xn) = two(&mut self.bufs, Buf::X, Buf::Xn);
                            let norm =
                                Norm { weight: self.norms[norm_index(NormRef::Final, nl)].as_ref(), eps, offset };
                            self.dev.rms_norm(x, norm, h, t_n, xn).map_err(cu)?;
                            t_n
                        }
                        Logits::Last => {
                            let (mut r0, mut k) = (0, 0);
                            for s in seqs.iter() {
                                let n = s.tokens.len();
                                if n > 0 {
                                    let (x, xn) = two(&mut self.bufs, Buf::X, Buf::Xn);
                                    self.dev.copy_range(x, (r0 + n - 1) * h, xn, k * h, h).map_err(cu)?;
                                    k += 1;
                                }
                                r0 += n;
                            }
                            let norm =
                                Norm { weight: self.norms[norm_index(NormRef::Final, nl)].as_ref(), eps, offset };
                            self.dev.rms_norm_inplace(&mut self.bufs[Buf::Xn.index()], norm, h, k).map_err(cu)?;
                            k
                        }
                    };
                    let vocab = m.vocab();
                    if self.logits.len() < n_rows * vocab {
                        self.logits = self.dev.alloc::<f32>(n_rows * vocab).map_err(cu)?;
                    }
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
                    return Ok(n_rows);
                }
            }
        }
        Err(ModelError::Device("plan has no Head op".into()))
    }

    /// RoPE + KV write + attention for every sequence of the batch at `layer`.
    #[allow(clippy::too_many_arguments)]
    fn attention(
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
        let dynamic = m.rope.depends_on_len() || m.rope_local.as_ref().is_some_and(|r| r.depends_on_len());
        let mut r0 = 0;
        for s in seqs.iter_mut() {
            let (pos0, n) = (s.cache.len(), s.tokens.len());
            if n == 0 {
                continue;
            }
            let cap = s.cache.capacity();
            if dynamic {
                // Frequencies for this sequence's length: rewrite the rows it reads (the table is
                // shared by the sequences of a batch, so before every use).
                self.write_tables(m, pos0, pos0 + n, pos0 + n)?;
            }
            let KvStore::Cuda(kv) = &mut s.cache.store else { return Err(ModelError::CacheMismatch) };
            if layer == 0 {
                self.dev.set_pos(&mut kv.pos0, pos0).map_err(cu)?;
            }
            let dims =
                AttnDims { n_heads: nh, n_kv_heads: nkv, head_dim: hd, capacity: cap, scale, window, softcap: None };
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

/// Borrows two distinct buffers, the first shared and the second mutable.
fn two(bufs: &mut [DeviceBuf<f32>], a: Buf, b: Buf) -> (&DeviceBuf<f32>, &mut DeviceBuf<f32>) {
    let (ia, ib) = (a.index(), b.index());
    if ia < ib {
        let (lo, hi) = bufs.split_at_mut(ib);
        (&lo[ia], &mut hi[0])
    } else {
        let (lo, hi) = bufs.split_at_mut(ia);
        (&hi[0], &mut lo[ib])
    }
}
