//! Helpers shared by the fixture tests: where the transformers fixtures live, their reference
//! logits, and the comparison measures.
#![allow(dead_code)] // each test file uses a subset

use std::path::{Path, PathBuf};
use tern_formats::SafetensorsSet;

/// `tests/fixtures/hf` at the repository root.
pub fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf")
}

/// A fixture's `reference.safetensors`: the input ids and transformers' float32 logits.
pub struct Reference {
    pub ids: Vec<u32>,
    pub logits: Vec<f32>,
    pub vocab: usize,
}

pub fn reference(dir: &Path) -> Reference {
    let set = SafetensorsSet::open_files(&[dir.join("reference.safetensors")]).unwrap();
    let ids = set.get("input_ids").unwrap().to_i64().unwrap().into_iter().map(|x| x as u32).collect();
    let l = set.get("logits").unwrap();
    Reference { ids, vocab: l.shape[1], logits: l.to_f32().unwrap() }
}

/// ‖a − b‖₂ / ‖b‖₂.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |b, (i, x)| if *x > v[b] { i } else { b })
}

pub fn top3(v: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
    idx.truncate(3);
    idx
}
