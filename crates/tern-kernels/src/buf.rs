//! Shared, immutable byte storage for weights: either owned bytes or a window into a memory map.
//!
//! Kernels read weights through [`ByteBuf`] without caring where the bytes live, so a dense bf16
//! weight can be used straight from a memory-mapped safetensors file with no copy.

use std::sync::Arc;

/// An immutable window `[offset, offset + len)` into shared bytes.
#[derive(Clone)]
pub struct ByteBuf {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    offset: usize,
    len: usize,
}

impl ByteBuf {
    /// Wraps owned bytes.
    pub fn from_vec(v: Vec<u8>) -> ByteBuf {
        let len = v.len();
        ByteBuf { owner: Arc::new(v), offset: 0, len }
    }

    /// A window into shared storage (e.g. a memory map). Returns `None` if out of range.
    pub fn from_shared(owner: Arc<dyn AsRef<[u8]> + Send + Sync>, offset: usize, len: usize) -> Option<ByteBuf> {
        let total = (*owner).as_ref().len();
        let end = offset.checked_add(len)?;
        (end <= total).then_some(ByteBuf { owner, offset, len })
    }

    /// The bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.offset..self.offset + self.len]
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for ByteBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ByteBuf({} bytes)", self.len)
    }
}
