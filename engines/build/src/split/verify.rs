//! The check every split passes before it is kept: the full model and the
//! chained segments run with tract on the same seeded inputs, exit by exit.

use super::{invalid, SplitOptions, CONFIDENCE};
use crate::analyze::analyze;
use offramp_engines::manifest::{DType, TensorSpec};
use offramp_engines::Result;
use std::collections::HashMap;
use std::path::Path;
use tract_onnx::prelude::*;

/// Deterministic inputs: f32 in [-1, 1), token ids 0 or 1 (valid in any
/// vocabulary).
pub(super) fn seeded_inputs(specs: &[TensorSpec]) -> Vec<Tensor> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    specs
        .iter()
        .map(|s| match s.dtype {
            DType::F32 => {
                let v: Vec<f32> = (0..s.elements())
                    .map(|_| (next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
                    .collect();
                tract_ndarray::Array::from_shape_vec(s.shape.clone(), v)
                    .map(Tensor::from)
                    .unwrap_or_else(|_| Tensor::from(0.0f32))
            }
            DType::I64 => {
                let v: Vec<i64> = (0..s.elements()).map(|_| (next() >> 63) as i64).collect();
                tract_ndarray::Array::from_shape_vec(s.shape.clone(), v)
                    .map(Tensor::from)
                    .unwrap_or_else(|_| Tensor::from(0i64))
            }
        })
        .collect()
}

pub(super) type Values = HashMap<String, (Vec<usize>, Vec<f32>)>;

fn load(
    path: &Path,
    inputs: &[TensorSpec],
    outputs: Option<&[&str]>,
) -> TractResult<Arc<TypedRunnableModel>> {
    let mut model = tract_onnx::onnx().model_for_path(path)?;
    offramp_engines_cpu::set_input_facts(&mut model, inputs)?;
    if let Some(names) = outputs {
        let outlets = names
            .iter()
            .map(|n| {
                model
                    .find_outlet_label(n)
                    .ok_or_else(|| TractError::msg(format!("no tensor {n:?}")))
            })
            .collect::<TractResult<Vec<_>>>()?;
        model.select_output_outlets(&outlets)?;
    }
    model.into_typed()?.into_decluttered()?.into_runnable()
}

fn values(names: &[&str], out: TVec<TValue>) -> TractResult<Values> {
    names
        .iter()
        .zip(out)
        .map(|(n, v)| {
            let v = v.cast_to::<f32>()?;
            let data = v.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
            Ok((n.to_string(), (v.shape().to_vec(), data)))
        })
        .collect()
}

pub(super) fn run_full(
    path: &Path,
    specs: &[TensorSpec],
    watched: &[&str],
    inputs: &[Tensor],
) -> Result<Values> {
    let err = |e: TractError| invalid(path, "onnx", format!("running the full model: {e:#}"));
    let model = load(path, specs, Some(watched)).map_err(err)?;
    let out = model
        .run(inputs.iter().cloned().map(TValue::from).collect())
        .map_err(err)?;
    if let Some((name, v)) = watched
        .iter()
        .zip(&out)
        .find(|(_, v)| v.datum_type() != f32::datum_type())
    {
        return Err(invalid(
            path,
            "--cuts",
            format!(
                "{name:?} is {:?}; exit outputs and the tensors carried between segments are f32",
                v.datum_type()
            ),
        ));
    }
    values(watched, out).map_err(err)
}

/// Runs the written segments in a chain; per exit, the largest difference
/// from the full model.
pub(super) fn check_chain(
    opts: &SplitOptions,
    segments: &[String],
    model_inputs: &[TensorSpec],
    inputs: &[Tensor],
    reference: &Values,
    rename: &str,
) -> Result<Vec<f32>> {
    let mut carried: Vec<(String, Tensor)> = model_inputs
        .iter()
        .map(|t| t.name.clone())
        .zip(inputs.iter().cloned())
        .collect();
    let mut diffs = Vec::with_capacity(segments.len());
    for (k, file) in segments.iter().enumerate() {
        let path = opts.out.join(file);
        let a = analyze(&path)?;
        let err = |e: TractError| invalid(&path, "onnx", format!("running the segment: {e:#}"));
        let model = load(&path, &a.inputs, None).map_err(err)?;
        let ins: TVec<TValue> = a
            .inputs
            .iter()
            .map(|spec| {
                carried
                    .iter()
                    .find(|(n, _)| *n == spec.name)
                    .map(|(_, t)| TValue::from(t.clone()))
                    .ok_or_else(|| {
                        invalid(&path, "inputs", format!("nothing carries {:?}", spec.name))
                    })
            })
            .collect::<Result<_>>()?;
        let out = model.run(ins).map_err(err)?;
        let names: Vec<&str> = a.outputs.iter().map(|t| t.name.as_str()).collect();
        let mut next = Vec::new();
        let mut worst = 0.0f32;
        for (name, v) in names.iter().zip(out) {
            // The exit output and its confidence, against the full model's.
            let orig = match *name {
                n if n == rename => Some(&opts.exit_outputs[k]),
                CONFIDENCE => opts.confidence_outputs.get(k),
                _ => None,
            };
            if let Some(orig) = orig {
                let got = v.cast_to::<f32>().map_err(err)?;
                let got = got
                    .try_as_plain_ram()
                    .and_then(|r| Ok(r.as_slice::<f32>()?.to_vec()))
                    .map_err(err)?;
                let want = &reference[orig].1;
                let d = got
                    .iter()
                    .zip(want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, nan_max);
                let d = if got.len() == want.len() { d } else { f32::NAN };
                worst = nan_max(worst, d);
            } else {
                next.push((name.to_string(), v.into_tensor()));
            }
        }
        diffs.push(worst);
        carried = next;
    }
    Ok(diffs)
}

/// The larger of two differences, NaN if either is (a NaN difference is a
/// mismatch, which `f32::max` would hide).
fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}

/// Refuses a chain that differs from the full model by more than `tolerance`.
pub(super) fn check_tolerance(path: &Path, tolerance: f32, diffs: &[f32]) -> Result<()> {
    if let Some((i, d)) = diffs
        .iter()
        .enumerate()
        .find(|(_, d)| d.is_nan() || **d > tolerance)
    {
        return Err(invalid(
            path,
            &format!("--exit-outputs[{i}]"),
            format!(
                "the chained segments differ from the full model by {d} at exit {i} (tolerance {tolerance}): the cuts do not carry everything later segments need",
            ),
        ));
    }
    Ok(())
}
