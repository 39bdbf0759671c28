//! From the graphs as the exporter wrote them to the graphs as the set runs
//! them, and every way they do not fit the description found in one pass.
//!
//! PyTorch exports name tensors their own way and may leave the batch axis
//! dynamic or out. Described in `model.toml` (see [`super::source`]), these
//! need no hand edit: a leading dynamic dimension becomes 1; an image
//! `[3, H, W]` or an instruction `[L]` / `[K]` gets its batch axis (a
//! Reshape inside the graph, so the input is `[1, …]`); a segment's input
//! mapped to another name of the previous segment's output is renamed to it
//! (and any tensor of that name already in the segment moved aside). The
//! rewritten graphs are written to a work directory and built from there;
//! a graph that needs nothing is built from the user's file as it is.

use super::source::SourceModel;
use crate::analyze::{io_specs, spec_of, value_info};
use crate::invalid;
use offramp_engines::manifest::{CriterionKind, DType, TensorSpec};
use offramp_engines::{Error, Result};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// The graphs to build, and the names the set gives each exit's tensors.
pub(super) struct Prepared {
    /// Per file of [`SourceModel::files`] (exits, then the head): where to
    /// read the graph to build.
    pub paths: Vec<PathBuf>,
    /// Per exit: its action, feature and confidence outputs as the set
    /// names them.
    pub action: Vec<Option<String>>,
    pub feature: Vec<Option<String>>,
    pub confidence: Vec<Option<String>>,
}

/// One graph as read, and whether it changed.
struct Graph {
    file: String,
    path: PathBuf,
    proto: pb::ModelProto,
    changed: bool,
    /// As the exporter named them (after [`normalise`]).
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    /// Tensors moved aside by [`rename`]: the exporter's name → the set's.
    moved: HashMap<String, String>,
}

impl Graph {
    fn graph(&mut self) -> &mut pb::GraphProto {
        self.proto.graph.get_or_insert_with(Default::default)
    }

    fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|t| t.name == name)
    }

    fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|t| t.name == name)
    }
}

fn describe(t: &TensorSpec) -> String {
    let dtype = match t.dtype {
        DType::F32 => "f32",
        DType::I64 => "int64",
    };
    format!("{:?} {dtype} {:?}", t.name, t.shape)
}

fn list(ts: &[TensorSpec]) -> String {
    ts.iter().map(describe).collect::<Vec<_>>().join(", ")
}

