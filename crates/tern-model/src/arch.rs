//! The architecture table: one row per family, read by the one shared forward pass.
//!
//! Adding an architecture means adding a row here (and, only if it needs a genuinely new
//! behaviour, a flag plus the few lines that honour it in `model.rs`). Tensor names follow the
//! Hugging Face `model.layers.{i}.…` convention; GGUF names are mapped onto the same roles by the
//! GGUF loader.

use tern_kernels::ops::Activation;

/// Behavioural flags and defaults of one architecture family.
#[derive(Debug)]
pub struct ArchSpec {
    /// Canonical name.
    pub name: &'static str,
    /// `config.json` `model_type` values answered by this row.
    pub model_types: &'static [&'static str],
    /// `architectures[0]` values answered by this row (informational).
    pub hf_classes: &'static [&'static str],
    /// Activation when `hidden_act` is absent.
    pub default_act: Activation,
    /// q/k/v projections always carry a bias (Qwen2), regardless of `attention_bias`.
    pub qkv_bias: bool,
    /// Per-head RMSNorm on q and k before RoPE (`self_attn.q_norm` / `k_norm`, Qwen3).
    pub qk_norm: bool,
    /// BitNet sub-norms: `self_attn.attn_sub_norm` before `o_proj`, `mlp.ffn_sub_norm` before `down_proj`.
    pub sub_norms: bool,
    /// `tie_word_embeddings` default.
    pub default_tie: bool,
    /// `rope_theta` default.
    pub default_rope_theta: f64,
    /// `rms_norm_eps` default.
    pub default_rms_eps: f64,
    /// `head_dim` when config.json has none (`None`: hidden / heads). Qwen3Config defaults to 128.
    pub default_head_dim: Option<usize>,
    /// How `sliding_window` is read.
    pub sliding_window: SlidingWindow,
    /// Gemma family: RMSNorm scales by `(1 + w)`, embeddings are multiplied by `sqrt(hidden)`, every
    /// block has "sandwich" norms (`post_attention_layernorm` on the attention output,
    /// `pre_feedforward_layernorm` / `post_feedforward_layernorm` around the MLP), attention scores
    /// are scaled by `query_pre_attn_scalar^-0.5`, and sliding-window layers (`layer_types`) use
    /// their own RoPE base.
    pub gemma: bool,
}

/// Sliding-window attention semantics of a config family.
#[derive(Debug, Clone, Copy)]
pub enum SlidingWindow {
    /// The architecture has none (Llama).
    Never,
    /// Only when `use_sliding_window` is true (Qwen2/Qwen3).
    WhenEnabled,
    /// Whenever `sliding_window` is set; `default` when the key is absent (Mistral: 4096).
    Always { default: Option<usize> },
}

/// Every supported architecture.
pub static ARCHS: &[ArchSpec] = &[
    ArchSpec {
        name: "bitnet",
        model_types: &["bitnet"],
        hf_classes: &["BitNetForCausalLM"],
        default_act: Activation::Relu2,
        qkv_bias: false,
        qk_norm: false,
        sub_norms: true,
        default_tie: false,
        default_rope_theta: 500_000.0,
        default_head_dim: None,
        sliding_window: SlidingWindow::Never,
        gemma: false,
        default_rms_eps: 1e-5,
    },
    ArchSpec {
        name: "llama",
        model_types: &["llama"],
        hf_classes: &["LlamaForCausalLM"],
        default_act: Activation::Silu,
        qkv_bias: false,
        qk_norm: false,
        sub_norms: false,
        default_tie: false,
        default_rope_theta: 10_000.0,
        default_head_dim: None,
        sliding_window: SlidingWindow::Never,
        gemma: false,
        default_rms_eps: 1e-6,
    },
    ArchSpec {
        name: "mistral",
        model_types: &["mistral"],
        hf_classes: &["MistralForCausalLM"],
        default_act: Activation::Silu,
        qkv_bias: false,
        qk_norm: false,
        sub_norms: false,
        default_tie: false,
        default_rope_theta: 10_000.0,
        default_head_dim: None,
        sliding_window: SlidingWindow::Always { default: Some(4096) },
        gemma: false,
        default_rms_eps: 1e-6,
    },
    ArchSpec {
        name: "qwen2",
        model_types: &["qwen2"],
        hf_classes: &["Qwen2ForCausalLM"],
        default_act: Activation::Silu,
        qkv_bias: true,
        qk_norm: false,
        sub_norms: false,
        default_tie: false,
        default_rope_theta: 10_000.0,
        default_head_dim: None,
        sliding_window: SlidingWindow::WhenEnabled,
        gemma: false,
        default_rms_eps: 1e-6,
    },
    ArchSpec {
        name: "qwen3",
        model_types: &["qwen3"],
        hf_classes: &["Qwen3ForCausalLM"],
        default_act: Activation::Silu,
        qkv_bias: false,
        qk_norm: true,
        sub_norms: false,
        default_tie: true,
        default_rope_theta: 10_000.0,
        default_head_dim: Some(128),
        sliding_window: SlidingWindow::WhenEnabled,
        gemma: false,
        default_rms_eps: 1e-6,
    },
    ArchSpec {
        name: "gemma3",
        model_types: &["gemma3_text"],
        hf_classes: &["Gemma3ForCausalLM"],
        default_act: Activation::GeluTanh,
        qkv_bias: false,
        qk_norm: true,
        sub_norms: false,
        default_tie: true,
        default_rope_theta: 1_000_000.0,
        default_head_dim: Some(256),
        sliding_window: SlidingWindow::Always { default: Some(4096) },
        gemma: true,
        default_rms_eps: 1e-6,
    },
];

/// The row for a `model_type`.
pub fn by_model_type(model_type: &str) -> Option<&'static ArchSpec> {
    ARCHS.iter().find(|a| a.model_types.contains(&model_type))
}

/// All supported `model_type` names, for error messages.
pub fn supported_model_types() -> String {
    ARCHS.iter().flat_map(|a| a.model_types.iter().copied()).collect::<Vec<_>>().join(", ")
}

/// Parses a transformers `hidden_act` name.
pub fn parse_activation(name: &str) -> Option<Activation> {
    Some(match name {
        "silu" | "swish" => Activation::Silu,
        "gelu" => Activation::Gelu,
        "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" | "gelu_tanh" => Activation::GeluTanh,
        "relu2" => Activation::Relu2,
        "relu" => Activation::Relu,
        _ => return None,
    })
}
