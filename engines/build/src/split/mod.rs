//! `offramp split`: one full ONNX export of a multi-exit model → one segment
//! per exit, plus the `model.toml` that `offramp build` reads.
//!
//! A PyTorch user exports the whole model once, with every exit's output (its
//! action, or the feature a shared head reads) as a named graph output.
//! Segment `k` is every node needed for exit `k`'s output (and the tensors
//! the user names in cut `k`, if any) that no earlier segment computes. Every
//! tensor a later segment reads from an earlier one is carried across the
//! boundaries between: under its own name across the boundary right after
//! the segment that computes it, and passed through (an Identity, named
//! `<tensor>__b<k>`) across later ones, since one graph cannot take and give
//! the same name; so a language embedding every block reads, or a model
//! input, reaches the segments that need it. Exit outputs are renamed to one
//! name (`action` or `feature`), as the engine-set contract wants. The
//! segments are then run in a chain with tract and compared with the full
//! model on the same seeded inputs: a split that changes what the model
//! computes is refused, and leaves no segments behind.

mod description;
mod verify;

use crate::analyze::{analyze, value_info};
pub(crate) use crate::{invalid, io};
use description::write_description;
use offramp_engines::manifest::{DType, TensorSpec};
use offramp_engines::Result;
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use tract_onnx::pb;
use tract_onnx::prelude::*;
use verify::{check_chain, check_tolerance, run_full, seeded_inputs};

/// What to split.
#[derive(Debug, Clone)]
pub struct SplitOptions {
    /// The full export.
    pub onnx: PathBuf,
    /// One graph output per exit: the action (no head) or the feature the
    /// head reads (`head` set).
    pub exit_outputs: Vec<String>,
    /// For the learned criterion: each exit's confidence output (one per
    /// exit, or one per exit but the last, which always stops); empty:
    /// none.
    pub confidence_outputs: Vec<String>,
    /// Per boundary (one fewer than exits), tensors to carry across it
    /// besides those the later segments need (which are always carried);
    /// empty: none.
    pub cuts: Vec<Vec<String>>,
    /// The shared head's ONNX file, copied beside the segments.
    pub head: Option<PathBuf>,
    /// A `model.toml` without `exits`: the rest of the model description
    /// (model name, preprocessing, `[head]`, `[action]`, `[criterion]`).
    pub with: Option<PathBuf>,
    pub out: PathBuf,
    /// Largest difference allowed between the chain and the full model.
    pub tolerance: f32,
}

/// What a split wrote and how closely the chain matches the full model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SplitReport {
    pub segments: Vec<String>,
    /// Per exit, the largest |chain − full| over its output (and its
    /// confidence output).
    pub max_abs_diff: Vec<f32>,
    /// Per boundary, the carried tensors and their values.
    pub carried: Vec<Vec<(String, usize)>>,
    pub model_toml: PathBuf,
}

/// The name every segment gives its exit's confidence output.
const CONFIDENCE: &str = "confidence";

/// The name every segment gives its exit output.
fn exit_name(head: bool) -> &'static str {
    if head {
        "feature"
    } else {
        "action"
    }
}

/// Splits, verifies and writes; a refused split leaves no segment or
/// description behind. An export with a dynamic batch axis
/// (`dynamic_axes`) is split from a copy with the axis fixed to 1.
pub fn split(opts: &SplitOptions) -> Result<SplitReport> {
    let (_, _, fixed) = crate::builder::prepare::read_specs(&opts.onnx)?;
    let Some(bytes) = fixed else {
        return split_static(opts);
    };
    let dir = opts.out.join(format!(".static-{}", std::process::id()));
    let copy = dir.join(opts.onnx.file_name().unwrap_or("full.onnx".as_ref()));
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let split = std::fs::write(&copy, bytes)
        .map_err(io(&copy))
        .and_then(|()| {
            split_static(&SplitOptions {
                onnx: copy.clone(),
                ..opts.clone()
            })
        });
    let _ = std::fs::remove_dir_all(&dir);
    // The description names the export, not the copy.
    let report = split?;
    let text = std::fs::read_to_string(&report.model_toml).map_err(io(&report.model_toml))?;
    let text = text.replacen(
        &copy.display().to_string(),
        &opts.onnx.display().to_string(),
        1,
    );
    std::fs::write(&report.model_toml, text).map_err(io(&report.model_toml))?;
    Ok(report)
}

