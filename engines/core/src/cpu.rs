//! The CPU backend: tract. Each segment is parsed, given the manifest's static
//! input shapes, optimised once at load, and run from one reusable state.
//! tract runs single-threaded here, which on small segments beats its
//! multithreaded matmul (measured on 2 cores, see DESIGN.md).

use crate::manifest::TensorSpec;
use crate::{Engine, Error, Result};
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

pub struct CpuEngine {
    artifact: PathBuf,
    state: TypedSimpleState,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

/// Reads an ONNX file into a typed, decluttered tract model with the given
/// static input shapes (shared with [`crate::analyze`]).
pub(crate) fn typed_model(path: &Path, inputs: &[TensorSpec]) -> TractResult<TypedModel> {
    let mut model = tract_onnx::onnx().model_for_path(path)?;
    for (i, spec) in inputs.iter().enumerate() {
        model.set_input_fact(i, f32::fact(spec.shape.clone()).into())?;
    }
    model.into_typed()?.into_decluttered()
}

impl CpuEngine {
    /// Loads `path` and checks its inputs and outputs against the manifest.
    pub fn load(path: &Path, inputs: &[TensorSpec], outputs: &[TensorSpec]) -> Result<Self> {
        let err = |message: String| Error::Load {
            artifact: path.to_path_buf(),
            backend: "cpu",
            message,
        };
        let model = typed_model(path, inputs).map_err(|e| err(format!("{e:#}")))?;
        if model.inputs.len() != inputs.len() {
            return Err(err(format!(
                "the graph has {} inputs, the manifest lists {}",
                model.inputs.len(),
                inputs.len()
            )));
        }
        if model.outputs.len() != outputs.len() {
            return Err(err(format!(
                "the graph has {} outputs, the manifest lists {}",
                model.outputs.len(),
                outputs.len()
            )));
        }
        for (k, (outlet, spec)) in model.outputs.iter().zip(outputs).enumerate() {
            let fact = model
                .outlet_fact(*outlet)
                .map_err(|e| err(format!("{e:#}")))?;
            let shape: Option<Vec<usize>> = fact.shape.as_concrete().map(|s| s.to_vec());
            if shape.as_deref() != Some(&spec.shape[..]) || fact.datum_type != f32::datum_type() {
                return Err(err(format!(
                    "output {k} ({:?}) is {:?} {:?}, the manifest says f32 {:?}",
                    spec.name, fact.datum_type, fact.shape, spec.shape
                )));
            }
        }
        let plan = tract_onnx::tract_core::plan::SimplePlan::new(
            model.into_optimized().map_err(|e| err(format!("{e:#}")))?,
        )
        .map_err(|e| err(format!("{e:#}")))?;
        let state = plan.spawn().map_err(|e| err(format!("{e:#}")))?;
        Ok(Self {
            artifact: path.to_path_buf(),
            state,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
        })
    }
}

impl Engine for CpuEngine {
    fn run(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) -> Result<()> {
        let err = |message: String| Error::Run {
            artifact: self.artifact.clone(),
            message,
        };
        crate::error::check_arity(
            &self.artifact,
            (inputs.len(), outputs.len()),
            (self.inputs.len(), self.outputs.len()),
        )?;
        let mut values = TVec::new();
        for (data, spec) in inputs.iter().zip(&self.inputs) {
            let t = Tensor::from_shape(&spec.shape, data)
                .map_err(|e| err(format!("input {:?}: {e}", spec.name)))?;
            values.push(t.into_tvalue());
        }
        let result = self.state.run(values).map_err(|e| err(format!("{e:#}")))?;
        for ((out, value), spec) in outputs.iter_mut().zip(result.iter()).zip(&self.outputs) {
            let view = value
                .try_as_plain_ram()
                .and_then(|v| v.as_slice::<f32>())
                .map_err(|e| err(format!("output {:?}: {e}", spec.name)))?;
            if view.len() != out.len() {
                return Err(err(format!(
                    "output {:?} has {} values, the buffer {}",
                    spec.name,
                    view.len(),
                    out.len()
                )));
            }
            out.copy_from_slice(view);
        }
        Ok(())
    }
}
