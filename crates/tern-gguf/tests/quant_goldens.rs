//! Reference (de)quantizers against independent goldens (tests/data/quant_goldens.{json,bin}, made by
//! tools/gguf/make_goldens.py): gguf-py's `gguf.quants` for Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 TQ1_0 TQ2_0 F16
//! BF16 (quantize + dequantize) and Q2_K..Q6_K (dequantize), ggml's C `quantize_row_*_ref` for the
//! K-quant bytes, and a numpy transcription of bitnet.cpp for I2_S.
//!
//! Tolerance: none. Dequantized values must be bitwise equal (NaN only needs to match NaN), and where a
//! reference quantizer exists ours must produce identical bytes.

mod common;

use tern_gguf::{dequantize, dequantize_into, quantize, GgmlType};

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn same_bits(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

#[test]
fn dequantize_and_quantize_match_goldens() {
    let meta = common::read_json("quant_goldens.json");
    let blob = std::fs::read(common::data_dir().join("quant_goldens.bin")).expect("quant_goldens.bin");
    assert!(
        meta["cross_check_notes"].as_array().unwrap().is_empty(),
        "gguf-py and ggml disagreed when the goldens were made: {}",
        meta["cross_check_notes"]
    );
    let slice = |j: &serde_json::Value| -> &[u8] {
        let off = j[0].as_u64().unwrap() as usize;
        let len = j[1].as_u64().unwrap() as usize;
        &blob[off..off + len]
    };

    let mut dequant_checked = std::collections::BTreeMap::<String, usize>::new();
    let mut quant_checked = std::collections::BTreeMap::<String, usize>::new();
    let mut failures = Vec::new();
    for e in meta["entries"].as_array().unwrap() {
        let tname = e["type"].as_str().unwrap();
        let case = e["case"].as_str().unwrap();
        let ty = GgmlType::from_name(tname).unwrap();
        let n = e["n"].as_u64().unwrap() as usize;
        let q = slice(&e["quant"]);
        let want = f32s(slice(&e["dequant"]));

        let got = dequantize(ty, q, n).unwrap_or_else(|err| panic!("{tname}/{case}: {err}"));
        let bad: Vec<usize> = (0..n).filter(|&i| !same_bits(got[i], want[i])).collect();
        if !bad.is_empty() {
            let i = bad[0];
            failures.push(format!(
                "{tname}/{case}: dequantize differs at {} of {n} elements, first at {i}: ours {} ({:#010x}) vs reference {} ({:#010x})",
                bad.len(),
                got[i],
                got[i].to_bits(),
                want[i],
                want[i].to_bits()
            ));
        }
        *dequant_checked.entry(tname.to_string()).or_default() += 1;

        // Row-wise dequantization into a slice agrees with the whole-buffer result.
        let shape: Vec<usize> = e["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        if ty != GgmlType::I2_S && shape.len() == 2 && (shape[1] as u64).is_multiple_of(ty.block_size()) {
            let (rows, cols) = (shape[0], shape[1]);
            let row_bytes = q.len() / rows;
            let mut row = vec![0f32; cols];
            for r in 0..rows {
                dequantize_into(ty, &q[r * row_bytes..(r + 1) * row_bytes], &mut row).unwrap();
                assert!(
                    row.iter().zip(&got[r * cols..(r + 1) * cols]).all(|(a, b)| same_bits(*a, *b)),
                    "{tname}/{case}: row {r} differs from whole-buffer dequantization"
                );
            }
        }

        if e["check_quantize"].as_bool().unwrap() && ty.can_quantize() {
            let input = f32s(slice(&e["input"]));
            let ours = quantize(ty, &input).unwrap_or_else(|err| panic!("{tname}/{case}: {err}"));
            if ours != q {
                let i = ours.iter().zip(q).position(|(a, b)| a != b).unwrap_or(0);
                let bs = ty.type_size().unwrap_or(32) as usize;
                failures.push(format!(
                    "{tname}/{case}: quantize differs ({} of {} bytes), first at byte {i} (block {}, byte {}): ours {:#04x} vs {} {:#04x}",
                    ours.iter().zip(q).filter(|(a, b)| a != b).count(),
                    q.len(),
                    i / bs,
                    i % bs,
                    ours[i],
                    e["quant_source"].as_str().unwrap(),
                    q[i]
                ));
            }
            *quant_checked.entry(tname.to_string()).or_default() += 1;
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));

    // Every type the brief names must actually have been exercised.
    for t in [
        "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "TQ1_0",
        "TQ2_0", "I2_S",
    ] {
        assert!(dequant_checked.get(t).copied().unwrap_or(0) >= 4, "dequantization of {t} not covered");
    }
    for t in ["F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q6_K", "TQ1_0", "TQ2_0", "I2_S"] {
        assert!(quant_checked.get(t).copied().unwrap_or(0) >= 4, "quantization of {t} not covered");
    }
    eprintln!("dequantize checked: {dequant_checked:?}\nquantize checked: {quant_checked:?}");
}

#[test]
fn layout_errors_name_type_and_sizes() {
    let e = dequantize(GgmlType::Q4_0, &[0u8; 17], 32).unwrap_err().to_string();
    assert!(e.contains("Q4_0") && e.contains("18") && e.contains("17"), "{e}");
    let e = dequantize(GgmlType::Q4_K, &[0u8; 144], 100).unwrap_err().to_string();
    assert!(e.contains("Q4_K") && e.contains("256") && e.contains("100"), "{e}");
    let e = quantize(GgmlType::Q6_K, &[0.0; 255]).unwrap_err().to_string();
    assert!(e.contains("Q6_K"), "{e}");
    let e = dequantize(GgmlType::IQ2_XXS, &[0u8; 66], 256).unwrap_err().to_string();
    assert!(e.contains("unsupported tensor type IQ2_XXS"), "{e}");
    let e = quantize(GgmlType::Q5_K, &[0.0; 256]).unwrap_err().to_string();
    assert!(e.contains("Q5_K") && e.contains("quantization"), "{e}");
    let e = dequantize(GgmlType::I2_S, &[0u8; 32], 128).unwrap_err().to_string();
    assert!(e.contains("I2_S") && e.contains("64") && e.contains("32"), "{e}");
}

#[test]
fn quantize_dequantize_error_is_small() {
    // Sanity on top of the bitwise goldens: relative RMS error by type on smooth data.
    let x: Vec<f32> = (0..4096).map(|i| ((i as f32) * 0.37).sin() * (1.0 + (i % 7) as f32)).collect();
    let rms = |a: &[f32]| (a.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / a.len() as f64).sqrt();
    for (ty, tol) in [
        (GgmlType::F16, 1e-3),
        (GgmlType::BF16, 5e-3),
        (GgmlType::Q8_0, 1e-2),
        (GgmlType::Q6_K, 2e-2),
        (GgmlType::Q4_K, 8e-2),
        (GgmlType::Q4_0, 1.2e-1),
    ] {
        let q = quantize(ty, &x).unwrap();
        let y = dequantize(ty, &q, x.len()).unwrap();
        let err: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a - b).collect();
        let rel = rms(&err) / rms(&x);
        assert!(rel < tol, "{ty}: relative rms error {rel} >= {tol}");
    }
    // Ternary types reproduce ternary input exactly up to the f16 scale.
    let t: Vec<f32> = (0..1024).map(|i| [-0.5f32, 0.0, 0.5][i % 3]).collect();
    for ty in [GgmlType::TQ1_0, GgmlType::TQ2_0, GgmlType::I2_S] {
        let y = dequantize(ty, &quantize(ty, &t).unwrap(), t.len()).unwrap();
        assert_eq!(y, t, "{ty}");
    }
}