/// [`split`] of an export with static shapes.
fn split_static(opts: &SplitOptions) -> Result<SplitReport> {
    let path = &opts.onnx;
    let n = opts.exit_outputs.len();
    if n < 2 {
        return Err(invalid(
            path,
            "--exit-outputs",
            "name at least two exit outputs (one per exit, shallowest first)",
        ));
    }
    let no_cuts = vec![Vec::new(); n - 1];
    let cuts = if opts.cuts.is_empty() {
        &no_cuts
    } else {
        &opts.cuts
    };
    if cuts.len() != n - 1 {
        return Err(invalid(
            path,
            "--cuts",
            format!(
                "{} boundaries given for {n} exits: name the tensors crossing each of the {} boundaries",
                cuts.len(),
                n - 1
            ),
        ));
    }
    let proto = tract_onnx::onnx()
        .proto_model_for_path(path)
        .map_err(|e| invalid(path, "onnx", format!("not a readable ONNX model: {e:#}")))?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| invalid(path, "graph", "the model has no graph"))?;
    let full = analyze(path)?;
    let rename = exit_name(opts.head.is_some());

    // Who produces each tensor, and which are weights.
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (k, node) in graph.node.iter().enumerate() {
        if node
            .attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
        {
            return Err(invalid(
                path,
                &format!("node {:?}", node.name),
                format!(
                    "{} has a subgraph; export control flow unrolled (split cuts a flat graph)",
                    node.op_type
                ),
            ));
        }
        for o in &node.output {
            producer.insert(o.as_str(), k);
        }
    }
    let weights: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    // Nodes whose value needs no input (a `Constant`, or a node of
    // constants only, as exporters share one scalar between blocks): each
    // segment that reads one computes it itself, nothing carries it.
    let mut constant: HashSet<usize> = HashSet::new();
    for (k, node) in graph.node.iter().enumerate() {
        let from_constants = node.input.iter().all(|i| {
            i.is_empty()
                || weights.contains(i.as_str())
                || producer
                    .get(i.as_str())
                    .is_some_and(|p| constant.contains(p))
        });
        if from_constants && !node.op_type.starts_with("Random") {
            constant.insert(k);
        }
    }
    if let Some(t) = graph
        .initializer
        .iter()
        .find(|t| t.data_location == Some(1))
    {
        return Err(invalid(
            path,
            &format!("initializer {:?}", t.name),
            "stored as external data: save the export with its weights inside the .onnx file",
        ));
    }
    let model_inputs = &full.inputs;
    let known =
        |name: &str| producer.contains_key(name) || model_inputs.iter().any(|t| t.name == name);
    for (i, name) in opts.exit_outputs.iter().enumerate() {
        if !known(name) {
            return Err(invalid(
                path,
                &format!("--exit-outputs[{i}]"),
                format!("{name:?} is not a tensor of the graph"),
            ));
        }
        if name == rename {
            continue;
        }
        if known(rename) {
            return Err(invalid(
                path,
                "--exit-outputs",
                format!("the graph already has a tensor {rename:?}, the name each segment gives its exit output: rename it in the export"),
            ));
        }
    }
    let confidences = &opts.confidence_outputs;
    let has_conf = !confidences.is_empty();
    if has_conf && !(n - 1..=n).contains(&confidences.len()) {
        return Err(invalid(
            path,
            "--confidence-outputs",
            format!(
                "{} confidence outputs for {n} exits: name one per exit (the last may have none)",
                confidences.len()
            ),
        ));
    }
    for (i, name) in confidences.iter().enumerate() {
        if !producer.contains_key(name.as_str()) {
            return Err(invalid(
                path,
                &format!("--confidence-outputs[{i}]"),
                format!("{name:?} is not computed by any node of the graph"),
            ));
        }
    }
    if has_conf && known(CONFIDENCE) {
        return Err(invalid(
            path,
            "--confidence-outputs",
            format!("the graph already has a tensor {CONFIDENCE:?}, the name each segment gives its confidence output: rename it in the export"),
        ));
    }
    for (b, cut) in cuts.iter().enumerate() {
        for name in cut {
            if !producer.contains_key(name.as_str()) {
                return Err(invalid(
                    path,
                    &format!("--cuts[{b}]"),
                    format!("{name:?} is not computed by any node of the graph"),
                ));
            }
        }
    }

    // Cut the graph, segment by segment. A tensor a later segment reads
    // that an earlier one computed (or a model input) is passed through the
    // segments between: each boundary carries it under its own name, since
    // one graph cannot take and give the same name.
    let mut segs: Vec<Seg> = Vec::with_capacity(n);
    // A model input of token ids (int64).
    let is_ids = |name: &str| {
        model_inputs
            .iter()
            .any(|m| m.name == name && m.dtype != DType::F32)
    };
    // Which segment computes each node: a later segment reaching one of them
    // gets that tensor passed through.
    let mut computed_by: HashMap<usize, usize> = HashMap::new();
    for k in 0..n {
        let mut seg = Seg::default();
        if k == 0 {
            seg.inputs = full
                .inputs
                .iter()
                .map(|t| (t.name.clone(), t.name.clone()))
                .collect();
        } else {
            // What the previous segment hands on (its exit output aside).
            seg.inputs = segs[k - 1]
                .outputs
                .iter()
                .filter(|(name, _)| name != rename && !(has_conf && name == CONFIDENCE))
                .cloned()
                .collect();
        }
        segs.push(seg);
        let exit = opts.exit_outputs[k].as_str();
        let cut: &[String] = cuts.get(k).map_or(&[], Vec::as_slice);
        let confidence = confidences.get(k).map(String::as_str);
        let mut wanted: Vec<&str> = cut.iter().map(String::as_str).collect();
        wanted.push(exit);
        wanted.extend(confidence);
        let mut needed: HashSet<usize> = HashSet::new();
        let mut stack: Vec<&str> = wanted.clone();
        let mut seen: HashSet<&str> = HashSet::new();
        while let Some(t) = stack.pop() {
            if t.is_empty() || !seen.insert(t) || segs[k].input_name(t).is_some() {
                continue;
            }
            if weights.contains(t) {
                segs[k].weights.insert(t.to_string());
                continue;
            }
            let from = match producer.get(t) {
                Some(&p) if constant.contains(&p) => {
                    needed.insert(p);
                    stack.extend(graph.node[p].input.iter().map(String::as_str));
                    continue;
                }
                Some(&p) => match computed_by.get(&p) {
                    Some(&j) => j,
                    None => {
                        needed.insert(p);
                        stack.extend(graph.node[p].input.iter().map(String::as_str));
                        continue;
                    }
                },
                // Only segment 0 takes model inputs; later ones get them
                // passed through.
                None if k > 0 && model_inputs.iter().any(|m| m.name == t) => 0,
                None => {
                    return Err(invalid(
                        path,
                        "onnx",
                        format!(
                            "segment {k} needs {t:?}, which no node computes and no input provides"
                        ),
                    ))
                }
            };
            // Token ids cross boundaries as f32 (exact below 2^24, the
            // limit the set checks): every tensor between segments is f32.
            for m in from..k {
                let name = segs[m].hand_on(t, m, is_ids(t));
                if segs[m + 1].input_name(t).is_none() {
                    segs[m + 1].inputs.push((name, t.to_string()));
                }
            }
        }
        for &p in &needed {
            computed_by.insert(p, k);
        }
        let seg = &mut segs[k];
        seg.nodes = graph
            .node
            .iter()
            .enumerate()
            .filter(|(i, _)| needed.contains(i))
            .map(|(_, n)| n.clone())
            .collect();
        // Inputs passed through under another name are read under it; token
        // ids, carried as f32, are cast back to int64 first.
        let mut renames: HashMap<String, String> = HashMap::new();
        let mut casts = Vec::new();
        for (name, orig) in seg.inputs.iter().filter(|(name, orig)| name != orig) {
            if is_ids(orig) {
                let ids = format!("{orig}__ids{k}");
                casts.push(cast(name, &ids, pb::tensor_proto::DataType::Int64));
                renames.insert(orig.clone(), ids);
            } else {
                renames.insert(orig.clone(), name.clone());
            }
        }
        for node in &mut seg.nodes {
            for i in &mut node.input {
                if let Some(r) = renames.get(i.as_str()) {
                    *i = r.clone();
                }
            }
        }
        seg.nodes.splice(0..0, casts);
        for c in cut {
            seg.hand_on(c, k, false);
        }
        seg.emit(exit, rename, &format!("offramp_exit{k}"));
        if let Some(c) = confidence {
            seg.emit(c, CONFIDENCE, &format!("offramp_confidence{k}"));
        }
    }
    // Every model input feeds the model: segment 0 reads it, or hands it on
    // to a later segment that does (a camera fused only in a late block).
    if let Some(t) = full.inputs.iter().find(|t| {
        let s0 = &segs[0];
        !s0.nodes.iter().any(|n| n.input.contains(&t.name))
            && !s0.outputs.iter().any(|(_, o)| *o == t.name)
    }) {
        return Err(invalid(
            path,
            "inputs",
            format!(
                "no segment reads model input {:?}; every model input feeds the model",
                t.name
            ),
        ));
    }

    // One tract run of the full model on seeded inputs: the values of every
    // exit output (the reference for the check below) and the shapes of
    // every tensor crossing a boundary.
    let inputs = seeded_inputs(&full.inputs);
    let mut watched: Vec<&str> = Vec::new();
    // Model inputs crossing a boundary have their shapes already.
    let crossing = segs
        .iter()
        .flat_map(|s| s.inputs.iter().map(|(_, o)| o))
        .filter(|o| !model_inputs.iter().any(|m| m.name == **o));
    for name in opts
        .exit_outputs
        .iter()
        .chain(confidences)
        .chain(cuts.iter().flatten())
        .chain(crossing)
    {
        if !watched.contains(&name.as_str()) {
            watched.push(name);
        }
    }
    let reference = run_full(path, &full.inputs, &watched, &inputs)?;
    let spec_of = |name: &str, orig: &str| -> Result<TensorSpec> {
        if let Some(m) = model_inputs.iter().find(|m| m.name == orig) {
            // A model input carried between segments travels as f32.
            let dtype = if name == orig { m.dtype } else { DType::F32 };
            return Ok(TensorSpec {
                name: name.to_string(),
                shape: m.shape.clone(),
                dtype,
            });
        }
        let (shape, _) = reference.get(orig).ok_or_else(|| {
            invalid(
                path,
                "onnx",
                format!("tract computed no value for {orig:?}"),
            )
        })?;
        Ok(TensorSpec::f32(name, shape))
    };
    let mut segments = Vec::with_capacity(n);
    let mut protos = Vec::with_capacity(n);
    let mut carried: Vec<Vec<(String, usize)>> = Vec::with_capacity(n - 1);
    for (k, seg) in segs.into_iter().enumerate() {
        let specs = |list: &[(String, String)]| -> Result<Vec<TensorSpec>> {
            list.iter()
                .map(|(name, orig)| spec_of(name, orig))
                .collect()
        };
        let (ins, outs) = (specs(&seg.inputs)?, specs(&seg.outputs)?);
        if k + 1 < n {
            carried.push(
                outs.iter()
                    .filter(|t| t.name != rename && !(has_conf && t.name == CONFIDENCE))
                    .map(|t| (t.name.clone(), t.elements()))
                    .collect(),
            );
        }
        let seg_graph = pb::GraphProto {
            node: seg.nodes,
            name: format!("segment{k}"),
            initializer: graph
                .initializer
                .iter()
                .filter(|t| seg.weights.contains(&t.name))
                .cloned()
                .collect(),
            input: ins.iter().map(value_info).collect(),
            output: outs.iter().map(value_info).collect(),
            ..Default::default()
        };
        let file = format!("segment{k}.onnx");
        protos.push((
            file.clone(),
            pb::ModelProto {
                graph: Some(seg_graph),
                ..proto.clone()
            },
        ));
        segments.push(file);
    }

    // Write, then run the chain of written segments against the reference;
    // a refused split leaves neither segments nor a description behind.
    let written = || -> Result<(Vec<f32>, PathBuf)> {
        std::fs::create_dir_all(&opts.out).map_err(io(&opts.out))?;
        for (file, p) in &protos {
            let dst = opts.out.join(file);
            std::fs::write(&dst, p.encode_to_vec()).map_err(io(&dst))?;
        }
        let diffs = check_chain(opts, &segments, &full.inputs, &inputs, &reference, rename)?;
        check_tolerance(path, opts.tolerance, &diffs)?;
        Ok((diffs, write_description(opts, &segments, rename)?))
    };
    let (max_abs_diff, model_toml) = written().inspect_err(|_| {
        for s in &segments {
            let _ = std::fs::remove_file(opts.out.join(s));
        }
    })?;
    Ok(SplitReport {
        segments,
        max_abs_diff,
        carried,
        model_toml,
    })
}