/// Reads every graph `src` names, checks them against it and one another
/// (every problem at once, each naming the `model.toml` field, the ONNX
/// file and the tensor) and writes those that need rewriting into `work`.
pub(super) fn prepare(
    dir: &Path,
    source_path: &Path,
    src: &SourceModel,
    mut problems: Vec<Error>,
    work: &Path,
    in_place: bool,
) -> Result<Prepared> {
    let files = src.files();
    let instruction = src.preprocess.as_ref().and_then(|p| p.instruction.clone());
    let images: Vec<String> = src
        .preprocess
        .iter()
        .flat_map(|p| p.images.iter().map(|i| i.input.clone()))
        .collect();
    let mut graphs: Vec<Option<Graph>> = Vec::with_capacity(files.len());
    for (k, (field, file)) in files.iter().enumerate() {
        let path = dir.join(file);
        if !path.is_file() {
            problems.push(Error::MissingArtifact {
                path: source_path.to_path_buf(),
                field: field.clone(),
                artifact: path,
            });
            graphs.push(None);
            continue;
        }
        let read = tract_onnx::onnx()
            .proto_model_for_path(&path)
            .map_err(|e| {
                invalid(
                    source_path,
                    field,
                    format!("{}: not a readable ONNX model: {e:#}", path.display()),
                )
            })
            .and_then(|proto| {
                let mut g = Graph {
                    file: file.to_string(),
                    path: path.clone(),
                    proto,
                    changed: false,
                    inputs: Vec::new(),
                    outputs: Vec::new(),
                    moved: HashMap::new(),
                };
                let model_inputs = k == 0 && *field == "exits[0]";
                normalise(&mut g, model_inputs, instruction.as_deref(), &images, work)?;
                Ok(g)
            });
        match read {
            Ok(g) => graphs.push(Some(g)),
            Err(e) => {
                problems.push(e);
                graphs.push(None);
            }
        }
    }
    let n = src.exits.len();
    check(
        src,
        source_path,
        &graphs[..n],
        graphs.get(n).and_then(Option::as_ref),
        &mut problems,
    );
    if let Some(e) = Error::all(problems) {
        return Err(e);
    }
    let mut graphs: Vec<Graph> = graphs.into_iter().flatten().collect();
    let mut prepared = Prepared {
        paths: Vec::new(),
        action: Vec::new(),
        feature: Vec::new(),
        confidence: Vec::new(),
    };
    // The set's name for each output of the previous segment.
    let mut finals: HashMap<String, String> = HashMap::new();
    for (i, g) in graphs.iter_mut().take(n).enumerate() {
        let mut map: HashMap<String, String> = HashMap::new();
        if i > 0 {
            for t in &g.inputs {
                let from = src.exits[i].inputs.get(&t.name).unwrap_or(&t.name);
                let target = finals.get(from).unwrap_or(from);
                if *target != t.name {
                    map.insert(t.name.clone(), target.clone());
                }
            }
        }
        rename(g, i, map);
        let out = |name: Option<&str>| {
            name.map(|n| g.moved.get(n).cloned().unwrap_or_else(|| n.to_string()))
        };
        prepared.action.push(out(src.action(i)));
        prepared.feature.push(out(src.feature(i)));
        prepared
            .confidence
            .push(out(src.confidence(i)).filter(|c| g.outputs.iter().any(|t| &t.name == c)));
        // Output names survive renaming unless one was moved aside (an
        // output named like the previous segment's output one of its
        // inputs is renamed to).
        finals = g
            .outputs
            .iter()
            .map(|t| {
                let set = g.moved.get(&t.name).unwrap_or(&t.name);
                (t.name.clone(), set.clone())
            })
            .collect();
    }
    for (g, (field, _)) in graphs.iter().zip(&files) {
        if !g.changed {
            prepared.paths.push(g.path.clone());
            continue;
        }
        if in_place {
            return Err(invalid(
                source_path,
                field,
                format!(
                    "{} is renamed or reshaped for the set: building in place would replace the export; give --out another directory",
                    g.file
                ),
            ));
        }
        std::fs::create_dir_all(work).map_err(|source| Error::Io {
            path: work.to_path_buf(),
            source,
        })?;
        let dst = work.join(&g.file);
        std::fs::write(&dst, g.proto.encode_to_vec()).map_err(|source| Error::Io {
            path: dst.clone(),
            source,
        })?;
        prepared.paths.push(dst);
    }
    Ok(prepared)
}

fn dims_of(v: &pb::ValueInfoProto) -> Option<&Vec<pb::tensor_shape_proto::Dimension>> {
    let pb::type_proto::Value::TensorType(t) = v.r#type.as_ref()?.value.as_ref()?;
    Some(&t.shape.as_ref()?.dim)
}

fn dims_mut(v: &mut pb::ValueInfoProto) -> Option<&mut Vec<pb::tensor_shape_proto::Dimension>> {
    let pb::type_proto::Value::TensorType(t) = v.r#type.as_mut()?.value.as_mut()?;
    Some(&mut t.shape.as_mut()?.dim)
}

fn fixed(d: &pb::tensor_shape_proto::Dimension) -> Option<i64> {
    match d.value {
        Some(pb::tensor_shape_proto::dimension::Value::DimValue(n)) if n > 0 => Some(n),
        _ => None,
    }
}

