//! Fuzz-style robustness: valid GGUF files (gguf-py's pywriter files and a file from our writer with
//! K-quant, ternary and I2_S tensors) are truncated and mutated at random, and every result must be a
//! clean `Ok` or `Err` — no panic — including reading every tensor's data, dequantizing it and calling
//! the typed getters on every key. Bounded: a few thousand cases, well under a second each batch.
//! The last corpus file is also the committed seed of the libFuzzer target
//! (`fuzz/seeds/gguf_reader/all_types.gguf`, checked by `fuzz_seed_is_current`).

mod common;

use proptest::prelude::*;
use tern_gguf::{GgmlType, GgufFile, GgufWriter, ReadOptions, TypeIdDialect};

fn corpus() -> Vec<Vec<u8>> {
    let mut v = vec![
        std::fs::read(common::data_dir().join("pywriter.gguf")).unwrap(),
        std::fs::read(common::data_dir().join("pywriter_align64.gguf")).unwrap(),
    ];
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", "bitnet-b1.58").unwrap();
    w.add_kv("k.nested", tern_gguf::Value::Array(tern_gguf::Array::Array(vec![tern_gguf::Array::U32(vec![1, 2])])))
        .unwrap();
    let types = [
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::I2_S,
        GgmlType::Q5_1,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
    ];
    for (i, t) in types.iter().enumerate() {
        w.add_tensor(format!("t{i}"), &[256], *t).unwrap();
    }
    let mut out = w.write_header(Vec::new()).unwrap();
    for (i, t) in types.iter().enumerate() {
        let n = t.storage_size(&[256]).unwrap() as usize;
        let bytes: Vec<u8> = (0..n).map(|j| (j * 31 + i * 7) as u8).collect();
        out.write_tensor(&format!("t{i}"), &bytes).unwrap();
    }
    v.push(out.finish().unwrap());
    v
}

/// Exercise everything a consumer would touch; must not panic.
fn exercise(bytes: Vec<u8>) {
    for opts in [ReadOptions::default(), ReadOptions { type_id_dialect: TypeIdDialect::Upstream }] {
        if let Ok(f) = GgufFile::from_bytes_with(bytes.clone(), &opts) {
            let m = f.metadata();
            for k in m.keys() {
                let _ = m.get_str(k);
                let _ = m.get_u32(k);
                let _ = m.get_uint(k);
                let _ = m.get_float(k);
                let _ = m.get_str_array(k);
                let _ = m.get_arr_f32(k);
            }
            for t in f.tensors() {
                let data = f.tensor_data(t).expect("validated tensor must be readable");
                assert_eq!(data.len() as u64, t.n_bytes);
                let _ = f.dequantize_tensor(t);
            }
        }
    }
}

#[test]
fn every_truncation() {
    for file in corpus() {
        let full = GgufFile::from_bytes(file.clone()).unwrap();
        let data_end = full.data_offset() + full.tensors().iter().map(|t| t.offset + t.n_bytes).max().unwrap_or(0);
        for n in 0..file.len() {
            // A prefix parses only if it still holds every tensor's data (the padding after the last
            // tensor is optional), and then it is the same file.
            match GgufFile::from_bytes(file[..n].to_vec()) {
                Ok(f) => {
                    assert!(n as u64 >= data_end, "prefix {n} < {data_end} parsed");
                    assert_eq!(f.tensors(), full.tensors());
                }
                Err(_) => assert!((n as u64) < data_end, "prefix {n} >= {data_end} failed"),
            }
        }
    }
}

#[test]
fn every_single_byte_overwrite_of_headers() {
    for file in corpus() {
        let header_len = GgufFile::from_bytes(file.clone()).unwrap().data_offset() as usize;
        for pos in 0..header_len {
            for val in [0x00u8, 0xFF, 0x7F, 0x80, file[pos] ^ 0x01] {
                let mut m = file.clone();
                m[pos] = val;
                exercise(m);
            }
        }
    }
}

const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    5,
    9,
    12,
    13,
    31,
    32,
    36,
    39,
    63,
    64,
    255,
    256,
    1 << 30,
    (1 << 30) + 1,
    1 << 31,
    1 << 32,
    1 << 60,
    i64::MAX as u64,
    1 << 63,
    u64::MAX - 31,
    u64::MAX,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_mutations(which in 0usize..3, edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..4, any::<u64>(), any::<prop::sample::Index>()), 1..6), cut in any::<prop::sample::Index>(), do_cut in any::<bool>()) {
        let mut file = corpus().swap_remove(which);
        for (pos, kind, rnd, pick) in edits {
            let p = pos.index(file.len());
            match kind {
                0 => file[p] = rnd as u8,
                1 => {
                    let v = INTERESTING[pick.index(INTERESTING.len())];
                    let end = (p + 8).min(file.len());
                    let bytes = v.to_le_bytes();
                    file[p..end].copy_from_slice(&bytes[..end - p]);
                }
                2 => {
                    let v = INTERESTING[pick.index(INTERESTING.len())] as u32;
                    let end = (p + 4).min(file.len());
                    let bytes = v.to_le_bytes();
                    file[p..end].copy_from_slice(&bytes[..end - p]);
                }
                _ => {
                    // duplicate a chunk in place (shifts everything after it)
                    let len = (rnd as usize % 64).min(file.len() - p);
                    let chunk = file[p..p + len].to_vec();
                    file.splice(p..p, chunk);
                }
            }
        }
        if do_cut {
            let n = cut.index(file.len() + 1);
            file.truncate(n);
        }
        exercise(file);
    }
}

/// The cargo-fuzz seed (`fuzz/seeds/gguf_reader/all_types.gguf`) is this corpus' multi-type file;
/// `TERN_BLESS=1` rewrites it.
#[test]
fn fuzz_seed_is_current() {
    let seed = corpus().pop().unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/gguf_reader/all_types.gguf");
    if std::env::var_os("TERN_BLESS").is_some() {
        std::fs::write(&path, &seed).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_else(|e| {
        panic!("{}: {e}; create it with TERN_BLESS=1 cargo test -p tern-gguf --test fuzz", path.display())
    });
    assert!(committed == seed, "{} is stale: rerun with TERN_BLESS=1", path.display());
    let f = GgufFile::from_bytes(seed).unwrap();
    assert!(f.tensors().iter().any(|t| t.ggml_type == GgmlType::I2_S));
}
