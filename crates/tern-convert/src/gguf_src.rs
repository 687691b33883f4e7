//! Planning the re-quantization of a GGUF file.
//!
//! Metadata is copied in order, except `general.file_type` (the new target), `general.alignment`
//! (the output uses the default 32) and `general.quantization_version` (2). The architecture is
//! renamed where the type requires it: I2_S lives only under bitnet.cpp's `bitnet-b1.58` (from
//! `bitnet`), and leaving I2_S renames `bitnet-b1.58` to llama.cpp's `bitnet`; `{arch}.*` keys follow
//! the name. Tensors keep their names, dims and order; each is dequantized and re-encoded with the same
//! rules as HF sources (norms, biases and 1-D tensors F32, embeddings/head F16 for ternary targets,
//! llama-quantize fallbacks). A per-tensor `*.scale` (llama.cpp's bitnet `wq_s`) is folded into its
//! weight. A tensor already in the chosen type is copied byte for byte. Ternary targets require
//! ternary weights: every value `t·s` with one `s` per tensor (or per block for TQ1_0/TQ2_0 sources
//! going to TQ1_0/TQ2_0), checked before anything is written.

use crate::data::TensorData;
use crate::encode::Encoder;
use crate::error::{ConvertError, Result};
use crate::target::{fit_type, TargetType};
use crate::{ConvertOptions, Plan, PlannedTensor};
use std::collections::HashMap;
use std::sync::Arc;
use tern_gguf::{GgmlType, GgufFile, TensorInfo, Value};

const BITNET_CPP: &[&str] = &["bitnet-b1.58", "bitnet-25"];

fn is_embedding(name: &str) -> bool {
    matches!(name, "token_embd.weight" | "output.weight")
}

/// `(max |v|, whether every value is 0 or ±max)` of a GGUF tensor (times `mul`), read in row chunks.
fn ternary_scan(data: &TensorData, rows: usize, cols: usize) -> std::result::Result<(f32, bool), String> {
    let mut amax = 0f32;
    let mut buf = Vec::new();
    let step = (1 << 20) / cols.max(1) + 1;
    // First pass: the scale.
    for r0 in (0..rows).step_by(step) {
        buf.clear();
        data.rows(r0, (r0 + step).min(rows), &mut buf)?;
        for &x in &buf {
            if !x.is_finite() {
                return Err(format!("non-finite value {x}"));
            }
            amax = amax.max(x.abs());
        }
    }
    let tol = amax * 1e-5;
    for r0 in (0..rows).step_by(step) {
        buf.clear();
        data.rows(r0, (r0 + step).min(rows), &mut buf)?;
        if buf.iter().any(|&x| x.abs() > tol && (x.abs() - amax).abs() > tol) {
            return Ok((amax, false));
        }
    }
    Ok((amax, true))
}

pub(crate) fn plan(opts: &ConvertOptions) -> Result<Plan> {
    let path = opts.source.as_path();
    let src = path.display().to_string();
    let file = Arc::new(GgufFile::open(path)?);
    let md = file.metadata();
    let old_arch = md.get_str("general.architecture")?.to_string();
    let target = opts.target;
    let mut notes = Vec::new();
    let arch = if target == TargetType::I2_S {
        match old_arch.as_str() {
            "bitnet" => "bitnet-b1.58".to_string(),
            a if BITNET_CPP.contains(&a) => a.to_string(),
            other => {
                return Err(ConvertError::unsupported(
                    &src,
                    format!(
                        "--type i2_s is bitnet.cpp's type and needs a BitNet architecture, not '{other}'; use tq2_0 \
                         or tq1_0"
                    ),
                ))
            }
        }
    } else if old_arch == "bitnet-b1.58" {
        notes.push("renaming architecture bitnet-b1.58 (bitnet.cpp) to bitnet (llama.cpp)".into());
        "bitnet".to_string()
    } else {
        old_arch.clone()
    };
    // Metadata.
    let prefix = format!("{old_arch}.");
    let mut metadata: Vec<(String, Value)> = Vec::new();
    for (key, value) in md.iter() {
        let key = match key.strip_prefix(&prefix) {
            Some(rest) => format!("{arch}.{rest}"),
            None => key.to_string(),
        };
        let value = match key.as_str() {
            "general.architecture" => Value::from(arch.as_str()),
            "general.file_type" => Value::U32(target.file_type()),
            "general.quantization_version" => Value::U32(2),
            "general.alignment" => continue,
            _ => value.clone(),
        };
        metadata.push((key, value));
    }
    if !metadata.iter().any(|(k, _)| k == "general.file_type") {
        metadata.push(("general.file_type".into(), Value::U32(target.file_type())));
    }
    // Renaming between bitnet.cpp's `bitnet-b1.58` (squared ReLU implied) and llama.cpp's `bitnet` (SiLU
    // implied): keep the activation the source implied by writing it explicitly
    // (`tern_model::load_gguf::gguf_activation`).
    let act_key = format!("{arch}.hidden_activation");
    if arch != old_arch && !metadata.iter().any(|(k, _)| *k == act_key) {
        let implied = if old_arch == "bitnet" { "silu" } else { "relu2" };
        metadata.push((act_key, implied.into()));
    }
    if let Some(name) = &opts.name {
        match metadata.iter_mut().find(|(k, _)| k == "general.name") {
            Some(e) => e.1 = name.as_str().into(),
            None => metadata.push(("general.name".into(), name.as_str().into())),
        }
    }
    // `*.scale` tensors folded into their weights.
    let infos = file.tensors();
    let by_name: HashMap<&str, usize> = infos.iter().enumerate().map(|(i, t)| (t.name.as_str(), i)).collect();
    let mut scales: HashMap<String, f32> = HashMap::new();
    for t in infos {
        if let Some(base) = t.name.strip_suffix(".scale") {
            let wname = format!("{base}.weight");
            if t.n_elements() == 1 && by_name.contains_key(wname.as_str()) {
                let v = file.dequantize_tensor(t)?;
                let s = v.first().copied().unwrap_or(f32::NAN);
                if !s.is_finite() {
                    return Err(ConvertError::tensor(&src, &t.name, format!("scale {s} is not finite")));
                }
                scales.insert(wname, s);
            }
        }
    }
    if !scales.is_empty() {
        notes.push(format!("{} per-tensor .scale tensors folded into their weights", scales.len()));
    }
    let mut tensors: Vec<PlannedTensor> = Vec::new();
    for (index, t) in infos.iter().enumerate() {
        if t.name.ends_with(".scale") && scales.contains_key(&format!("{}.weight", t.name.trim_end_matches(".scale"))) {
            continue;
        }
        tensors.push(plan_tensor(&file, index, t, target, scales.get(&t.name).copied(), &src, &mut notes)?);
    }
    let lossy = |t: GgmlType| {
        !matches!(
            t,
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::TQ1_0 | GgmlType::TQ2_0 | GgmlType::I2_S
        )
    };
    let requantized = tensors
        .iter()
        .filter(|t| {
            t.data.raw().is_none()
                && infos.iter().any(|i| i.name == t.name && lossy(i.ggml_type) && i.ggml_type != t.ggml_type)
        })
        .count();
    if requantized > 0 {
        notes.push(format!(
            "{requantized} tensors were already block-quantized and are quantized again (error adds up; convert from \
             the original checkpoint where possible)"
        ));
    }
    let vocab_summary = match md.get("tokenizer.ggml.model") {
        Some(Value::String(s)) => format!("{} (copied from the source GGUF)", s.to_str().unwrap_or("?")),
        _ => "none in the source GGUF".into(),
    };
    Ok(Plan { source: opts.source.clone(), target, arch, metadata, tensors, notes, vocab_summary })
}