/// One segment being cut: its nodes, weights, and the tensors it takes and
/// hands on, each as (its name in this graph, the full graph's tensor).
#[derive(Default)]
struct Seg {
    nodes: Vec<pb::NodeProto>,
    weights: HashSet<String>,
    inputs: Vec<(String, String)>,
    outputs: Vec<(String, String)>,
}

impl Seg {
    /// The name tensor `orig` has as an input of this segment.
    fn input_name(&self, orig: &str) -> Option<&str> {
        self.inputs
            .iter()
            .find(|(_, o)| o == orig)
            .map(|(n, _)| n.as_str())
    }

    /// Emits tensor `orig` as output `name` (an Identity node `node`).
    fn emit(&mut self, orig: &str, name: &str, node: &str) {
        let input = self.input_name(orig).unwrap_or(orig).to_string();
        self.nodes.push(pb::NodeProto {
            input: vec![input],
            output: vec![name.to_string()],
            name: node.to_string(),
            op_type: "Identity".into(),
            ..Default::default()
        });
        self.outputs.push((name.to_string(), orig.to_string()));
    }

    /// Hands tensor `orig` on across boundary `k` (this is segment `k`):
    /// under its own name if this segment computes it, else passed through
    /// from its input by an Identity under `<orig>__b<k>`; token ids
    /// (`ids`) leave as f32 (a Cast where this segment reads the int64
    /// model input). Returns the name.
    fn hand_on(&mut self, orig: &str, k: usize, ids: bool) -> String {
        if let Some((name, _)) = self.outputs.iter().find(|(_, o)| o == orig) {
            return name.clone();
        }
        let name = format!("{orig}__b{k}");
        // Whether this segment reads `orig` under its own name (a model
        // input), or None if it computes it.
        match self.input_name(orig).map(|input| input == orig) {
            Some(true) if ids => {
                self.nodes
                    .push(cast(orig, &name, pb::tensor_proto::DataType::Float));
                self.outputs.push((name.clone(), orig.to_string()));
                name
            }
            Some(_) => {
                self.emit(orig, &name, &format!("offramp_pass_{name}"));
                name
            }
            None => {
                self.outputs.push((orig.to_string(), orig.to_string()));
                orig.to_string()
            }
        }
    }
}

/// A Cast node from `input` to `output` of element type `to`.
fn cast(input: &str, output: &str, to: pb::tensor_proto::DataType) -> pb::NodeProto {
    pb::NodeProto {
        input: vec![input.to_string()],
        output: vec![output.to_string()],
        name: format!("offramp_cast_{output}"),
        op_type: "Cast".into(),
        attribute: vec![pb::AttributeProto {
            name: "to".into(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: to as i64,
            ..Default::default()
        }],
        ..Default::default()
    }
}
