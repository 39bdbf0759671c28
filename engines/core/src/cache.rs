//! `[head.cache]`: a temporal attention head's key/value cache, as the
//! manifest describes it, and where its tensors sit among the head's.
//!
//! The head attends from the current frame's entry over a fixed number of
//! cache slots (plus itself). The runtime owns the cache: per layer a key
//! and a value tensor `[.., slots, dim]` (the slot axis is the second from
//! last; `[heads, slots, dim]` or `[1, heads, slots, dim]`), an additive
//! mask `[1, slots]` (0 where a slot holds an entry, [`MASKED`] where it is
//! empty, minus the recency bias), and optionally each slot's position
//! (its rank by recency, 1 = the newest cached entry; the current frame is
//! 0). The head returns the current frame's key and value per layer
//! (`[.., 1, dim]`) and its attention weights over the slots
//! (`[.., slots]`, or `[.., slots + 1]` with the current frame last). Which
//! entries stay is the runtime's eviction (`runtime/core`'s `kv_cache`):
//! `sinks` first frames, `saddles` entries ranked by the attention they
//! draw, and a ring of the `recent` newest.

use crate::manifest::{DType, Head, TensorSpec};
use serde::{Deserialize, Serialize};

/// The mask value of an empty slot: far below any attention logit, and
/// still finite in fp16 (a plan built in half precision keeps it).
pub const MASKED: f32 = -10_000.0;

fn default_decay() -> f32 {
    0.9
}

/// `[head.cache]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    /// Head inputs, one per layer: the cached keys `[.., slots, dim]`
    /// (ONNX convention: `past_key_values.{layer}.key`).
    pub past_keys: Vec<String>,
    /// Head inputs: the cached values (`past_key_values.{layer}.value`).
    pub past_values: Vec<String>,
    /// Head outputs: the current frame's key per layer, `[.., 1, dim]`
    /// (`present.{layer}.key`).
    pub present_keys: Vec<String>,
    /// Head outputs: its value per layer (`present.{layer}.value`).
    pub present_values: Vec<String>,
    /// Head input `[1, slots]`: added to the attention logits over the slots.
    pub mask: String,
    /// Head input `[1, slots]`: each slot's rank by recency (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positions: Option<String>,
    /// Head output `[.., slots]` or `[.., slots + 1]`: the current frame's
    /// attention weights (any leading axes: layers, heads; they are
    /// averaged), which rank the saddles.
    pub attention: String,
    /// Slots kept for the episode's first entries (attention sinks; the
    /// frames that carried the instruction).
    pub sinks: usize,
    /// Slots for the entries that drew the most attention (Inf-MLLM's
    /// attention saddles).
    pub saddles: usize,
    /// Slots of the ring of the newest entries (at least 1).
    pub recent: usize,
    /// Each committed frame multiplies every entry's accumulated attention
    /// by this before adding its own weights: the saddle score is an
    /// exponentially decayed sum over about `1 / (1 - decay)` frames.
    #[serde(default = "default_decay")]
    pub saddle_decay: f32,
    /// Added to the mask as `-recency_bias × rank`: a bias towards newer
    /// entries (0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recency_bias: f32,
}

fn is_zero(x: &f32) -> bool {
    *x == 0.0
}

/// One layer of the cache: the head's tensors by index and their geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLayer {
    /// Head input indices of the cached keys and values.
    pub past_key: usize,
    pub past_value: usize,
    /// Head output indices of the current frame's key and value.
    pub present_key: usize,
    pub present_value: usize,
    /// Product of the axes before the slot axis (heads).
    pub rows: usize,
    pub key_dim: usize,
    pub value_dim: usize,
}

/// A [`CacheSpec`] resolved against its head: what the runtime allocates.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheLayout {
    pub slots: usize,
    pub layers: Vec<CacheLayer>,
    pub mask: usize,
    pub positions: Option<usize>,
    pub attention: usize,
    /// Attention weights per row: `slots` or `slots + 1`.
    pub attention_stride: usize,
    pub sinks: usize,
    pub saddles: usize,
    pub recent: usize,
    pub decay: f32,
    pub recency_bias: f32,
}

