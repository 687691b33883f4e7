//! The execution plan: the decoder forward pass as a flat list of [`Op`]s, built once per model from
//! its configuration and the weights it actually has.
//!
//! The plan is the only description of the architecture at run time. Every backend executes the same
//! list: the CPU interpreter in [`crate::model`] and the CUDA executor (which also captures it as a
//! graph). Architecture differences (Gemma's sandwich norms, BitNet's sub-norms, Qwen3's q/k norms,
//! sliding-window layers with their own RoPE) appear as ops present or absent, never as backend code.
//! Fusions are rewrites of this list that a backend may apply; the unfused list is the reference.
//!
//! Buffers are named activation slots ([`Buf`]) of `rows × width` f32, where `rows` is the number of
//! tokens in the call (all sequences of a batch stacked) and `width` comes from the config.

use crate::config::ModelConfig;
use crate::linear::Linear;
use crate::model::Model;
use tern_kernels::ops::Activation;

/// A named activation buffer, `rows × width(cfg)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Buf {
    /// Residual stream (`hidden`).
    X,
    /// Normalized input of the next projection (`hidden`).
    Xn,
    /// Queries (`heads · head_dim`).
    Q,
    /// Keys of the new tokens (`kv_heads · head_dim`).
    K,
    /// Values of the new tokens (`kv_heads · head_dim`).
    V,
    /// Attention output (`heads · head_dim`).
    Att,
    /// Output of o_proj / down_proj (`hidden`).
    O,
    /// Gate projection, then the GLU product (`ffn`).
    Gate,
    /// Up projection (`ffn`).
    Up,
}

impl Buf {
    pub const ALL: [Buf; 9] = [Buf::X, Buf::Xn, Buf::Q, Buf::K, Buf::V, Buf::Att, Buf::O, Buf::Gate, Buf::Up];

    /// Row width in f32 elements.
    pub fn width(self, c: &ModelConfig) -> usize {
        match self {
            Buf::X | Buf::Xn | Buf::O => c.hidden,
            Buf::Q | Buf::Att => c.n_heads * c.head_dim,
            Buf::K | Buf::V => c.n_kv_heads * c.head_dim,
            Buf::Gate | Buf::Up => c.ffn,
        }
    }

    /// Dense index `0..9`.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Borrows two distinct activation buffers of an executor (one slot per [`Buf`], in
/// [`Buf::index`] order), the first shared and the second mutable.
pub fn two<T>(bufs: &mut [T], a: Buf, b: Buf) -> (&T, &mut T) {
    assert_ne!(a, b, "plan op reads and writes the same buffer");
    let (ia, ib) = (a.index(), b.index());
    if ia < ib {
        let (lo, hi) = bufs.split_at_mut(ib);
        (&lo[ia], &mut hi[0])
    } else {
        let (lo, hi) = bufs.split_at_mut(ia);
        (&hi[0], &mut lo[ib])
    }
}

/// The stacked rows of a batch whose logits [`Op::Head`] computes for `Logits::Last`: the last row
/// of every sequence that has tokens, in order, given each sequence's token count.
pub fn last_rows(lens: impl Iterator<Item = usize>) -> impl Iterator<Item = usize> {
    lens.scan(0usize, |r0, n| {
        *r0 += n;
        Some((n > 0).then(|| *r0 - 1))
    })
    .flatten()
}

/// Which projection of which layer (or the LM head).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinRef {
    Q(usize),
    K(usize),
    V(usize),
    O(usize),
    Gate(usize),
    Up(usize),
    Down(usize),
    /// The LM head (the embedding matrix when tied).
    Head,
}

/// Which norm weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NormRef {
    Attn(usize),
    QNorm(usize),
    KNorm(usize),
    AttnSub(usize),
    PostAttn(usize),
    Ffn(usize),
    FfnSub(usize),
    PostFfn(usize),
    /// The final norm before the head.
    Final,
}

/// One step of the forward pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// `X ← embed[token] · embed_scale` for every row.
    Embed,
    /// Row-wise RMSNorm `dst = src / rms(src) · (w + offset)`; the row width is `len(w)`, so q/k norms
    /// apply per head. `src == dst` is in place.
    RmsNorm { src: Buf, dst: Buf, w: NormRef, offset: f32 },
    /// `dst = src · Wᵀ` (with the weight's own bias, scale and input norm).
    Linear { w: LinRef, src: Buf, dst: Buf },
    /// Rotate-half RoPE on every head of every row, at each row's position; `local` picks the
    /// sliding-window layers' table.
    Rope { buf: Buf, local: bool },
    /// Append `K`/`V` rows to each sequence's cache of `layer`, then causal GQA attention of `Q` over
    /// it into `Att` (keys limited to the last `window` positions when set).
    Attention { layer: usize, window: Option<usize>, scale: f32 },
    /// `dst += src`.
    Add { dst: Buf, src: Buf },
    /// `gate = act(gate) · up`.
    Glu { act: Activation },
    /// Final norm of the rows whose logits are wanted, LM head, optional soft-capping.
    Head { offset: f32, softcap: Option<f32> },
}

