//! libFuzzer target for the GGUF reader (`tern_gguf::GgufFile`): parses arbitrary bytes under both
//! type-id dialects, then touches everything a consumer would: every metadata getter on every key,
//! every tensor's byte view (which the parse validated, so it must be readable and exactly
//! `n_bytes` long), and the reference dequantizer on every tensor small enough to keep iterations
//! fast. A panic, an abort, an out-of-bounds access (AddressSanitizer) or an allocation above
//! libFuzzer's `-malloc_limit_mb` is a finding; `Err` is the expected outcome for bad input.
//! Seeds: `fuzz/seeds/gguf_reader` plus `crates/tern-gguf/tests/data/*.gguf` (see fuzz/smoke.sh).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_gguf::{GgufFile, ReadOptions, TypeIdDialect};

/// Tensors up to this many elements are dequantized (larger ones only have their bytes checked).
const MAX_DEQUANT_ELEMENTS: u64 = 1 << 16;

fuzz_target!(|data: &[u8]| {
    for dialect in [TypeIdDialect::Auto, TypeIdDialect::Upstream, TypeIdDialect::BitnetCpp] {
        let Ok(f) = GgufFile::from_bytes_with(data.to_vec(), &ReadOptions { type_id_dialect: dialect }) else {
            continue;
        };
        let _ = (f.version(), f.alignment(), f.data_offset(), f.architecture(), format!("{f:?}"));
        let m = f.metadata();
        for (k, v) in m.iter() {
            let _ = (v.describe(), v.as_uint(), v.as_int(), v.as_float(), v.value_type());
            let _ = m.get_str(k);
            let _ = m.get_str_opt(k);
            let _ = m.get_u32(k);
            let _ = m.get_uint(k);
            let _ = m.get_int(k);
            let _ = m.get_float(k);
            let _ = m.get_array(k);
            let _ = m.get_str_array(k);
            let _ = m.get_arr_f32(k);
        }
        for t in f.tensors() {
            assert!(f.tensor(&t.name).is_some_and(|u| u == t), "tensor index out of sync for {:?}", t.name);
            let bytes = f.tensor_data(t).expect("a validated tensor's data must be readable");
            assert_eq!(bytes.len() as u64, t.n_bytes, "{}", t.name);
            let _ = (t.n_elements(), t.ne0(), t.n_rows(), t.ggml_type.to_string());
            if t.n_elements() <= MAX_DEQUANT_ELEMENTS {
                if let Ok(v) = f.dequantize_tensor(t) {
                    assert_eq!(v.len() as u64, t.n_elements(), "{}", t.name);
                }
            }
        }
    }
});
