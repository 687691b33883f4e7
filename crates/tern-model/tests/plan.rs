//! The execution plan names exactly the ops each architecture needs (the fixtures' logits are checked
//! in hf_fixtures.rs; this pins the op lists themselves).

use std::path::Path;
use tern_model::load::load_hf_dir;
use tern_model::plan::{Buf, NormRef, Op, Plan};

fn plan(name: &str) -> (Plan, usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf").join(name);
    let m = load_hf_dir(&dir, None).unwrap();
    (Plan::build(&m), m.layers.len())
}

fn count(p: &Plan, f: impl Fn(&Op) -> bool) -> usize {
    p.ops.iter().filter(|o| f(o)).count()
}

#[test]
fn llama_plan_is_the_plain_pre_norm_block() {
    let (p, n) = plan("llama_rope_linear");
    assert_eq!(p.ops.first(), Some(&Op::Embed));
    assert!(matches!(p.ops.last(), Some(Op::Head { .. })));
    // per layer: 2 norms, 7 linears, 2 ropes, attention, 2 adds, glu
    assert_eq!(p.ops.len(), 2 + n * 15);
    assert_eq!(count(&p, |o| matches!(o, Op::Linear { .. })), 7 * n);
    assert_eq!(count(&p, |o| matches!(o, Op::Rope { local: true, .. })), 0);
}

#[test]
fn bitnet_plan_has_sub_norms_without_offset() {
    let (p, n) = plan("bitnet_autobitlinear_packed");
    let subs = count(
        &p,
        |o| matches!(o, Op::RmsNorm { w: NormRef::AttnSub(_) | NormRef::FfnSub(_), offset, .. } if *offset == 0.0),
    );
    assert_eq!(subs, 2 * n);
}

#[test]
fn gemma3_plan_has_sandwich_norms_and_local_rope() {
    let (p, n) = plan("gemma3_text_swa");
    assert_eq!(count(&p, |o| matches!(o, Op::RmsNorm { w: NormRef::PostAttn(_) | NormRef::PostFfn(_), .. })), 2 * n);
    assert_eq!(count(&p, |o| matches!(o, Op::RmsNorm { src: Buf::Q, dst: Buf::Q, .. })), n);
    let local = count(&p, |o| matches!(o, Op::Rope { local: true, .. }));
    let windowed = count(&p, |o| matches!(o, Op::Attention { window: Some(_), .. }));
    assert!(local > 0 && local == 2 * windowed, "{local} local ropes, {windowed} windowed layers");
}