fn dim(n: i64) -> pb::tensor_shape_proto::Dimension {
    pb::tensor_shape_proto::Dimension {
        value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(n)),
        ..Default::default()
    }
}

/// A graph's inputs and outputs, and the graph with static shapes
/// (encoded) where it needed fixing.
#[cfg(feature = "split")]
pub(crate) type StaticSpecs = (Vec<TensorSpec>, Vec<TensorSpec>, Option<Vec<u8>>);

/// The inputs and outputs of the graph at `path`, with a dynamic batch
/// axis read as 1 and output shapes inferred where the export left them
/// open (what `offramp init` matches segments by), and the graph so fixed,
/// encoded, if it needed fixing.
#[cfg(feature = "split")]
pub(crate) fn read_specs(path: &Path) -> Result<StaticSpecs> {
    let proto = tract_onnx::onnx()
        .proto_model_for_path(path)
        .map_err(|e| Error::Load {
            artifact: path.to_path_buf(),
            backend: "cpu",
            message: format!("not a readable ONNX model: {e:#}"),
        })?;
    let mut g = Graph {
        file: path
            .file_name()
            .map_or("model.onnx".into(), |n| n.to_string_lossy().into_owned()),
        path: path.to_path_buf(),
        proto,
        changed: false,
        inputs: Vec::new(),
        outputs: Vec::new(),
        moved: HashMap::new(),
    };
    // One directory per call: calls may run at once in one process.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let work = std::env::temp_dir().join(format!("offramp-init-{}-{call}", std::process::id()));
    let read = normalise(&mut g, false, None, &[], &work);
    let _ = std::fs::remove_dir_all(&work);
    read?;
    let fixed = g.changed.then(|| g.proto.encode_to_vec());
    Ok((g.inputs, g.outputs, fixed))
}

/// Gives a graph static model inputs with a batch axis and outputs with
/// static shapes, then reads its tensor specs.
fn normalise(
    g: &mut Graph,
    model_inputs: bool,
    instruction: Option<&str>,
    images: &[String],
    work: &Path,
) -> Result<()> {
    let path = g.path.clone();
    let load = |message: String| Error::Load {
        artifact: path.clone(),
        backend: "cpu",
        message,
    };
    if g.proto.graph.is_none() {
        return Err(load("the model has no graph".into()));
    }
    let graph = g.graph();
    let weights: HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    let mut changed = false;
    let mut unbatched = Vec::new();
    let mut first = true;
    for v in graph
        .input
        .iter_mut()
        .filter(|v| !weights.contains(&v.name))
    {
        let name = v.name.clone();
        let is_image = if images.is_empty() {
            first
        } else {
            images.contains(&name)
        };
        first = false;
        let Some(dims) = dims_mut(v) else { continue };
        for (k, d) in dims.iter_mut().enumerate() {
            if fixed(d).is_some() {
                continue;
            }
            if k > 0 {
                return Err(load(format!(
                    "input {name:?}: dimension {k} is dynamic ({:?}); export with static shapes (only the batch axis may be dynamic: it becomes 1)",
                    d.value
                )));
            }
            *d = dim(1);
            changed = true;
        }
        let rank = dims.len();
        if model_inputs
            && ((is_image && rank == 3) || (instruction == Some(name.as_str()) && rank == 1))
        {
            let shape: Vec<i64> = dims.iter().filter_map(fixed).collect();
            dims.insert(0, dim(1));
            unbatched.push((name, shape));
        }
    }
    for (name, shape) in unbatched {
        add_batch_axis(graph, &name, shape);
        changed = true;
    }
    let dynamic_out = graph.output.iter().any(|v| match dims_of(v) {
        Some(d) => d.iter().any(|d| fixed(d).is_none()),
        None => true,
    });
    let inputs = graph
        .input
        .iter()
        .filter(|v| !weights.contains(&v.name))
        .map(|v| spec_of(&path, v, true))
        .collect::<Result<Vec<_>>>()?;
    if dynamic_out {
        // The output shapes of the graph with its inputs now fixed, as
        // tract infers them.
        std::fs::create_dir_all(work).map_err(|source| Error::Io {
            path: work.to_path_buf(),
            source,
        })?;
        let probe = work.join(format!(".probe-{}", g.file));
        std::fs::write(&probe, g.proto.encode_to_vec()).map_err(|source| Error::Io {
            path: probe.clone(),
            source,
        })?;
        let typed = offramp_engines_cpu::typed_model(&probe, &inputs, None);
        let _ = std::fs::remove_file(&probe);
        let model = typed.map_err(|e| load(format!("{e:#}")))?;
        let graph = g.graph();
        for (k, v) in graph.output.iter_mut().enumerate() {
            let fact = model.output_fact(k).map_err(|e| load(format!("{e:#}")))?;
            let Some(shape) = fact.shape.as_concrete() else {
                return Err(load(format!(
                    "output {:?}: its shape is not static for the static inputs",
                    v.name
                )));
            };
            let mut spec = TensorSpec::f32(&v.name, shape);
            if fact.datum_type != f32::datum_type() {
                spec.dtype = DType::I64;
            }
            *v = value_info(&spec);
        }
        changed = true;
    }
    let (inputs, outputs) = io_specs(&path, g.graph())?;
    g.inputs = inputs;
    g.outputs = outputs;
    g.changed |= changed;
    Ok(())
}

