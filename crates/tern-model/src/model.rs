//! The decoder-only transformer forward pass shared by every architecture, and its KV cache.
//!
//! The pass itself is the model's [`Plan`] (crate::plan): embeddings → per layer [RMSNorm → q/k/v →
//! (q/k norm) → RoPE → KV write → causal GQA attention → (attn sub-norm) → o_proj → residual →
//! RMSNorm → gate/up → act·up → (ffn sub-norm) → down → residual] → final norm → LM head, with
//! architecture differences as ops present or absent. This file is the CPU executor of that plan:
//! one `match` per op over named buffers in a [`Workspace`]. [`Model::forward_batch`] runs several
//! sequences at once (continuous batching): projections see all their rows stacked, RoPE, the KV
//! write and attention run per sequence.
//!
//! Buffers live in the [`Workspace`], reused across calls: after the first call at a given row
//! count, a decode step allocates nothing.

use crate::config::ModelConfig;
use crate::linear::{Linear, LinearScratch};
use crate::plan::{last_rows, two, Buf, LinRef, Op, Plan};
use crate::rope::Rope;
use crate::{ModelError, Result};
use tern_kernels::ops::{self, AttnShape};
use tern_kernels::ThreadPool;

/// Weights of one decoder layer.
#[derive(Debug)]
pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub attn_sub_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
    pub ffn_sub_norm: Option<Vec<f32>>,
    /// Gemma sandwich norms: on the attention output and on the MLP output.
    pub post_attn_norm: Option<Vec<f32>>,
    pub post_ffn_norm: Option<Vec<f32>>,
}

/// A loaded model: configuration plus bound weights.
#[derive(Debug)]
pub struct Model {
    pub config: ModelConfig,
    /// Token embeddings as a `vocab × hidden` matrix (rows are looked up; also the tied head).
    pub embed: Linear,
    pub layers: Vec<Layer>,
    pub norm: Vec<f32>,
    /// The LM head; `None` means tied to `embed`.
    pub lm_head: Option<Linear>,
    pub rope: Rope,
    /// RoPE of sliding-window layers when it differs (Gemma-3).
    pub rope_local: Option<Rope>,
}

/// Per-sequence KV cache. Storage is allocated by the executor that first runs the sequence (host
/// memory for the CPU, `[layer][kv_head][position][head_dim]` f32), so an idle server slot or a cache
/// made for a GPU executor costs nothing on the host.
#[derive(Debug)]
pub struct KvCache {
    pub(crate) store: KvStore,
    capacity: usize,
    pub(crate) len: usize,
    n_layers: usize,
    n_kv: usize,
    head_dim: usize,
}

/// Where a cache's storage lives.
#[derive(Debug, Default)]
pub(crate) enum KvStore {
    /// Not used yet.
    #[default]
    Empty,
    /// CPU executor: per layer, `[kv_head][position][head_dim]`.
    Host { k: Vec<Vec<f32>>, v: Vec<Vec<f32>> },
    /// CUDA executor.
    #[cfg(feature = "cuda")]
    Cuda(crate::cuda::CudaKv),
}

impl KvCache {
    /// A cache for up to `capacity` positions.
    pub fn new(cfg: &ModelConfig, capacity: usize) -> KvCache {
        KvCache {
            store: KvStore::Empty,
            capacity,
            len: 0,
            n_layers: cfg.n_layers,
            n_kv: cfg.n_kv_heads,
            head_dim: cfg.head_dim,
        }
    }
    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Forgets positions `n..` (e.g. to reuse a shared prompt prefix).
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }
    /// Bytes the cache holds once allocated (f32 K and V for every layer and position).
    pub fn bytes(&self) -> usize {
        2 * self.n_layers * self.n_kv * self.capacity * self.head_dim * 4
    }
    /// Whether storage has been allocated.
    pub fn is_allocated(&self) -> bool {
        !matches!(self.store, KvStore::Empty)
    }
    pub(crate) fn dims(&self) -> (usize, usize, usize) {
        (self.n_layers, self.n_kv, self.head_dim)
    }
    /// Allocates host storage on first use; an error if the cache lives on a device.
    fn ensure_host(&mut self) -> Result<()> {
        if let KvStore::Empty = self.store {
            let per = self.n_kv * self.capacity * self.head_dim;
            self.store = KvStore::Host {
                k: (0..self.n_layers).map(|_| vec![0f32; per]).collect(),
                v: (0..self.n_layers).map(|_| vec![0f32; per]).collect(),
            };
        }
        match self.store {
            KvStore::Host { .. } => Ok(()),
            #[allow(unreachable_patterns)] // other stores exist with the `cuda` feature
            _ => Err(ModelError::CacheMismatch),
        }
    }
}

