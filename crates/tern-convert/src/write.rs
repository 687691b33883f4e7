//! Writing a [`Plan`]: the GGUF header from tern-gguf's [`GgufWriter`] (which also checks that every
//! type id reads back under the file's architecture), then each tensor streamed in chunks of rows —
//! only one chunk of values and its encoded bytes are in memory at a time — each padded to the
//! alignment exactly as `GgufWriter`'s offsets say. The file is written to `OUT.partial` next to
//! the output and renamed when complete, so an interrupted conversion never leaves a truncated
//! `OUT`; the partial file is removed on error.

use crate::error::{ConvertError, Result};
use crate::Plan;
use std::io::Write;
use std::path::{Path, PathBuf};
use tern_gguf::{GgmlType, GgufWriter};

/// Progress of the write, reported before each tensor and once at the end (`index == total`).
#[derive(Debug, Clone)]
pub struct WriteProgress<'a> {
    pub index: usize,
    pub total: usize,
    /// The tensor about to be written (empty at the end).
    pub name: &'a str,
    pub ggml_type: Option<GgmlType>,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    pub path: PathBuf,
    pub file_bytes: u64,
    pub tensors: usize,
}

/// Values per chunk (about 4 MiB of f32).
const CHUNK_VALUES: usize = 1 << 20;

struct Partial {
    path: PathBuf,
    done: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

impl Plan {
    /// Writes the GGUF file to `out`. Refuses to overwrite an existing file unless `force`.
    pub fn write(&self, out: &Path, force: bool, progress: &mut dyn FnMut(&WriteProgress<'_>)) -> Result<WriteSummary> {
        if out.exists() {
            if same_file(out, &self.source) {
                return Err(ConvertError::OutputIsSource { path: out.to_path_buf() });
            }
            if !force {
                return Err(ConvertError::OutputExists { path: out.to_path_buf() });
            }
            if out.is_dir() {
                return Err(ConvertError::BadSource {
                    path: out.to_path_buf(),
                    reason: "the output path is a directory".into(),
                });
            }
        }
        let mut w = GgufWriter::new();
        for (k, v) in &self.metadata {
            w.add_kv(k.clone(), v.clone())?;
        }
        for t in &self.tensors {
            w.add_tensor(t.name.clone(), &t.dims, t.ggml_type)?;
        }
        let infos = w.tensors().to_vec();
        let alignment = w.alignment();
        let header_len = w.header_bytes().len() as u64;
        let file_name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out.gguf".into());
        let tmp = out.with_file_name(format!("{file_name}.partial"));
        let mut guard = Partial { path: tmp.clone(), done: false };
        let file = std::fs::File::create(&tmp).map_err(|e| ConvertError::io(&tmp, "create", e))?;
        let mut bw = std::io::BufWriter::with_capacity(8 << 20, file);
        drop(w.write_header(&mut bw)?);
        let io = |e| ConvertError::io(&tmp, "write", e);
        let bytes_total: u64 = infos.iter().map(|t| t.n_bytes).sum();
        let mut bytes_done = 0u64;
        let mut pos = header_len;
        let mut vals: Vec<f32> = Vec::new();
        let mut enc: Vec<u8> = Vec::new();
        for (i, (t, info)) in self.tensors.iter().zip(&infos).enumerate() {
            progress(&WriteProgress {
                index: i,
                total: self.tensors.len(),
                name: &t.name,
                ggml_type: Some(t.ggml_type),
                bytes_done,
                bytes_total,
            });
            if pos != header_len + info.offset {
                return Err(ConvertError::tensor(
                    &tmp.display().to_string(),
                    &t.name,
                    format!("internal: data at byte {pos}, header says {}", header_len + info.offset),
                ));
            }
            let fail = |reason: String| {
                ConvertError::tensor(&self.source.display().to_string(), &t.origin, format!("→ {}: {reason}", t.name))
            };
            let mut written = 0u64;
            if let Some(raw) = t.data.raw() {
                let raw = raw.map_err(fail)?;
                bw.write_all(raw).map_err(io)?;
                written = raw.len() as u64;
            } else {
                let cols = t.ne0() as usize;
                let rows = t.n_rows() as usize;
                let step = (CHUNK_VALUES / cols.max(1)).max(1);
                let mut r0 = 0;
                while r0 < rows {
                    let r1 = (r0 + step).min(rows);
                    vals.clear();
                    enc.clear();
                    t.data.rows(r0, r1, &mut vals).map_err(fail)?;
                    if vals.len() != (r1 - r0) * cols {
                        return Err(fail(format!("read {} values for rows {r0}..{r1} of {cols}", vals.len())));
                    }
                    if t.ggml_type == GgmlType::F32 {
                        if let Some(j) = vals.iter().position(|x| !x.is_finite()) {
                            return Err(fail(format!("non-finite value {} at index {}", vals[j], r0 * cols + j)));
                        }
                    }
                    t.encoder.encode(&vals, cols, &mut enc).map_err(fail)?;
                    bw.write_all(&enc).map_err(io)?;
                    written += enc.len() as u64;
                    r0 = r1;
                }
                let tail = t.encoder.tail();
                bw.write_all(&tail).map_err(io)?;
                written += tail.len() as u64;
            }
            if written != info.n_bytes {
                return Err(fail(format!("encoded {written} bytes, the header declares {}", info.n_bytes)));
            }
            let pad = (alignment - written % alignment) % alignment;
            bw.write_all(&vec![0u8; pad as usize]).map_err(io)?;
            pos += written + pad;
            bytes_done += written;
        }
        progress(&WriteProgress {
            index: self.tensors.len(),
            total: self.tensors.len(),
            name: "",
            ggml_type: None,
            bytes_done,
            bytes_total,
        });
        let file = bw.into_inner().map_err(|e| ConvertError::io(&tmp, "flush", e.into_error()))?;
        file.sync_all().map_err(|e| ConvertError::io(&tmp, "sync", e))?;
        drop(file);
        std::fs::rename(&tmp, out).map_err(|e| ConvertError::io(out, "rename the finished .partial file", e))?;
        guard.done = true;
        Ok(WriteSummary { path: out.to_path_buf(), file_bytes: pos, tensors: self.tensors.len() })
    }
}