/// The op list of one model.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub ops: Vec<Op>,
}

impl Plan {
    /// Builds the plan of `m`: one pass over its layers, emitting only the ops its weights call for.
    pub fn build(m: &Model) -> Plan {
        let c = &m.config;
        let off = c.norm_offset;
        let scale = c.attn_scale.unwrap_or(1.0 / (c.head_dim as f32).sqrt());
        let mut ops = vec![Op::Embed];
        for (li, l) in m.layers.iter().enumerate() {
            let sliding = c.layer_is_sliding(li);
            let local = sliding && m.rope_local.is_some();
            ops.push(Op::RmsNorm { src: Buf::X, dst: Buf::Xn, w: NormRef::Attn(li), offset: off });
            ops.push(Op::Linear { w: LinRef::Q(li), src: Buf::Xn, dst: Buf::Q });
            ops.push(Op::Linear { w: LinRef::K(li), src: Buf::Xn, dst: Buf::K });
            ops.push(Op::Linear { w: LinRef::V(li), src: Buf::Xn, dst: Buf::V });
            if l.q_norm.is_some() {
                ops.push(Op::RmsNorm { src: Buf::Q, dst: Buf::Q, w: NormRef::QNorm(li), offset: off });
            }
            if l.k_norm.is_some() {
                ops.push(Op::RmsNorm { src: Buf::K, dst: Buf::K, w: NormRef::KNorm(li), offset: off });
            }
            ops.push(Op::Rope { buf: Buf::Q, local });
            ops.push(Op::Rope { buf: Buf::K, local });
            ops.push(Op::Attention { layer: li, window: if sliding { c.sliding_window } else { None }, scale });
            if l.attn_sub_norm.is_some() {
                ops.push(Op::RmsNorm { src: Buf::Att, dst: Buf::Att, w: NormRef::AttnSub(li), offset: 0.0 });
            }
            ops.push(Op::Linear { w: LinRef::O(li), src: Buf::Att, dst: Buf::O });
            if l.post_attn_norm.is_some() {
                ops.push(Op::RmsNorm { src: Buf::O, dst: Buf::O, w: NormRef::PostAttn(li), offset: off });
            }
            ops.push(Op::Add { dst: Buf::X, src: Buf::O });
            ops.push(Op::RmsNorm { src: Buf::X, dst: Buf::Xn, w: NormRef::Ffn(li), offset: off });
            ops.push(Op::Linear { w: LinRef::Gate(li), src: Buf::Xn, dst: Buf::Gate });
            ops.push(Op::Linear { w: LinRef::Up(li), src: Buf::Xn, dst: Buf::Up });
            ops.push(Op::Glu { act: c.act });
            if l.ffn_sub_norm.is_some() {
                ops.push(Op::RmsNorm { src: Buf::Gate, dst: Buf::Gate, w: NormRef::FfnSub(li), offset: 0.0 });
            }
            ops.push(Op::Linear { w: LinRef::Down(li), src: Buf::Gate, dst: Buf::O });
            if l.post_ffn_norm.is_some() {
                ops.push(Op::RmsNorm { src: Buf::O, dst: Buf::O, w: NormRef::PostFfn(li), offset: off });
            }
            ops.push(Op::Add { dst: Buf::X, src: Buf::O });
        }
        ops.push(Op::Head { offset: off, softcap: c.final_softcap });
        Plan { ops }
    }
}

fn opt(o: &Option<Vec<f32>>) -> &[f32] {
    o.as_deref().unwrap_or(&[])
}

impl Model {
    /// The weight a [`LinRef`] names.
    pub fn linear(&self, r: LinRef) -> &Linear {
        match r {
            LinRef::Q(l) => &self.layers[l].q,
            LinRef::K(l) => &self.layers[l].k,
            LinRef::V(l) => &self.layers[l].v,
            LinRef::O(l) => &self.layers[l].o,
            LinRef::Gate(l) => &self.layers[l].gate,
            LinRef::Up(l) => &self.layers[l].up,
            LinRef::Down(l) => &self.layers[l].down,
            LinRef::Head => self.lm_head.as_ref().unwrap_or(&self.embed),
        }
    }

    /// The weight a [`NormRef`] names. Plans only reference norms the model has; an absent optional
    /// norm yields an empty slice.
    pub fn norm(&self, r: NormRef) -> &[f32] {
        match r {
            NormRef::Attn(l) => &self.layers[l].attn_norm,
            NormRef::QNorm(l) => opt(&self.layers[l].q_norm),
            NormRef::KNorm(l) => opt(&self.layers[l].k_norm),
            NormRef::AttnSub(l) => opt(&self.layers[l].attn_sub_norm),
            NormRef::PostAttn(l) => opt(&self.layers[l].post_attn_norm),
            NormRef::Ffn(l) => &self.layers[l].ffn_norm,
            NormRef::FfnSub(l) => opt(&self.layers[l].ffn_sub_norm),
            NormRef::PostFfn(l) => opt(&self.layers[l].post_ffn_norm),
            NormRef::Final => &self.norm,
        }
    }
}