/// Input `name` of shape `shape` becomes `[1, shape…]`, reshaped back
/// inside the graph for the nodes that read it.
fn add_batch_axis(graph: &mut pb::GraphProto, name: &str, shape: Vec<i64>) {
    let flat = format!("{name}__unbatched");
    let shape_name = format!("{flat}_shape");
    for node in &mut graph.node {
        for i in &mut node.input {
            if i == name {
                *i = flat.clone();
            }
        }
    }
    graph.initializer.push(pb::TensorProto {
        name: shape_name.clone(),
        dims: vec![shape.len() as i64],
        data_type: pb::tensor_proto::DataType::Int64 as i32,
        int64_data: shape,
        ..Default::default()
    });
    graph.node.insert(
        0,
        pb::NodeProto {
            input: vec![name.to_string(), shape_name],
            output: vec![flat],
            name: format!("offramp_unbatch_{name}"),
            op_type: "Reshape".into(),
            ..Default::default()
        },
    );
}

/// Renames segment `i`'s inputs as `map` says; a tensor already named
/// like one of the new names is moved aside first (`<name>__s<i>`).
fn rename(g: &mut Graph, i: usize, mut map: HashMap<String, String>) {
    if map.is_empty() {
        return;
    }
    let graph = g.graph();
    let mut names: HashSet<String> = HashSet::new();
    for n in &graph.node {
        names.extend(n.input.iter().chain(&n.output).cloned());
    }
    names.extend(graph.input.iter().map(|v| v.name.clone()));
    names.extend(graph.output.iter().map(|v| v.name.clone()));
    names.extend(graph.initializer.iter().map(|t| t.name.clone()));
    let targets: HashSet<String> = map.values().cloned().collect();
    let mut moved = HashMap::new();
    for name in &names {
        if targets.contains(name) && !map.contains_key(name) {
            let mut aside = format!("{name}__s{i}");
            while names.contains(&aside) || targets.contains(&aside) {
                aside.push('_');
            }
            moved.insert(name.clone(), aside);
        }
    }
    map.extend(moved.clone());
    let apply = |s: &mut String| {
        if let Some(r) = map.get(s.as_str()) {
            *s = r.clone();
        }
    };
    for n in &mut graph.node {
        n.input
            .iter_mut()
            .chain(n.output.iter_mut())
            .for_each(apply);
    }
    graph.input.iter_mut().for_each(|v| apply(&mut v.name));
    graph.output.iter_mut().for_each(|v| apply(&mut v.name));
    graph
        .initializer
        .iter_mut()
        .for_each(|t| apply(&mut t.name));
    graph.value_info.iter_mut().for_each(|v| apply(&mut v.name));
    g.moved = moved;
    g.changed = true;
}

