//! What an ONNX segment costs, counted from its graph: inputs and outputs with
//! static shapes, multiply-accumulates (tract's per-op cost model on the
//! decluttered graph), parameters (initializer elements) and peak activation
//! memory (live intermediate tensors, simulated in execution order).

use offramp_engines::manifest::{Cost, DType, TensorSpec};
use offramp_engines::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use tract_onnx::pb;
use tract_onnx::prelude::*;

#[derive(Debug, Clone)]
pub struct Analysis {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub cost: Cost,
    /// ONNX default-domain opset.
    pub opset: i64,
}

fn err(path: &Path, message: impl Into<String>) -> Error {
    Error::Load {
        artifact: path.to_path_buf(),
        backend: "cpu",
        message: message.into(),
    }
}

/// A graph input or output as a tensor spec. Every tensor is f32, but a
/// graph input may hold int64 token ids (`allow_ids`).
pub(crate) fn spec_of(path: &Path, v: &pb::ValueInfoProto, allow_ids: bool) -> Result<TensorSpec> {
    use pb::tensor_proto::DataType;
    use pb::type_proto::Value;
    let Some(Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(err(path, format!("{:?} is not a tensor", v.name)));
    };
    let dtype = if t.elem_type == DataType::Float as i32 {
        DType::F32
    } else if allow_ids && t.elem_type == DataType::Int64 as i32 {
        DType::I64
    } else {
        return Err(err(
            path,
            format!(
                "{:?} has ONNX element type {}; offramp engines take f32 tensors (and int64 token ids as a model input)",
                v.name, t.elem_type
            ),
        ));
    };
    let dims = t
        .shape
        .as_ref()
        .map(|s| s.dim.as_slice())
        .unwrap_or_default();
    let mut shape = Vec::with_capacity(dims.len());
    for d in dims {
        match &d.value {
            Some(pb::tensor_shape_proto::dimension::Value::DimValue(n)) if *n > 0 => {
                shape.push(*n as usize)
            }
            other => {
                return Err(err(
                    path,
                    format!(
                    "{:?} has a dynamic dimension ({other:?}); export segments with static shapes",
                    v.name
                ),
                ))
            }
        }
    }
    Ok(TensorSpec {
        name: v.name.clone(),
        shape,
        dtype,
    })
}

/// The ONNX description of a tensor.
pub(crate) fn value_info(spec: &TensorSpec) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension, Dimension};
    let elem_type = match spec.dtype {
        DType::F32 => pb::tensor_proto::DataType::Float,
        DType::I64 => pb::tensor_proto::DataType::Int64,
    } as i32;
    pb::ValueInfoProto {
        name: spec.name.clone(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type,
                shape: Some(pb::TensorShapeProto {
                    dim: spec
                        .shape
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(dimension::Value::DimValue(d as i64)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A graph's inputs (those that are not initializers) and outputs.
pub(crate) fn io_specs(
    path: &Path,
    graph: &pb::GraphProto,
) -> Result<(Vec<TensorSpec>, Vec<TensorSpec>)> {
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = graph
        .input
        .iter()
        .filter(|v| !initializers.contains(v.name.as_str()))
        .map(|v| spec_of(path, v, true))
        .collect::<Result<Vec<_>>>()?;
    let outputs = graph
        .output
        .iter()
        .map(|v| spec_of(path, v, false))
        .collect::<Result<Vec<_>>>()?;
    Ok((inputs, outputs))
}

/// Analyses one ONNX file.
pub fn analyze(path: &Path) -> Result<Analysis> {
    let proto = tract_onnx::onnx()
        .proto_model_for_path(path)
        .map_err(|e| err(path, format!("not a readable ONNX model: {e:#}")))?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| err(path, "the model has no graph"))?;
    let (inputs, outputs) = io_specs(path, graph)?;
    // Parameters are the floating-point initializers; integer ones are shapes
    // and indices (Reshape, Slice).
    use pb::tensor_proto::DataType as T;
    let float = [T::Float, T::Float16, T::Bfloat16, T::Double].map(|t| t as i32);
    let params: u64 = graph
        .initializer
        .iter()
        .filter(|t| float.contains(&t.data_type))
        .map(|t| t.dims.iter().map(|d| (*d).max(0) as u64).product::<u64>())
        .sum();
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(0);

    let model = offramp_engines_cpu::typed_model(path, &inputs, None)
        .map_err(|e| err(path, format!("{e:#}")))?;
    let (macs, peak) = costs(&model).map_err(|e| err(path, format!("{e:#}")))?;
    Ok(Analysis {
        inputs,
        outputs,
        cost: Cost {
            macs,
            params,
            peak_activation_bytes: peak,
        },
        opset,
    })
}

fn fact_bytes(f: &TypedFact) -> u64 {
    f.shape
        .as_concrete()
        .map(|s| s.iter().product::<usize>() as u64 * f.datum_type.size_of() as u64)
        .unwrap_or(0)
}

/// MACs and peak live activation bytes of a typed model.
fn costs(model: &TypedModel) -> TractResult<(u64, u64)> {
    let order = model.eval_order()?;
    let mut macs = 0u64;
    // Consumers left per outlet; an outlet is freed when it reaches zero.
    let mut remaining: HashMap<OutletId, usize> = HashMap::new();
    for &n in &order {
        for input in &model.nodes()[n].inputs {
            *remaining.entry(*input).or_default() += 1;
        }
    }
    let outputs: HashSet<OutletId> = model.outputs.iter().copied().collect();
    let mut live = 0u64;
    let mut peak = 0u64;
    for &n in &order {
        let node = &model.nodes()[n];
        let facts: TVec<&TypedFact> = node
            .inputs
            .iter()
            .map(|i| model.outlet_fact(*i))
            .collect::<TractResult<_>>()?;
        for (cost, amount) in node.op.cost(&facts)? {
            if let tract_onnx::tract_core::ops::Cost::FMA(_) = cost {
                macs += amount.to_i64().unwrap_or(0).max(0) as u64;
            }
        }
        // Weights are parameters, not activations.
        let is_const = node
            .op_as::<tract_onnx::tract_core::ops::konst::Const>()
            .is_some();
        if !is_const {
            live += node
                .outputs
                .iter()
                .map(|o| fact_bytes(&o.fact))
                .sum::<u64>();
        }
        peak = peak.max(live);
        for input in &node.inputs {
            if let Some(r) = remaining.get_mut(input) {
                *r -= 1;
                let producer = &model.nodes()[input.node];
                let const_producer = producer
                    .op_as::<tract_onnx::tract_core::ops::konst::Const>()
                    .is_some();
                if *r == 0 && !outputs.contains(input) && !const_producer {
                    live = live.saturating_sub(fact_bytes(model.outlet_fact(*input)?));
                }
            }
        }
    }
    Ok((macs, peak))
}
