//! `manifest.toml`: what an engine set contains and how its pieces connect.
//!
//! ```toml
//! format_version = 1
//! model = "demo-vla"
//! inputs = [{ name = "image", shape = [1, 3, 64, 64], dtype = "f32" }]
//!
//! [build]
//! backend = "cpu"            # or "onnxruntime", "tensorrt"
//! precision = "fp32"         # fp16, int8 (TensorRT)
//! offramp_version = "0.1.0"
//! target_device = "x86_64 CPU"
//! [build.tools]
//! tract = "0.23"
//!
//! [[exits]]
//! name = "exit0"
//! artifact = "segment0.onnx"
//! sha256 = "…"
//! inputs = [{ name = "image", shape = [1, 3, 64, 64], dtype = "f32" }]
//! outputs = [{ name = "hidden0", shape = [1, 17, 32], dtype = "f32" }, { name = "feature", … }]
//! feature = "feature"        # the output the action head reads
//! macs = 1234567
//! params = 4096
//! peak_activation_bytes = 65536
//!
//! [head]                     # the recurrent action head shared by all exits
//! artifact = "head.onnx"
//! feature_input = "feature"
//! state_input = "h_in"
//! state_output = "h_out"
//! action_output = "action"
//! …
//!
//! [criterion]
//! kind = "action-consistency"   # DeeR; or "max-confidence", "entropy", "margin", "learned", "fixed"
//! thresholds = []               # one per exit but the last, from `offramp calibrate`
//! continuous_dims = [0, 1]
//! ```
//!
//! Segment `i > 0` reads the outputs of segment `i - 1` whose names match its
//! inputs (any number of carried tensors per boundary); segment 0 reads the
//! model `inputs`.
//!
//! Three layouts are accepted (docs/model-format.md has an example of each):
//! - a shared head with a recurrent state (above, DeeR's layout);
//! - a stateless shared head (no `state_input` / `state_output`);
//! - no head: each segment names its own action output (`action = "..."`).
//!
//! The action is continuous, or discrete tokens (`[action] kind = "tokens"`,
//! a [1, D, B] tensor of logits or probabilities and the B bin centres of
//! each of the D dimensions).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The manifest format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Element type of a tensor. Every tensor between engines is f32; an i64
/// model input holds token ids (an instruction), which the runtime keeps as
/// f32 values (exact up to 2^24) and each backend converts when it copies
/// them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    I64,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::I64 => 8,
        }
    }
}

/// Name, static shape and element type of one tensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl TensorSpec {
    pub fn f32(name: &str, shape: &[usize]) -> Self {
        Self {
            name: name.to_string(),
            shape: shape.to_vec(),
            dtype: DType::F32,
        }
    }

    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn bytes(&self) -> usize {
        self.elements() * self.dtype.size()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The ONNX segments, run by tract.
    Cpu,
    Tensorrt,
    /// The same ONNX segments, run by onnxruntime (loaded at run time).
    Onnxruntime,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Tensorrt => "tensorrt",
            BackendKind::Onnxruntime => "onnxruntime",
        }
    }

    /// Whether the set's artifacts are the ONNX segments themselves (tract
    /// and onnxruntime run the same files), rather than compiled plans.
    pub fn runs_onnx(self) -> bool {
        matches!(self, BackendKind::Cpu | BackendKind::Onnxruntime)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Fp16,
    Int8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildInfo {
    pub backend: BackendKind,
    pub precision: Precision,
    pub offramp_version: String,
    /// What built the artifacts, e.g. `tract`, `tensorrt`, `onnx_opset`.
    #[serde(default)]
    pub tools: BTreeMap<String, String>,
    /// CPU model, or GPU name and compute capability for TensorRT plans,
    /// which only run on the GPU and TensorRT version they were built for.
    pub target_device: String,
    /// TensorRT version the plans were built with (`tensorrt` backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensorrt_version: Option<String>,
}

/// Cost figures of one artifact, counted from its graph by `offramp build`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    /// Multiply-accumulates per run (FLOPs ≈ 2 × MACs).
    pub macs: u64,
    pub params: u64,
    /// Largest sum of live intermediate tensors, in execution order.
    pub peak_activation_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    pub name: String,
    /// File name inside the engine-set directory.
    pub artifact: String,
    pub sha256: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// The output the action head reads at this exit (sets with a head).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// The output that is this exit's action (sets without a head, where
    /// every segment emits its own action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The learned criterion's input: the output (one value in [0, 1]) that
    /// is this exit's confidence that it may stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<String>,
    #[serde(flatten)]
    pub cost: Cost,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub artifact: String,
    pub sha256: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub feature_input: String,
    /// The recurrent state's input and output; both absent for a stateless
    /// head (whose only input is the feature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_output: Option<String>,
    pub action_output: String,
    /// A temporal attention head's key/value cache (`[head.cache]`), which
    /// the runtime owns, fills and evicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<crate::cache::CacheSpec>,
    #[serde(flatten)]
    pub cost: Cost,
}