/// The graphs against the description and one another: every problem.
fn check(
    src: &SourceModel,
    source_path: &Path,
    exits: &[Option<Graph>],
    head: Option<&Graph>,
    problems: &mut Vec<Error>,
) {
    let mut problem = |field: String, message: String| {
        problems.push(invalid(source_path, &field, message));
    };
    let last = exits.len().saturating_sub(1);
    // Exit 0's action (or the head's feature input): what every exit's
    // must match.
    let mut first_action: Option<(usize, TensorSpec)> = None;
    for (i, g) in exits.iter().enumerate() {
        let Some(g) = g else { continue };
        let file = &g.file;
        if i > 0 {
            if let Some(prev) = &exits[i - 1] {
                let map = &src.exits[i].inputs;
                for key in map.keys().filter(|k| g.input(k).is_none()) {
                    problem(
                        format!("exits[{i}].inputs"),
                        format!(
                            "{key:?} is not an input of {file} (its inputs: {})",
                            list(&g.inputs)
                        ),
                    );
                }
                let prev_exit: Vec<&str> =
                    [src.action(i - 1), src.feature(i - 1), src.confidence(i - 1)]
                        .into_iter()
                        .flatten()
                        .collect();
                for t in &g.inputs {
                    let from = map.get(&t.name).unwrap_or(&t.name);
                    match prev.output(from) {
                        Some(o) if o.shape == t.shape && o.dtype == t.dtype => {}
                        Some(o) => problem(
                            format!("exits[{i}].inputs"),
                            format!(
                                "{file} reads {} from {}'s output {}: the shapes or types differ",
                                describe(t),
                                prev.file,
                                describe(o)
                            ),
                        ),
                        None => {
                            let fits: Vec<&TensorSpec> = prev
                                .outputs
                                .iter()
                                .filter(|o| {
                                    o.shape == t.shape
                                        && o.dtype == t.dtype
                                        && !prev_exit.contains(&o.name.as_str())
                                })
                                .collect();
                            let from = match fits.as_slice() {
                                [o] => format!("{:?}", o.name),
                                _ => format!("\"<the output of {} it reads>\"", prev.file),
                            };
                            let hint = format!(
                                "; map it: exits[{i}] = {{ file = {file:?}, inputs = {{ {} = {from} }} }}",
                                t.name
                            );
                            problem(
                                format!("exits[{i}].inputs"),
                                format!(
                                    "{file} reads {}, which is not an output of {} (its outputs: {}){hint}",
                                    describe(t),
                                    prev.file,
                                    list(&prev.outputs)
                                ),
                            )
                        }
                    }
                }
            }
        }
        let (role, name) = match (src.head.is_some(), src.action(i), src.feature(i)) {
            (false, Some(a), _) => ("action", a),
            (true, _, Some(f)) => ("feature", f),
            _ => continue, // named in the description check
        };
        match g.output(name) {
            None => problem(
                format!("exits[{i}].{role}"),
                format!(
                    "{name:?} is not an output of {file} (its outputs: {})",
                    list(&g.outputs)
                ),
            ),
            Some(t) => match &first_action {
                None => first_action = Some((i, t.clone())),
                Some((j, a)) if a.shape != t.shape => problem(
                    format!("exits[{i}].{role}"),
                    format!(
                        "{file}'s {role} {} differs from exit {j}'s {}: every exit emits the same {role}",
                        describe(t),
                        describe(a)
                    ),
                ),
                Some(_) => {}
            },
        }
        let learned = src.criterion.kind == CriterionKind::Learned;
        if let Some(c) = src.confidence(i).filter(|_| i < last && learned) {
            match g.output(c) {
                Some(t) if t.elements() == 1 => {}
                Some(t) => problem(
                    format!("exits[{i}].confidence"),
                    format!("{file}'s confidence {} must hold one value", describe(t)),
                ),
                None => problem(
                    format!("exits[{i}].confidence"),
                    format!(
                        "{c:?} is not an output of {file} (its outputs: {})",
                        list(&g.outputs)
                    ),
                ),
            }
        }
    }
    if let (Some(h), Some(head)) = (&src.head, head) {
        let file = &head.file;
        for (field, name, output) in [
            ("feature_input", Some(&h.feature_input), false),
            ("state_input", h.state_input.as_ref(), false),
            ("state_output", h.state_output.as_ref(), true),
            ("action_output", Some(&h.action_output), true),
        ] {
            let Some(name) = name else { continue };
            let (found, all, kind) = match output {
                true => (head.output(name), &head.outputs, "output"),
                false => (head.input(name), &head.inputs, "input"),
            };
            if found.is_none() {
                problem(
                    format!("head.{field}"),
                    format!(
                        "{name:?} is not an {kind} of {file} (its {kind}s: {})",
                        list(all)
                    ),
                );
            }
        }
        if let (Some(fi), Some((j, f))) = (head.input(&h.feature_input), &first_action) {
            if fi.shape != f.shape {
                problem(
                    "head.feature_input".into(),
                    format!(
                        "{file} takes {} but exit {j}'s feature is {}",
                        describe(fi),
                        describe(f)
                    ),
                );
            }
        }
    }
    let Some(Some(seg0)) = exits.first() else {
        return;
    };
    if let Some(p) = &src.preprocess {
        let file = &seg0.file;
        let images: Vec<&str> = if p.images.is_empty() {
            seg0.inputs
                .first()
                .map(|t| t.name.as_str())
                .into_iter()
                .collect()
        } else {
            p.images.iter().map(|i| i.input.as_str()).collect()
        };
        for (k, name) in images.iter().enumerate() {
            match seg0.input(name) {
                Some(t)
                    if t.dtype == DType::F32 && t.shape.len() == 4 && t.shape[..2] == [1, 3] => {}
                Some(t) => problem(
                    format!("preprocess.images[{k}]"),
                    format!(
                        "{file}'s image input {} is not [1, 3, H, W] (or [3, H, W]) f32",
                        describe(t)
                    ),
                ),
                None => problem(
                    format!("preprocess.images[{k}].input"),
                    format!(
                        "{name:?} is not an input of {file} (its inputs: {})",
                        list(&seg0.inputs)
                    ),
                ),
            }
        }
        if let Some(name) = &p.instruction {
            match seg0.input(name) {
                Some(t) if t.shape.len() == 2 && t.shape[0] == 1 => {}
                Some(t) => problem(
                    "preprocess.instruction".into(),
                    format!("{file}'s instruction input {} is not [1, K] / [K] (one-hot) or [1, L] / [L] (token ids)", describe(t)),
                ),
                None => problem(
                    "preprocess.instruction".into(),
                    format!("{name:?} is not an input of {file} (its inputs: {})", list(&seg0.inputs)),
                ),
            }
        }
        for t in &seg0.inputs {
            if !images.contains(&t.name.as_str()) && p.instruction.as_ref() != Some(&t.name) {
                problem(
                    "preprocess".into(),
                    format!(
                        "{file} takes {}, which is neither an image input nor the instruction (`instruction = {:?}` if it is)",
                        describe(t),
                        t.name
                    ),
                );
            }
        }
    }
    if let Some(r) = &src.criterion.exit0_reference {
        if seg0.output(r).is_none() {
            problem(
                "criterion.exit0_reference".into(),
                format!(
                    "{r:?} is not an output of {} (its outputs: {})",
                    seg0.file,
                    list(&seg0.outputs)
                ),
            );
        }
    }
}
