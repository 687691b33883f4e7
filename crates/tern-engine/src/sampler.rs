//! Token sampling from logits.
//!
//! Order follows transformers' logits processors: repetition penalty (CTRL-style: positive logits
//! divided, negative multiplied, once per distinct previous token) → temperature → top-k → top-p
//! (nucleus, keeps the smallest set reaching p, at least one token) → min-p (drops tokens whose
//! probability is below `min_p × p_max`) → draw. Temperature 0 (or `greedy`) means argmax after the
//! penalty. Ties in argmax go to the lowest id, as `torch.argmax` does.

use crate::rng::Rng;

/// Sampling settings. Neutral values disable a stage.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1 = off.
    pub top_p: f32,
    /// 0 = off.
    pub min_p: f32,
    /// 1 = off.
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, repetition_penalty: 1.0, seed: 0 }
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        SamplingParams { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, seed: 0 }
    }

    /// Checks ranges; returns the offending field and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(("temperature", format!("{} must be a finite number ≥ 0", self.temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(("top_p", format!("{} must be in (0, 1]", self.top_p)));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(("min_p", format!("{} must be in [0, 1]", self.min_p)));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(("repetition_penalty", format!("{} must be a finite number > 0", self.repetition_penalty)));
        }
        Ok(())
    }
}

/// Stateful sampler (owns the RNG and scratch space; no allocation per token after warm-up).
#[derive(Debug)]
pub struct Sampler {
    pub params: SamplingParams,
    rng: Rng,
    cand: Vec<(f32, u32)>,
    seen: Vec<u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        let rng = Rng::new(params.seed);
        Sampler { params, rng, cand: Vec::new(), seen: Vec::new() }
    }

    /// Picks the next token from `logits` (modified in place by the penalty) given the ids so far.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let p = &self.params;
        if p.repetition_penalty != 1.0 {
            self.seen.clear();
            self.seen.extend(history.iter().copied().filter(|&t| (t as usize) < logits.len()));
            self.seen.sort_unstable();
            self.seen.dedup();
            for &t in &self.seen {
                let l = &mut logits[t as usize];
                *l = if *l > 0.0 { *l / p.repetition_penalty } else { *l * p.repetition_penalty };
            }
        }
        if p.temperature == 0.0 {
            return argmax(logits);
        }
        let inv_t = 1.0 / p.temperature;
        self.cand.clear();
        self.cand.extend(logits.iter().enumerate().filter(|(_, l)| !l.is_nan()).map(|(i, &l)| (l * inv_t, i as u32)));
        if self.cand.is_empty() {
            return 0;
        }
        // Sort descending by logit, ties by id (stable, deterministic).
        let k = if p.top_k > 0 { p.top_k.min(self.cand.len()) } else { self.cand.len() };
        let by_logit = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if k < self.cand.len() {
            self.cand.select_nth_unstable_by(k - 1, by_logit);
            self.cand.truncate(k);
        }
        self.cand.sort_unstable_by(by_logit);
        // Softmax over the kept candidates.
        let m = self.cand[0].0;
        let mut sum = 0f64;
        for c in self.cand.iter_mut() {
            c.0 = (c.0 - m).exp();
            sum += c.0 as f64;
        }
        for c in self.cand.iter_mut() {
            c.0 = (c.0 as f64 / sum) as f32;
        }
        if p.top_p < 1.0 {
            let mut acc = 0f32;
            let mut keep = self.cand.len();
            for (i, c) in self.cand.iter().enumerate() {
                acc += c.0;
                if acc >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
            self.cand.truncate(keep.max(1));
        }
        if p.min_p > 0.0 {
            let thresh = self.cand[0].0 * p.min_p;
            let keep = self.cand.iter().take_while(|c| c.0 >= thresh).count().max(1);
            self.cand.truncate(keep);
        }
        let total: f64 = self.cand.iter().map(|c| c.0 as f64).sum();
        let mut r = self.rng.next_f64() * total;
        for c in &self.cand {
            r -= c.0 as f64;
            if r < 0.0 {
                return c.1;
            }
        }
        self.cand[self.cand.len() - 1].1
    }
}

/// Index of the largest value (first one on ties; NaN never wins).
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut bv = f32::NEG_INFINITY;
    for (i, &x) in v.iter().enumerate() {
        if x > bv {
            bv = x;
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_penalty() {
        let mut s = Sampler::new(SamplingParams::greedy());
        let mut l = vec![1.0, 3.0, 2.0];
        assert_eq!(s.sample(&mut l, &[]), 1);
        let mut s = Sampler::new(SamplingParams { repetition_penalty: 2.0, ..SamplingParams::greedy() });
        let mut l = vec![1.0, 3.0, 2.0, -1.0];
        assert_eq!(s.sample(&mut l, &[1, 1, 3]), 2);
        assert_eq!(l, vec![1.0, 1.5, 2.0, -2.0]);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_reproduces() {
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 1,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            seed: 3,
        });
        let mut l = vec![0.1, 0.2, 5.0, 0.3];
        assert_eq!(s.sample(&mut l, &[]), 2);
        let p = SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, seed: 9 };
        let draw = |p: &SamplingParams| {
            let mut s = Sampler::new(p.clone());
            (0..50).map(|_| s.sample(&mut [0.0f32; 10], &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(&p), draw(&p));
        assert!(draw(&p).iter().collect::<std::collections::HashSet<_>>().len() > 3);
    }

    #[test]
    fn distribution_matches_softmax() {
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            seed: 1,
        });
        let logits = [0.0f32, (2.0f32).ln(), (3.0f32).ln()];
        let mut counts = [0usize; 3];
        for _ in 0..60_000 {
            counts[s.sample(&mut logits.to_vec(), &[]) as usize] += 1;
        }
        for (i, want) in [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0].iter().enumerate() {
            let got = counts[i] as f64 / 60_000.0;
            assert!((got - want).abs() < 0.01, "token {i}: {got} vs {want}");
        }
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // probs 0.5, 0.3, 0.15, 0.05
        let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.75,
            min_p: 0.0,
            repetition_penalty: 1.0,
            seed: 5,
        });
        for _ in 0..2000 {
            assert!(s.sample(&mut logits.clone(), &[]) <= 1);
        }
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.5,
            repetition_penalty: 1.0,
            seed: 5,
        });
        for _ in 0..2000 {
            assert!(s.sample(&mut logits.clone(), &[]) <= 1);
        }
    }

    #[test]
    fn validation() {
        assert!(SamplingParams { top_p: 0.0, ..SamplingParams::default() }.validate().is_err());
        assert!(SamplingParams { temperature: f32::NAN, ..SamplingParams::default() }.validate().is_err());
        assert!(SamplingParams::default().validate().is_ok());
    }
}