/// One sequence of a batched forward call: its new tokens and its own cache.
pub struct SeqInput<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
}

/// Which logits a forward call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// One row per input token.
    All,
    /// Only the last token's row.
    Last,
}

/// Reusable activations and scratch for [`Model::forward`]. A workspace serves one model (it caches
/// that model's [`Plan`]).
#[derive(Default, Debug)]
pub struct Workspace {
    bufs: [Vec<f32>; 9],
    inv_freq: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
    cos_local: Vec<f32>,
    sin_local: Vec<f32>,
    lin: LinearScratch,
    plan: Option<(usize, Plan)>,
    /// The GPU executor, when this workspace runs the model on CUDA.
    #[cfg(feature = "cuda")]
    cuda: Option<Box<crate::cuda::CudaExec>>,
    /// Logits of the last forward call.
    pub logits: Vec<f32>,
}

impl Workspace {
    /// A workspace that runs `m` on CUDA GPU `ordinal` (weights are uploaded now). Caches used with
    /// it live on that GPU.
    #[cfg(feature = "cuda")]
    pub fn cuda(m: &Model, ordinal: usize) -> Result<Workspace> {
        Ok(Workspace { cuda: Some(Box::new(crate::cuda::CudaExec::new(m, ordinal)?)), ..Workspace::default() })
    }

    /// The GPU this workspace runs on, if any.
    pub fn device_name(&self) -> Option<&str> {
        #[cfg(feature = "cuda")]
        if let Some(ex) = &self.cuda {
            return Some(ex.device_name());
        }
        None
    }

    /// The plan of `m`, built on first use.
    fn plan_for(&mut self, m: &Model) -> Plan {
        let key = m as *const Model as usize ^ m.layers.len();
        match self.plan.take() {
            Some((k, p)) if k == key => p,
            _ => Plan::build(m),
        }
    }
}

fn resize(v: &mut Vec<f32>, n: usize) {
    v.resize(n, 0.0);
}

impl Model {
    /// Runs `tokens` (positions `cache.len()..`) through the model, appending to the cache, and
    /// leaves the requested logits in `ws.logits` (`rows × vocab`).
    pub fn forward(
        &self,
        pool: &ThreadPool,
        tokens: &[u32],
        cache: &mut KvCache,
        ws: &mut Workspace,
        which: Logits,
    ) -> Result<()> {
        self.forward_batch(pool, &mut [SeqInput { tokens, cache }], ws, which)
    }

