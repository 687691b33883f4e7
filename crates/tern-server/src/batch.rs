//! One forward pass over several sequences, each with its own KV cache, returning the last row of
//! logits of each (in order) as `rows × vocab`: a thin wrapper over `Model::forward_batch`, whose
//! linear layers see the rows of all sequences at once while RoPE, the KV write and attention run
//! per sequence.

use tern_kernels::ThreadPool;
use tern_model::model::SeqInput;
use tern_model::{KvCache, Logits, Model, ModelError, Workspace};

/// Runs each `(tokens, cache)` and leaves each sequence's last-position logits in `out`
/// (every sequence must have at least one token).
pub fn forward_last(
    model: &Model,
    pool: &ThreadPool,
    inputs: &mut [(&[u32], &mut KvCache)],
    ws: &mut Workspace,
    out: &mut Vec<f32>,
) -> Result<(), ModelError> {
    let mut seqs: Vec<SeqInput<'_>> = inputs.iter_mut().map(|(tokens, cache)| SeqInput { tokens, cache }).collect();
    model.forward_batch(pool, &mut seqs, ws, Logits::Last)?;
    std::mem::swap(out, &mut ws.logits);
    Ok(())
}
