//! K-quants: 256-element super-blocks Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
//!
//! Ports of `dequantize_row_q{2,3,4,5,6}_K`, `quantize_row_q4_K_ref`, `quantize_row_q6_K_ref` and
//! their helpers `nearest_int`, `make_qx_quants`, `make_qkx2_quants`, `get_scale_min_k4` from
//! llama.cpp `ggml/src/ggml-quants.c`; float expressions keep ggml's evaluation order so the quantized
//! bytes are identical to ggml's reference built without FMA contraction. Block layouts
//! (`ggml-common.h`), little-endian:
//!
//! | type | bytes | layout |
//! |------|-------|--------|
//! | Q2_K | 84 | `u8 scales[16]` (low nibble scale, high nibble min), `u8 qs[64]`, `f16 d`, `f16 dmin` |
//! | Q3_K | 110 | `u8 hmask[32]`, `u8 qs[64]`, `u8 scales[12]` (16 6-bit scales), `f16 d` |
//! | Q4_K | 144 | `f16 d`, `f16 dmin`, `u8 scales[12]` (8 6-bit scale/min pairs), `u8 qs[128]` |
//! | Q5_K | 176 | `f16 d`, `f16 dmin`, `u8 scales[12]`, `u8 qh[32]`, `u8 qs[128]` |
//! | Q6_K | 210 | `u8 ql[128]`, `u8 qh[64]`, `i8 scales[16]`, `f16 d` |

use super::{f16_at, put_f16};

const QK_K: usize = 256;
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: round to nearest (ties to even) via the 1.5·2^23 trick; exact for |x| < 2^22.
#[inline]
fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    ((val.to_bits() as i32) & 0x007f_ffff) - 0x0040_0000
}

#[inline]
fn get_scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

pub(crate) fn dequantize_q2_k(b: &[u8], out: &mut [f32]) {
    for (blk, y) in b.chunks_exact(84).zip(out.chunks_exact_mut(QK_K)) {
        let scales = &blk[0..16];
        let qs = &blk[16..80];
        let d = f16_at(blk, 80);
        let min = f16_at(blk, 82);
        let mut yi = 0;
        let mut is = 0;
        for n in (0..QK_K).step_by(128) {
            let q = &qs[n / 4..n / 4 + 32];
            for shift in [0u32, 2, 4, 6] {
                for half in 0..2 {
                    let sc = scales[is];
                    is += 1;
                    let dl = d * f32::from(sc & 0xF);
                    let ml = min * f32::from(sc >> 4);
                    for l in 0..16 {
                        let v = (q[l + 16 * half] >> shift) & 3;
                        y[yi] = dl * f32::from(v as i8) - ml;
                        yi += 1;
                    }
                }
            }
        }
    }
}

pub(crate) fn dequantize_q3_k(b: &[u8], out: &mut [f32]) {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    for (blk, y) in b.chunks_exact(110).zip(out.chunks_exact_mut(QK_K)) {
        let hm = &blk[0..32];
        let qs = &blk[32..96];
        let sc_raw = &blk[96..108];
        let d_all = f16_at(blk, 108);

        let word =
            |i: usize| u32::from_le_bytes([sc_raw[4 * i], sc_raw[4 * i + 1], sc_raw[4 * i + 2], sc_raw[4 * i + 3]]);
        let (a0, a1, tmp) = (word(0), word(1), word(2));
        let aux = [
            (a0 & KMASK2) | ((tmp & KMASK1) << 4),
            (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
            ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
            ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
        ];
        let mut scales = [0i8; 16];
        for (i, w) in aux.iter().enumerate() {
            for (k, byte) in w.to_le_bytes().iter().enumerate() {
                scales[4 * i + k] = *byte as i8;
            }
        }

        let mut yi = 0;
        let mut is = 0;
        let mut m: u8 = 1;
        for n in (0..QK_K).step_by(128) {
            let q = &qs[n / 4..n / 4 + 32];
            for shift in [0u32, 2, 4, 6] {
                for half in 0..2 {
                    let dl = d_all * f32::from(i16::from(scales[is]) - 32);
                    is += 1;
                    for l in 0..16 {
                        let idx = l + 16 * half;
                        let low = ((q[idx] >> shift) & 3) as i8;
                        let v = low - if hm[idx] & m != 0 { 0 } else { 4 };
                        y[yi] = dl * f32::from(v);
                        yi += 1;
                    }
                }
                m = m.wrapping_shl(1);
            }
        }
    }
}

pub(crate) fn dequantize_q4_k(b: &[u8], out: &mut [f32]) {
    for (blk, y) in b.chunks_exact(144).zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_at(blk, 0);
        let min = f16_at(blk, 2);
        let scales = &blk[4..16];
        let qs = &blk[16..144];
        for (k, j) in (0..QK_K).step_by(64).enumerate() {
            let (sc1, m1) = get_scale_min_k4(2 * k, scales);
            let (sc2, m2) = get_scale_min_k4(2 * k + 1, scales);
            let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
            let q = &qs[k * 32..k * 32 + 32];
            for l in 0..32 {
                y[j + l] = d1 * f32::from(q[l] & 0xF) - m1;
                y[j + 32 + l] = d2 * f32::from(q[l] >> 4) - m2;
            }
        }
    }
}

