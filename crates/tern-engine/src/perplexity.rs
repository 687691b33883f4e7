//! Perplexity with llama-perplexity's semantics (`tools/perplexity/perplexity.cpp`,
//! `perplexity()`): the token stream is cut into non-overlapping windows of `ctx` tokens; when the
//! model adds BOS, each window's first token is replaced by BOS; only the second half of each window
//! is scored (each position predicts the next token), so every scored token has at least `ctx/2`
//! tokens of context. The result is `exp(mean NLL)` with the delta-method standard error llama.cpp
//! prints as `PPL = X +/- Y`.

use tern_kernels::ThreadPool;
use tern_model::{KvCache, Logits, Model, ModelError, Workspace};

/// Running totals after each window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PplState {
    pub windows: usize,
    pub scored: usize,
    pub nll: f64,
    pub nll2: f64,
}

impl PplState {
    /// Current perplexity estimate.
    pub fn ppl(&self) -> f64 {
        (self.nll / self.scored.max(1) as f64).exp()
    }
    /// Standard error of the perplexity (llama.cpp's formula).
    pub fn ppl_err(&self) -> f64 {
        let n = self.scored as f64;
        if self.scored < 2 {
            return f64::NAN;
        }
        let mean = self.nll / n;
        let var = (self.nll2 / n - mean * mean).max(0.0) / (n - 1.0);
        self.ppl() * var.sqrt()
    }
}

/// Errors specific to perplexity runs.
#[derive(Debug, thiserror::Error)]
pub enum PplError {
    #[error("need at least {needed} tokens (two windows' worth is not required, but one full window of --ctx {ctx}); the text has {have}")]
    TooShort { needed: usize, have: usize, ctx: usize },
    #[error("--ctx must be at least 2, got {0}")]
    BadCtx(usize),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Computes perplexity over `tokens`, calling `on_window` after each window.
pub fn perplexity(
    model: &Model,
    pool: &ThreadPool,
    tokens: &[u32],
    ctx: usize,
    batch: usize,
    bos: Option<u32>,
    on_window: impl FnMut(&PplState),
) -> Result<PplState, PplError> {
    perplexity_in(model, pool, &mut Workspace::default(), tokens, ctx, batch, bos, on_window)
}

/// [`perplexity`] running in `ws` (e.g. a CUDA workspace).
#[allow(clippy::too_many_arguments)]
pub fn perplexity_in(
    model: &Model,
    pool: &ThreadPool,
    ws: &mut Workspace,
    tokens: &[u32],
    ctx: usize,
    batch: usize,
    bos: Option<u32>,
    mut on_window: impl FnMut(&PplState),
) -> Result<PplState, PplError> {
    if ctx < 2 {
        return Err(PplError::BadCtx(ctx));
    }
    let n_windows = tokens.len() / ctx;
    if n_windows == 0 {
        return Err(PplError::TooShort { needed: ctx, have: tokens.len(), ctx });
    }
    let mut st = PplState { windows: 0, scored: 0, nll: 0.0, nll2: 0.0 };
    let mut cache = KvCache::new(&model.config, ctx);
    let vocab = model.vocab();
    let first = ctx / 2;
    let mut window = vec![0u32; ctx];
    let mut logits = vec![0f32; ctx * vocab];
    for w in 0..n_windows {
        window.copy_from_slice(&tokens[w * ctx..(w + 1) * ctx]);
        if let Some(b) = bos {
            window[0] = b;
        }
        cache.truncate(0);
        let mut i = 0;
        while i < ctx {
            let end = (i + batch.max(1)).min(ctx);
            model.forward(pool, &window[i..end], &mut cache, ws, Logits::All)?;
            logits[i * vocab..end * vocab].copy_from_slice(&ws.logits);
            i = end;
        }
        for pos in first..ctx - 1 {
            let row = &logits[pos * vocab..(pos + 1) * vocab];
            let target = tokens[w * ctx + pos + 1] as usize;
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
            let nll = lse - row[target] as f64;
            st.nll += nll;
            st.nll2 += nll * nll;
            st.scored += 1;
        }
        st.windows += 1;
        on_window(&st);
    }
    Ok(st)
}