fn plan_tensor(
    file: &Arc<GgufFile>,
    index: usize,
    t: &TensorInfo,
    target: TargetType,
    scale: Option<f32>,
    src: &str,
    notes: &mut Vec<String>,
) -> Result<PlannedTensor> {
    let name = t.name.clone();
    let ne0 = t.ne0();
    let rows = t.n_rows() as usize;
    let mul = scale.unwrap_or(1.0);
    let readable = t.ggml_type.can_dequantize();
    let bad = |reason: String| ConvertError::tensor(src, &name, reason);
    let is_vector =
        t.dims.iter().filter(|&&d| d != 1).count() <= 1 || name.ends_with("_norm.weight") || !name.ends_with(".weight");
    let want = if is_vector {
        GgmlType::F32
    } else if is_embedding(&name) && target.is_ternary() {
        GgmlType::F16
    } else {
        target.ggml()
    };
    let (ty, note) = if is_vector { (GgmlType::F32, None) } else { fit_type(want, ne0, &name) };
    notes.extend(note);
    let source_type = t.ggml_type;
    let origin =
        format!("{name} ({source_type}{})", if mul != 1.0 { format!(", × folded scale {mul}") } else { String::new() });
    let dims = t.dims.clone();
    // Verbatim copy.
    if ty == source_type && mul == 1.0 {
        let data = TensorData::Gguf { file: Arc::clone(file), index, mul, raw: true };
        return Ok(PlannedTensor { name, dims, ggml_type: ty, origin, data, encoder: Encoder::Rows(ty) });
    }
    if !readable {
        return Err(bad(format!(
            "unsupported tensor type {source_type}: it cannot be dequantized for re-quantization to {ty}"
        )));
    }
    let data = TensorData::Gguf { file: Arc::clone(file), index, mul, raw: false };
    let weight_of_ternary_target = target.is_ternary() && !is_vector && !is_embedding(&name);
    let encoder = if weight_of_ternary_target {
        let per_block_tq =
            matches!(source_type, GgmlType::TQ1_0 | GgmlType::TQ2_0) && matches!(ty, GgmlType::TQ1_0 | GgmlType::TQ2_0);
        if per_block_tq {
            Encoder::Rows(ty)
        } else {
            let (s, ternary) = ternary_scan(&data, rows, ne0 as usize).map_err(&bad)?;
            if !ternary {
                return Err(bad(format!(
                    "--type {target} needs ternary weights (every value 0 or ±scale), but this {source_type} tensor \
                     holds other values; use a dense type"
                )));
            }
            match ty {
                GgmlType::I2_S => Encoder::I2S { scale: s },
                GgmlType::Q4_0 => Encoder::TernaryQ4_0 { scale: s },
                other => Encoder::Rows(other),
            }
        }
    } else {
        Encoder::Rows(ty)
    };
    Ok(PlannedTensor { name, dims, ggml_type: encoder.ggml_type(), origin, data, encoder })
}