pub(crate) fn dequantize_q5_k(b: &[u8], out: &mut [f32]) {
    for (blk, y) in b.chunks_exact(176).zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_at(blk, 0);
        let min = f16_at(blk, 2);
        let scales = &blk[4..16];
        let qh = &blk[16..48];
        let ql_all = &blk[48..176];
        let (mut u1, mut u2) = (1u8, 2u8);
        for (k, j) in (0..QK_K).step_by(64).enumerate() {
            let (sc1, m1) = get_scale_min_k4(2 * k, scales);
            let (sc2, m2) = get_scale_min_k4(2 * k + 1, scales);
            let (d1, m1) = (d * f32::from(sc1), min * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), min * f32::from(m2));
            let ql = &ql_all[k * 32..k * 32 + 32];
            for l in 0..32 {
                let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                y[j + l] = d1 * f32::from((ql[l] & 0xF) + h1) - m1;
                y[j + 32 + l] = d2 * f32::from((ql[l] >> 4) + h2) - m2;
            }
            u1 = u1.wrapping_shl(2);
            u2 = u2.wrapping_shl(2);
        }
    }
}

pub(crate) fn dequantize_q6_k(b: &[u8], out: &mut [f32]) {
    for (blk, y) in b.chunks_exact(210).zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_at(blk, 208);
        for (k, n) in (0..QK_K).step_by(128).enumerate() {
            let ql = &blk[k * 64..k * 64 + 64];
            let qh = &blk[128 + k * 32..128 + k * 32 + 32];
            let sc = &blk[192 + k * 8..192 + k * 8 + 8];
            let y = &mut y[n..n + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                let s = |i: usize| f32::from(sc[i] as i8);
                y[l] = d * s(is) * f32::from(q1);
                y[l + 32] = d * s(is + 2) * f32::from(q2);
                y[l + 64] = d * s(is + 4) * f32::from(q3);
                y[l + 96] = d * s(is + 6) * f32::from(q4);
            }
        }
    }
}