impl CacheLayout {
    /// Elements of one staged entry: every layer's key and value.
    pub fn entry_len(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.rows * (l.key_dim + l.value_dim))
            .sum()
    }

    /// Bytes the cache holds (keys, values, mask and positions, f32); the
    /// runtime also keeps one staged entry and its attention per exit.
    pub fn bytes(&self) -> usize {
        4 * (self.slots * self.entry_len() + 2 * self.slots)
    }
}

/// A field of `[head.cache]` and what is wrong with it.
pub type CacheError = (String, String);

impl CacheSpec {
    /// Checks the spec against its head's tensors and places each named
    /// tensor; the error names the field (`head.cache.…`) and the problem.
    pub fn resolve(&self, head: &Head) -> Result<CacheLayout, CacheError> {
        let err = |field: &str, message: String| (format!("head.cache.{field}"), message);
        let slots = self
            .sinks
            .checked_add(self.saddles)
            .and_then(|s| s.checked_add(self.recent))
            .ok_or_else(|| {
                err(
                    "sinks",
                    format!(
                        "sinks + saddles + recent = {} + {} + {} does not fit a slot count",
                        self.sinks, self.saddles, self.recent
                    ),
                )
            })?;
        if self.recent == 0 {
            return Err(err(
                "recent",
                "0: the newest entries need at least one slot".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.saddle_decay) {
            return Err(err(
                "saddle_decay",
                format!("{}: must be within [0, 1]", self.saddle_decay),
            ));
        }
        // The oldest held slot's bias stays above an empty slot's mask.
        if !self.recency_bias.is_finite()
            || self.recency_bias < 0.0
            || self.recency_bias as f64 * slots as f64 >= -(MASKED as f64) / 2.0
        {
            return Err(err(
                "recency_bias",
                format!(
                    "{}: must be finite, not negative, and below {} / slots ({slots}) so that a held slot stays far above an empty one ({MASKED})",
                    self.recency_bias,
                    -MASKED / 2.0
                ),
            ));
        }
        // Each name once: a tensor cannot be two things.
        let mut names: Vec<(&str, &str)> = [
            ("past_keys", &self.past_keys),
            ("past_values", &self.past_values),
            ("present_keys", &self.present_keys),
            ("present_values", &self.present_values),
        ]
        .into_iter()
        .flat_map(|(f, list)| list.iter().map(move |n| (f, n.as_str())))
        .chain([
            ("mask", self.mask.as_str()),
            ("attention", self.attention.as_str()),
        ])
        .chain(self.positions.as_deref().map(|p| ("positions", p)))
        .chain([
            ("feature_input", head.feature_input.as_str()),
            ("action_output", head.action_output.as_str()),
        ])
        .chain(head.state_input.as_deref().map(|s| ("state_input", s)))
        .collect();
        names.sort_by_key(|&(_, n)| n);
        if let Some(w) = names.windows(2).find(|w| w[0].1 == w[1].1) {
            return Err(err(
                w[1].0,
                format!(
                    "{:?} is also named by {}: each tensor has one role",
                    w[1].1, w[0].0
                ),
            ));
        }
        let layers = self.past_keys.len();
        if layers == 0 {
            return Err(err(
                "past_keys",
                "empty: name one key input per layer".into(),
            ));
        }
        for (field, list) in [
            ("past_values", &self.past_values),
            ("present_keys", &self.present_keys),
            ("present_values", &self.present_values),
        ] {
            if list.len() != layers {
                return Err(err(
                    field,
                    format!(
                        "{} names for {layers} layers (past_keys names {layers})",
                        list.len()
                    ),
                ));
            }
        }
        let find = |list: &[TensorSpec], name: &str, field: &str, side: &str| {
            let i = list
                .iter()
                .position(|t| t.name == name)
                .ok_or_else(|| err(field, format!("{name:?} is not an {side} of the head")))?;
            if list[i].dtype != DType::F32 {
                return Err(err(field, format!("{name:?} is not f32")));
            }
            Ok(i)
        };
        // Rows, slots and dim of a [.., slots, dim] tensor.
        let geometry = |t: &TensorSpec, field: &str| match t.shape.as_slice() {
            [lead @ .., s, d] => lead
                .iter()
                .try_fold(1usize, |a, &x| a.checked_mul(x))
                .map(|rows| (rows, *s, *d))
                .ok_or_else(|| err(field, format!("{:?} is {:?}: too large", t.name, t.shape))),
            _ => Err(err(
                field,
                format!(
                    "{:?} is {:?}: a cache tensor is [.., slots, dim]",
                    t.name, t.shape
                ),
            )),
        };
        let mut out = Vec::with_capacity(layers);
        for l in 0..layers {
            let mut side = [(0, 0, 0, 0); 2];
            for (k, (past, present, pf, nf)) in [
                (
                    &self.past_keys[l],
                    &self.present_keys[l],
                    "past_keys",
                    "present_keys",
                ),
                (
                    &self.past_values[l],
                    &self.present_values[l],
                    "past_values",
                    "present_values",
                ),
            ]
            .into_iter()
            .enumerate()
            {
                let pi = find(&head.inputs, past, pf, "input")?;
                let ni = find(&head.outputs, present, nf, "output")?;
                let (rows, s, d) = geometry(&head.inputs[pi], pf)?;
                if s != slots {
                    return Err(err(
                        pf,
                        format!(
                            "{past:?} has {s} slots (shape {:?}) but sinks + saddles + recent = {} + {} + {} = {slots}",
                            head.inputs[pi].shape, self.sinks, self.saddles, self.recent
                        ),
                    ));
                }
                let (nrows, one, nd) = geometry(&head.outputs[ni], nf)?;
                if (nrows, one, nd) != (rows, 1, d) {
                    return Err(err(
                        nf,
                        format!(
                            "{present:?} is {:?}: the current entry of {past:?} {:?} has one slot and the same other axes",
                            head.outputs[ni].shape, head.inputs[pi].shape
                        ),
                    ));
                }
                side[k] = (pi, ni, rows, d);
            }
            let [(past_key, present_key, rows, key_dim), (past_value, present_value, vrows, value_dim)] =
                side;
            if vrows != rows {
                return Err(err(
                    "past_values",
                    format!("layer {l}: the values have {vrows} rows (heads) but the keys {rows}"),
                ));
            }
            out.push(CacheLayer {
                past_key,
                past_value,
                present_key,
                present_value,
                rows,
                key_dim,
                value_dim,
            });
        }
        let per_slot = |name: &str, field: &str| -> Result<usize, CacheError> {
            let i = find(&head.inputs, name, field, "input")?;
            let n = head.inputs[i].elements();
            if n != slots {
                return Err(err(
                    field,
                    format!(
                        "{name:?} is {:?}: one value per slot ({slots}) is expected",
                        head.inputs[i].shape
                    ),
                ));
            }
            Ok(i)
        };
        let mask = per_slot(&self.mask, "mask")?;
        let positions = match &self.positions {
            Some(p) => Some(per_slot(p, "positions")?),
            None => None,
        };
        let attention = find(&head.outputs, &self.attention, "attention", "output")?;
        let a = &head.outputs[attention];
        let stride = a.shape.last().copied().unwrap_or(0);
        if stride != slots && stride != slots + 1 {
            return Err(err(
                "attention",
                format!(
                    "{:?} is {:?}: its last axis must be the {slots} slots (or {} with the current frame)",
                    a.name,
                    a.shape,
                    slots + 1
                ),
            ));
        }
        Ok(CacheLayout {
            slots,
            layers: out,
            mask,
            positions,
            attention,
            attention_stride: stride,
            sinks: self.sinks,
            saddles: self.saddles,
            recent: self.recent,
            decay: self.saddle_decay,
            recency_bias: self.recency_bias,
        })
    }

    /// The head inputs the cache feeds.
    pub fn inputs(&self) -> impl Iterator<Item = &str> {
        self.past_keys
            .iter()
            .chain(&self.past_values)
            .chain(std::iter::once(&self.mask))
            .chain(&self.positions)
            .map(String::as_str)
    }
}