/// `[action]`: what an exit's action tensor holds.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    #[serde(default)]
    pub kind: ActionKind,
    /// Tokens: per action dimension, the continuous value of each bin
    /// (its centre); the action tensor is [1, D, B] with D = `bins.len()`
    /// and B bins per dimension.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bins: Vec<Vec<f32>>,
    /// Tokens: whether the tensor holds logits (the runtime applies a
    /// softmax per dimension) or probabilities.
    #[serde(default)]
    pub scores: TokenScores,
}

impl ActionSpec {
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }

    /// Bins per dimension of a token action (0 for continuous actions).
    pub fn bins_per_dim(&self) -> usize {
        match self.kind {
            ActionKind::Tokens => self.bins.first().map_or(0, Vec::len),
            ActionKind::Continuous => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// The tensor is the action itself (e.g. [1, 2] for (v, ω)).
    #[default]
    Continuous,
    /// Discrete action tokens, one distribution over bins per dimension
    /// (RT-2 / OpenVLA style); the action is the top bin's centre.
    Tokens,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenScores {
    #[default]
    Logits,
    Probabilities,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CriterionKind {
    /// DeeR: stop at the first exit whose action differs from the previous
    /// exit's by less than its threshold (RMS over the continuous dims).
    ActionConsistency,
    /// Discrete heads, whose action output is class probabilities: stop at
    /// the first exit where 1 − the top probability is below its threshold
    /// (a threshold of 0.1 stops once p_max > 0.9).
    MaxConfidence,
    /// Discrete heads: the entropy of the class probabilities over its
    /// largest possible value, ln K (0: certain, 1: uniform).
    Entropy,
    /// Discrete heads: 1 − (p_top1 − p_top2), the top-2 margin (0: one
    /// class has all the mass; 1: the top two tie).
    Margin,
    /// Learned exits: each exit but the last emits its own confidence, a
    /// small exit head's estimate of the probability that stopping here is
    /// safe (trained to predict that this exit's action agrees with the
    /// final exit's). The score is 1 − that probability.
    Learned,
    /// Always stop at `fixed_exit` (baselines).
    Fixed,
}

impl CriterionKind {
    /// A discrete head's score from its class probabilities `p` (lower is
    /// more confident, in [0, 1]); NaN for the kinds that do not score
    /// probabilities. Allocation-free.
    pub fn probability_score(self, p: &[f32]) -> f32 {
        match self {
            Self::MaxConfidence => 1.0 - p.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            Self::Entropy => {
                if p.len() < 2 {
                    return 0.0;
                }
                let h: f32 = p.iter().filter(|x| **x > 0.0).map(|x| -x * x.ln()).sum();
                h / (p.len() as f32).ln()
            }
            Self::Margin => {
                let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
                for &x in p {
                    if x > a {
                        b = a;
                        a = x;
                    } else if x > b {
                        b = x;
                    }
                }
                if p.len() < 2 {
                    return 1.0 - a.clamp(0.0, 1.0);
                }
                1.0 - (a - b)
            }
            Self::ActionConsistency | Self::Learned | Self::Fixed => f32::NAN,
        }
    }
}

#[cfg(test)]
mod criterion_tests {
    use super::CriterionKind::*;

    #[test]
    fn probability_scores_rank_confidence() {
        let certain = [1.0, 0.0, 0.0, 0.0];
        let uniform = [0.25; 4];
        let close = [0.45, 0.44, 0.11, 0.0];
        for k in [MaxConfidence, Entropy, Margin] {
            let (c, u, t) = (
                k.probability_score(&certain),
                k.probability_score(&uniform),
                k.probability_score(&close),
            );
            assert!(c.abs() < 1e-6, "{k:?} certain {c}");
            assert!(c < t && c < u, "{k:?}: {c} {t} {u}");
        }
        assert!((Entropy.probability_score(&uniform) - 1.0).abs() < 1e-6);
        assert!((Margin.probability_score(&uniform) - 1.0).abs() < 1e-6);
        assert!((Margin.probability_score(&close) - 0.99).abs() < 1e-6);
        assert!((MaxConfidence.probability_score(&close) - 0.55).abs() < 1e-6);
        // The margin sees a near-tie that the top probability alone misses.
        let tie = [0.5, 0.5, 0.0];
        let clear = [0.5, 0.1, 0.1, 0.1, 0.1, 0.1];
        assert_eq!(
            MaxConfidence.probability_score(&tie),
            MaxConfidence.probability_score(&clear)
        );
        assert!(Margin.probability_score(&tie) > Margin.probability_score(&clear));
        assert!(ActionConsistency.probability_score(&certain).is_nan());
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    pub kind: CriterionKind,
    /// One per exit but the last (which always stops); empty until
    /// calibrated. Exit i stops when its score is below `thresholds[i]`: the
    /// score is the RMS action delta (action consistency) or 1 − the top
    /// class probability (max confidence).
    #[serde(default)]
    pub thresholds: Vec<f32>,
    /// Action dimensions compared by the criterion (gripper-like binary dims
    /// excluded).
    #[serde(default)]
    pub continuous_dims: Vec<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_exit: Option<usize>,
    /// The deepest exit this deployment may use (0-based), set by
    /// `offramp calibrate` under a memory or latency budget: exits past it
    /// are neither loaded nor run, so their weights take no memory and no
    /// frame (not even one whose cap exit is NaN) runs past the cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deepest_exit: Option<usize>,
    /// DeeR compares exit 0's action with the head applied to a feature
    /// pooled before any block: the name of that output of segment 0.
    /// Without it exit 0 never stops on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit0_reference: Option<String>,
}

/// How camera frames become the model's image inputs: 8-bit RGB scaled to
/// [0, 1], then `(x - mean) / std` per channel, HWC → NCHW, resized to the
/// image input's height and width. One camera: `mean` and `std` here, and
/// the image input is the first model input ([1, 3, H, W]). Several cameras
/// (a front and a wrist camera): `[[preprocess.images]]`, one per image
/// input, each with its own normalisation; camera view k of a frame feeds
/// `images[k]`. `instruction`, if set, names the instruction input: one-hot
/// (f32 [1, K], instruction k sets element k) or token ids (i64 [1, L],
/// instruction k is `instruction_ids[k]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<[f32; 3]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<[f32; 3]>,
    /// The image inputs of a model with several cameras, in camera order
    /// (instead of `mean` and `std`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
    /// `model.toml` only: the `tokenizer.json` (beside the ONNX files) that
    /// `offramp build` turns `instruction_texts` into ids with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// Token-id instructions: the texts, instruction k first...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instruction_texts: Vec<String>,
    /// ...and their ids, padded to L (written by `offramp build` from the
    /// texts and the model's `tokenizer.json`, or given in `model.toml`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instruction_ids: Vec<Vec<i64>>,
}

/// One image input and the normalisation of the camera that feeds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInput {
    /// The model input ([1, 3, H, W] f32).
    pub input: String,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Preprocess {
    /// The image inputs in camera order: `images`, or the first model input
    /// with `mean` and `std` (a set that opened has one or the other; a
    /// missing `mean`/`std` reads as 0/1 here, refused by the set's check).
    pub fn image_inputs(&self, inputs: &[TensorSpec]) -> Vec<ImageInput> {
        if !self.images.is_empty() {
            return self.images.clone();
        }
        inputs
            .first()
            .map(|t| ImageInput {
                input: t.name.clone(),
                mean: self.mean.unwrap_or([0.0; 3]),
                std: self.std.unwrap_or([1.0; 3]),
            })
            .into_iter()
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub model: String,
    pub build: BuildInfo,
    /// Inputs of segment 0 (the preprocessed frame and any instruction).
    pub inputs: Vec<TensorSpec>,
    pub exits: Vec<Segment>,
    /// The action head shared by every exit; absent when each segment
    /// emits its own action (`exits[i].action`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<Head>,
    #[serde(default, skip_serializing_if = "ActionSpec::is_default")]
    pub action: ActionSpec,
    pub criterion: Criterion,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<Preprocess>,
    /// How deep exits served by another device are fed (`offramp serve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<OffloadSpec>,
}

/// `[offload]`: what crosses the link when exits run on another device.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffloadSpec {
    /// The tensors carried across the cut: `fp32` (bit for bit, the
    /// default) or `fp16` (half the bytes; remote exits then differ from
    /// local ones by the rounding).
    #[serde(default)]
    pub carried: CarriedDtype,
    /// Largest magnitude of any element of a server's next recurrent
    /// state the robot commits (default [`OffloadSpec::DEFAULT_MAX_ABS`]):
    /// an answer past it is refused and the frame falls back, so a faulty
    /// or hostile server cannot push the state where the head never was.
    /// A GRU's state is within 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_abs_state: Option<f32>,
    /// Largest magnitude of any element of a server's action (default
    /// [`OffloadSpec::DEFAULT_MAX_ABS`]); the runtime's velocity limits
    /// apply after it as to every action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_abs_action: Option<f32>,
}

impl OffloadSpec {
    /// The bound on a server's state and action elements where the
    /// manifest sets none.
    pub const DEFAULT_MAX_ABS: f32 = 1000.0;

    /// (state, action) bounds, defaults filled in.
    pub fn bounds(&self) -> (f32, f32) {
        (
            self.max_abs_state.unwrap_or(Self::DEFAULT_MAX_ABS),
            self.max_abs_action.unwrap_or(Self::DEFAULT_MAX_ABS),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CarriedDtype {
    #[default]
    Fp32,
    Fp16,
}

impl Head {
    /// The head input called `name` (e.g. `self.feature_input`).
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|t| t.name == name)
    }

    /// The head output called `name` (e.g. `self.action_output`).
    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|t| t.name == name)
    }
}

impl Manifest {
    /// Exits a runtime loads: all of them, or up to `criterion.deepest_exit`.
    pub fn loaded_exits(&self) -> usize {
        let n = self.exits.len();
        self.criterion.deepest_exit.map_or(n, |d| (d + 1).min(n))
    }

    /// Parameters of what a runtime loads: the loaded exits' segments and
    /// the head (× 4 bytes: the weights in fp32).
    pub fn loaded_params(&self) -> u64 {
        let head = self.head.as_ref().map_or(0, |h| h.cost.params);
        let segments: u64 = self.exits[..self.loaded_exits()]
            .iter()
            .map(|s| s.cost.params)
            .sum();
        segments + head
    }

    /// MACs of one run of the head (0 without one).
    pub fn head_macs(&self) -> u64 {
        self.head.as_ref().map_or(0, |h| h.cost.macs)
    }

    /// MACs of running segments `0..=exit` and the head once per exit.
    pub fn cumulative_macs(&self, exit: usize) -> u64 {
        self.exits
            .iter()
            .take(exit + 1)
            .map(|s| s.cost.macs + self.head_macs())
            .sum()
    }

    /// Elements of the recurrent state (0: stateless or no head).
    pub fn state_len(&self) -> usize {
        self.head
            .as_ref()
            .and_then(|h| h.input(h.state_input.as_deref()?))
            .map_or(0, TensorSpec::elements)
    }

    /// The tensor an exit's action is read from (the head's action output,
    /// or exit 0's own action output); `None` if the manifest names none.
    pub fn action_tensor(&self) -> Option<&TensorSpec> {
        match &self.head {
            Some(h) => h.output(&h.action_output),
            None => {
                let s = self.exits.first()?;
                s.outputs
                    .iter()
                    .find(|t| Some(&t.name) == s.action.as_ref())
            }
        }
    }

    /// Dimensions of the action the runtime hands on: the tensor's elements
    /// for continuous actions, one per token dimension for tokens.
    pub fn action_dims(&self) -> usize {
        match self.action.kind {
            ActionKind::Tokens => self.action.bins.len(),
            ActionKind::Continuous => self.action_tensor().map_or(0, TensorSpec::elements),
        }
    }

    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}

/// How `offramp build` names the GPU a TensorRT plan was built for, and how the
/// loader names the GPU it runs on: the two must be equal
/// (`build.target_device`).
pub fn device_identity(name: &str, compute_major: i32, compute_minor: i32) -> String {
    format!("{} (compute {compute_major}.{compute_minor})", name.trim())
}