/// ggml's `make_qx_quants` with `qw = NULL` (weights from `rmse_type`).
fn make_qx_quants(nmax: i32, x: &[f32], l_out: &mut [i8], rmse_type: i32) -> f32 {
    let n = x.len();
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let mut iscale = -(nmax as f32) / max;
    if rmse_type == 0 {
        for i in 0..n {
            let l = nearest_int(iscale * x[i]);
            l_out[i] = (nmax + (-nmax).max((nmax - 1).min(l))) as i8;
        }
        return 1.0 / iscale;
    }
    let (rmse_type, return_early) = if rmse_type < 0 { (-rmse_type, true) } else { (rmse_type, false) };
    let weight = |v: f32| -> f32 {
        match rmse_type {
            1 => v * v,
            2 => 1.0,
            3 => v.abs(),
            _ => v.abs().sqrt(),
        }
    };
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let l = (-nmax).max((nmax - 1).min(nearest_int(iscale * x[i])));
        l_out[i] = (l + nmax) as i8;
        let w = weight(x[i]);
        let lf = l as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    if return_early {
        return if suml2 > 0.0 { 0.5 * (scale + 1.0 / iscale) } else { 1.0 / iscale };
    }
    let mut best = scale * sumlx;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &v in x {
            let l = (-nmax).max((nmax - 1).min(nearest_int(iscale * v)));
            let w = weight(v);
            let lf = l as f32;
            sumlx += w * v * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                let l = nearest_int(iscale * x[i]);
                l_out[i] = (nmax + (-nmax).max((nmax - 1).min(l))) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// ggml's `make_qkx2_quants`; returns `(scale, the_min)` where `the_min` is the positive offset.
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    l_aux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out[..n].fill(0);
        return (0.0, -min);
    }
    let nmax_f = nmax as f32;
    let mut iscale = nmax_f / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min));
        l_out[i] = 0.max(nmax.min(l)) as u8;
        let mut diff = scale * f32::from(l_out[i]) + min - x[i];
        diff = if use_mad { diff.abs() } else { diff * diff };
        best_error += weights[i] * diff;
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax_f) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = 0.max(nmax.min(nearest_int(iscale * (x[i] - min))));
            l_aux[i] = l as u8;
            let w = weights[i];
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let dd = sum_w * sum_l2 - sum_l * sum_l;
        if dd > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / dd;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / dd;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let mut diff = this_scale * f32::from(l_aux[i]) + this_min - x[i];
                diff = if use_mad { diff.abs() } else { diff * diff };
                cur_error += weights[i] * diff;
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(&l_aux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// `quantize_row_q4_K_ref`.
pub(crate) fn quantize_q4_k(src: &[f32], dst: &mut [u8]) {
    for (x, blk) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(144)) {
        let mut l = [0u8; QK_K];
        let mut l_aux = [0u8; 32];
        let mut weights = [0f32; 32];
        let mut mins = [0f32; QK_K / 32];
        let mut scales = [0f32; QK_K / 32];

        let mut max_scale = 0.0f32;
        let mut max_min = 0.0f32;
        for j in 0..QK_K / 32 {
            let xs = &x[32 * j..32 * j + 32];
            let mut sum_x2 = 0.0f32;
            for &v in xs {
                sum_x2 += v * v;
            }
            let av_x = (sum_x2 / 32.0).sqrt();
            for (w, &v) in weights.iter_mut().zip(xs) {
                *w = av_x + v.abs();
            }
            let (s, m) =
                make_qkx2_quants(15, xs, &weights, &mut l[32 * j..32 * j + 32], &mut l_aux, -1.0, 0.1, 20, false);
            scales[j] = s;
            mins[j] = m;
            if s > max_scale {
                max_scale = s;
            }
            if m > max_min {
                max_min = m;
            }
        }

        let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
        let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
        blk.fill(0);
        {
            let sc = &mut blk[4..16];
            for j in 0..QK_K / 32 {
                // C: uint8_t ls = nearest_int(...) truncates to 8 bits before MIN(63, ls).
                let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
                let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
                if j < 4 {
                    sc[j] = ls;
                    sc[j + 4] = lm;
                } else {
                    sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
                    sc[j - 4] |= (ls >> 4) << 6;
                    sc[j] |= (lm >> 4) << 6;
                }
            }
        }
        put_f16(blk, 0, max_scale / 63.0);
        put_f16(blk, 2, max_min / 63.0);
        let d_all = f16_at(blk, 0);
        let dmin_all = f16_at(blk, 2);

        for j in 0..QK_K / 32 {
            let (sc, m) = get_scale_min_k4(j, &blk[4..16]);
            let d = d_all * f32::from(sc);
            if d == 0.0 {
                continue;
            }
            let dm = dmin_all * f32::from(m);
            for ii in 0..32 {
                let li = nearest_int((x[32 * j + ii] + dm) / d);
                l[32 * j + ii] = 0.max(15.min(li)) as u8;
            }
        }

        let qs = &mut blk[16..144];
        for (k, j) in (0..QK_K).step_by(64).enumerate() {
            for i in 0..32 {
                qs[32 * k + i] = l[j + i] | (l[j + i + 32] << 4);
            }
        }
    }
}

/// `quantize_row_q6_K_ref`.
pub(crate) fn quantize_q6_k(src: &[f32], dst: &mut [u8]) {
    for (x, blk) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(210)) {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let mut max_scale = 0.0f32;
        let mut max_abs_scale = 0.0f32;
        for ib in 0..QK_K / 16 {
            let scale = make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16], 1);
            scales[ib] = scale;
            let abs_scale = scale.abs();
            if abs_scale > max_abs_scale {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }

        blk.fill(0);
        if max_abs_scale < GROUP_MAX_EPS {
            put_f16(blk, 208, 0.0);
            continue;
        }

        let iscale = -128.0 / max_scale;
        put_f16(blk, 208, 1.0 / iscale);
        for ib in 0..QK_K / 16 {
            // C: int8_t = MIN(127, nearest_int(...)); the conversion keeps the low 8 bits.
            blk[192 + ib] = 127.min(nearest_int(iscale * scales[ib])) as i8 as u8;
        }
        let d_all = f16_at(blk, 208);
        for j in 0..QK_K / 16 {
            let d = d_all * f32::from(blk[192 + j] as i8);
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let li = nearest_int(x[16 * j + ii] / d);
                l[16 * j + ii] = ((-32).max(31.min(li)) + 32) as i8;
            }
        }

        let (ql_all, rest) = blk.split_at_mut(128);
        let qh_all = &mut rest[..64];
        for (k, j) in (0..QK_K).step_by(128).enumerate() {
            let ql = &mut ql_all[64 * k..64 * k + 64];
            let qh = &mut qh_all[32 * k..32 * k + 32];
            for i in 0..32 {
                let lv = |o: usize| l[j + i + o] as u8;
                let q1 = lv(0) & 0xF;
                let q2 = lv(32) & 0xF;
                let q3 = lv(64) & 0xF;
                let q4 = lv(96) & 0xF;
                ql[i] = q1 | (q3 << 4);
                ql[i + 32] = q2 | (q4 << 4);
                qh[i] = (lv(0) >> 4) | ((lv(32) >> 4) << 2) | ((lv(64) >> 4) << 4) | ((lv(96) >> 4) << 6);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-2.6), -3);
        assert_eq!(nearest_int(63.0), 63);
    }
}