    /// Runs several sequences in one pass (continuous batching): the linear layers see the rows of
    /// all sequences at once, while RoPE, the KV write and attention run per sequence against its own
    /// cache. `ws.logits` holds, in sequence order, each sequence's rows ([`Logits::All`]) or its
    /// last row ([`Logits::Last`]), `rows × vocab`. Sequences with no tokens contribute no rows.
    /// Nothing is written to any cache unless every sequence fits and every id is in range.
    pub fn forward_batch(
        &self,
        pool: &ThreadPool,
        seqs: &mut [SeqInput<'_>],
        ws: &mut Workspace,
        which: Logits,
    ) -> Result<()> {
        let c = &self.config;
        let vocab_in = self.embed.out_features();
        let mut t_n = 0;
        for s in seqs.iter() {
            let pos0 = s.cache.len;
            if pos0 + s.tokens.len() > s.cache.capacity {
                return Err(ModelError::ContextFull { needed: pos0 + s.tokens.len(), capacity: s.cache.capacity });
            }
            if s.cache.dims() != (c.n_layers, c.n_kv_heads, c.head_dim) {
                return Err(ModelError::CacheMismatch);
            }
            for (i, &id) in s.tokens.iter().enumerate() {
                if id as usize >= vocab_in {
                    return Err(ModelError::TokenOutOfRange { id, pos: pos0 + i, vocab: vocab_in });
                }
            }
            t_n += s.tokens.len();
        }
        if t_n == 0 {
            ws.logits.clear();
            return Ok(());
        }
        #[cfg(feature = "cuda")]
        if let Some(ex) = ws.cuda.as_mut() {
            return ex.forward_batch(self, seqs, which, &mut ws.logits);
        }
        for s in seqs.iter_mut() {
            s.cache.ensure_host()?;
        }
        let h = c.hidden;
        for b in Buf::ALL {
            resize(&mut ws.bufs[b.index()], t_n * b.width(c));
        }
        // RoPE tables for every row at its own position (dynamic scaling depends on each sequence's
        // length, so the frequencies are computed per sequence).
        let half = self.rope.rot_dim / 2;
        resize(&mut ws.cos, t_n * half);
        resize(&mut ws.sin, t_n * half);
        if self.rope_local.is_some() {
            resize(&mut ws.cos_local, t_n * half);
            resize(&mut ws.sin_local, t_n * half);
        }
        let mut r0 = 0;
        for s in seqs.iter() {
            let (pos0, n) = (s.cache.len, s.tokens.len());
            if n == 0 {
                continue;
            }
            self.rope.inv_freq_for(pos0 + n, &mut ws.inv_freq);
            for t in 0..n {
                let r = (r0 + t) * half..(r0 + t + 1) * half;
                self.rope.cos_sin(&ws.inv_freq, pos0 + t, &mut ws.cos[r.clone()], &mut ws.sin[r]);
            }
            if let Some(rl) = &self.rope_local {
                rl.inv_freq_for(pos0 + n, &mut ws.inv_freq);
                for t in 0..n {
                    let r = (r0 + t) * half..(r0 + t + 1) * half;
                    rl.cos_sin(&ws.inv_freq, pos0 + t, &mut ws.cos_local[r.clone()], &mut ws.sin_local[r]);
                }
            }
            r0 += n;
        }

        let plan = ws.plan_for(self);
        let eps = c.rms_eps;
        for op in &plan.ops {
            match *op {
                Op::Embed => {
                    let x = &mut ws.bufs[Buf::X.index()];
                    for (t, &id) in seqs.iter().flat_map(|s| s.tokens.iter()).enumerate() {
                        let row = &mut x[t * h..(t + 1) * h];
                        self.embed.row_to_f32(id as usize, row);
                        if let Some(s) = c.embed_scale {
                            row.iter_mut().for_each(|v| *v *= s);
                        }
                    }
                }
                Op::RmsNorm { src, dst, w, offset } => {
                    let w = self.norm(w);
                    if src == dst {
                        ops::rms_norm_inplace(&mut ws.bufs[dst.index()], w, eps, offset);
                    } else {
                        let (s, d) = two(&mut ws.bufs, src, dst);
                        ops::rms_norm(s, w, eps, offset, d);
                    }
                }
                Op::Linear { w, src, dst } => {
                    let (s, d) = two(&mut ws.bufs, src, dst);
                    self.linear(w).forward(pool, s, d, &mut ws.lin);
                }
                Op::Rope { buf, local } => {
                    let (cos_t, sin_t) = if local { (&ws.cos_local, &ws.sin_local) } else { (&ws.cos, &ws.sin) };
                    let (hd, w) = (c.head_dim, buf.width(c));
                    let x = &mut ws.bufs[buf.index()];
                    for t in 0..t_n {
                        let (cs, sn) = (&cos_t[t * half..(t + 1) * half], &sin_t[t * half..(t + 1) * half]);
                        ops::rope_rotate_half(&mut x[t * w..(t + 1) * w], hd, cs, sn);
                    }
                }
                Op::Attention { layer, window, scale } => self.attention(pool, seqs, ws, layer, window, scale),
                Op::Add { dst, src } => {
                    let (s, d) = two(&mut ws.bufs, src, dst);
                    ops::add_inplace(d, s);
                }
                Op::Glu { act } => {
                    let (up, gate) = two(&mut ws.bufs, Buf::Up, Buf::Gate);
                    ops::glu(act, gate, up);
                }
                Op::Head { offset, softcap } => {
                    // Gather the rows whose logits are wanted into Xn, normalize, project.
                    let (x, xn) = two(&mut ws.bufs, Buf::X, Buf::Xn);
                    let n_rows = match which {
                        Logits::All => {
                            ops::rms_norm(x, &self.norm, eps, offset, xn);
                            t_n
                        }
                        Logits::Last => {
                            let mut k = 0;
                            for last in last_rows(seqs.iter().map(|s| s.tokens.len())) {
                                let (src, dst) = (&x[last * h..(last + 1) * h], &mut xn[k * h..(k + 1) * h]);
                                ops::rms_norm(src, &self.norm, eps, offset, dst);
                                k += 1;
                            }
                            k
                        }
                    };
                    resize(&mut ws.logits, n_rows * self.vocab());
                    self.linear(LinRef::Head).forward(pool, &xn[..n_rows * h], &mut ws.logits, &mut ws.lin);
                    if let Some(cap) = softcap {
                        ws.logits.iter_mut().for_each(|l| *l = cap * (*l / cap).tanh());
                    }
                }
            }
        }
        for s in seqs.iter_mut() {
            s.cache.len += s.tokens.len();
        }
        ws.plan = Some((self as *const Model as usize ^ self.layers.len(), plan));
        Ok(())
    }

    /// [`Op::Attention`] on the CPU: per sequence, write its new K/V rows into its cache at its
    /// positions, then attend its Q rows over the cache.
    fn attention(
        &self,
        pool: &ThreadPool,
        seqs: &mut [SeqInput<'_>],
        ws: &mut Workspace,
        li: usize,
        window: Option<usize>,
        scale: f32,
    ) {
        let c = &self.config;
        let (hd, nh, nkv) = (c.head_dim, c.n_heads, c.n_kv_heads);
        let [_, _, q, k, v, att, ..] = &mut ws.bufs;
        let mut r0 = 0;
        for s in seqs.iter_mut() {
            let (pos0, n) = (s.cache.len, s.tokens.len());
            if n == 0 {
                continue;
            }
            let cap = s.cache.capacity;
            // KV write: cache layout [kv_head][pos][d].
            let (kc, vc) = match &mut s.cache.store {
                KvStore::Host { k, v } => (&mut k[li], &mut v[li]),
                _ => continue, // allocated by forward_batch before the plan runs
            };
            for t in 0..n {
                for g in 0..nkv {
                    let dst = (g * cap + pos0 + t) * hd;
                    let src = ((r0 + t) * nkv + g) * hd;
                    kc[dst..dst + hd].copy_from_slice(&k[src..src + hd]);
                    vc[dst..dst + hd].copy_from_slice(&v[src..src + hd]);
                }
            }
            let shape = AttnShape { n_heads: nh, n_kv_heads: nkv, head_dim: hd, capacity: cap, pos0, scale, window };
            let rows = r0 * nh * hd..(r0 + n) * nh * hd;
            ops::attention(pool, shape, &q[rows.clone()], kc, vc, &mut att[rows]);
            r0 += n;
        }
    }

    /// Output vocabulary size (rows of the LM head).
    pub fn vocab(&self) -> usize {
        match &self.lm_head {
            Some(h) => h.out_features(),
            None => self.embed.out_features(),
        }
    }

    /// Weight bytes read per decoded token (all layers + head), for bandwidth reports.
    pub fn weight_bytes_per_token(&self) -> usize {
        let lin: usize = self
            .layers
            .iter()
            .map(|l| [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down].iter().map(|x| x.weight_bytes()).sum::<usize>())
            .sum();
        lin + self.lm_head.as_ref().unwrap_or(&self.embed).weight_bytes()
    }
}
