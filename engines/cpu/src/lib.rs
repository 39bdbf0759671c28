//! The CPU backend: tract. Each segment is parsed, given the manifest's static
//! input shapes, optimised once at load, and run from one reusable state.
//! With one thread ([`set_threads`]), tract runs each segment on the calling
//! thread: no pool threads compete with the rest of the robot's work for the
//! same cores. With more, one pool serves every segment (they run one after
//! another): tract splits the matrix products and convolutions big enough
//! to gain from it across the pool's threads, and keeps small ones on the
//! calling thread.
//!
//! A crate of its own, beside the format (`offramp-engines`), so that tract
//! is linked only by what runs or reads ONNX: the runtime
//! (`offramp_runtime::backend::load_chain`) and the offline compiler
//! (`offramp-build`, which reads graphs with [`typed_model`] and
//! [`set_input_facts`]).

use offramp_engines::manifest::{DType, TensorSpec};
use offramp_engines::{Chain, EngineSet};
use offramp_engines::{Engine, Error, Result};
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{bail, format_err};

/// The threads tract's kernels use, for every CPU engine of this process:
/// 1 runs every kernel on the calling thread (tract's default); more starts
/// one pool of that many threads, the calling thread among them, shared by
/// all engines. Takes effect for the runs that follow.
pub fn set_threads(n: usize) -> Result<()> {
    use tract_linalg::multithread::{set_default_executor, Executor};
    let executor = if n <= 1 {
        Executor::SingleThread
    } else {
        let pool = rayon::ThreadPoolBuilder::new()
            .thread_name(|k| format!("offramp-tract-{k}"))
            .num_threads(n)
            .build()
            .map_err(|e| Error::Unavailable {
                what: format!("{n} CPU threads"),
                backend: "cpu",
                why: e.to_string(),
            })?;
        Executor::MultiThread(Arc::new(pool))
    };
    set_default_executor(executor);
    THREADS.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// What [`set_threads`] last set (1 before it is called: tract's default).
static THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// The threads tract's kernels use now (see [`set_threads`]).
pub fn threads() -> usize {
    THREADS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The default thread count: the cores this process may run on (its CPU
/// affinity), less one left to the bridge and the capture thread, at least 1.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .max(1)
}

/// Builds every engine of `set` on the CPU (what
/// `offramp_runtime::backend::load_chain` does for [`BackendKind::Cpu`]
/// sets).
///
/// [`BackendKind::Cpu`]: offramp_engines::BackendKind::Cpu
pub fn load_chain(set: &EngineSet) -> Result<Chain> {
    Chain::with_engines(set, |_, path, inputs, outputs| {
        Ok(Box::new(CpuEngine::load(path, inputs, outputs)?))
    })
}

pub struct CpuEngine {
    artifact: PathBuf,
    state: TypedSimpleState,
    /// One tensor per input, made at load. `run` copies the caller's slices
    /// into them and hands tract shared references; tract drops those when
    /// the run's turn is reset, so each is ours alone again by the next run
    /// and is written in place: nothing is allocated on this side per run.
    input_values: Vec<Arc<Tensor>>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

/// Reads an ONNX file into a typed, decluttered tract model with the given
/// static input shapes (shared with `offramp_build::analyze`); with `outputs`,
/// its outputs are those the manifest lists, bound by name in the manifest's
/// order.
pub fn typed_model(
    path: &Path,
    inputs: &[TensorSpec],
    outputs: Option<&[TensorSpec]>,
) -> TractResult<TypedModel> {
    let mut model = tract_onnx::onnx().model_for_path(path)?;
    set_input_facts(&mut model, inputs)?;
    if let Some(outputs) = outputs {
        bind_outputs(&mut model, outputs)?;
    }
    model.into_typed()?.into_decluttered()
}

/// Orders an ONNX model's inputs as the manifest lists them, matched by name
/// (a graph's input order is the exporter's, a manifest may list them in any
/// order; bound by position, two inputs of one shape would silently take each
/// other's data), and gives them the manifest's static shapes and element
/// types (shared with `offramp_build::split`).
pub fn set_input_facts(model: &mut InferenceModel, inputs: &[TensorSpec]) -> TractResult<()> {
    let graph: Vec<OutletId> = model.input_outlets()?.to_vec();
    let names: Vec<&str> = graph
        .iter()
        .map(|o| model.node(o.node).name.as_str())
        .collect();
    let ordered = bind(&graph, &names, inputs, "input")?;
    model.set_input_outlets(&ordered)?;
    for (i, spec) in inputs.iter().enumerate() {
        let fact = match spec.dtype {
            DType::F32 => f32::fact(spec.shape.clone()),
            DType::I64 => i64::fact(spec.shape.clone()),
        };
        model.set_input_fact(i, fact.into())?;
    }
    Ok(())
}

/// Selects an ONNX model's outputs as the manifest lists them, by name.
fn bind_outputs(model: &mut InferenceModel, outputs: &[TensorSpec]) -> TractResult<()> {
    let graph: Vec<OutletId> = model.output_outlets()?.to_vec();
    let names: Vec<&str> = graph
        .iter()
        .map(|o| model.outlet_label(*o).unwrap_or(""))
        .collect();
    let ordered = bind(&graph, &names, outputs, "output")?;
    model.select_output_outlets(&ordered)
}

/// The graph's outlets in the order of `specs`, each found by its name; the
/// error names the manifest's tensor and the graph's own names.
fn bind(
    graph: &[OutletId],
    names: &[&str],
    specs: &[TensorSpec],
    side: &str,
) -> TractResult<Vec<OutletId>> {
    if graph.len() != specs.len() {
        bail!(
            "the graph has {} {side}s, the manifest lists {}",
            graph.len(),
            specs.len()
        );
    }
    let mut ordered: Vec<OutletId> = Vec::with_capacity(specs.len());
    for spec in specs {
        let k = offramp_engines::position_by_name(names, &spec.name, "graph", side)
            .map_err(|e| format_err!("{e}"))?;
        if ordered.contains(&graph[k]) {
            bail!("the manifest lists {side} {:?} twice", spec.name);
        }
        ordered.push(graph[k]);
    }
    Ok(ordered)
}

impl CpuEngine {
    /// Loads `path` and checks its inputs and outputs against the manifest.
    pub fn load(path: &Path, inputs: &[TensorSpec], outputs: &[TensorSpec]) -> Result<Self> {
        let err = |message: String| Error::Load {
            artifact: path.to_path_buf(),
            backend: "cpu",
            message,
        };
        let model = typed_model(path, inputs, Some(outputs)).map_err(|e| err(format!("{e:#}")))?;
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
        let input_values = inputs
            .iter()
            .map(|spec| {
                match spec.dtype {
                    DType::F32 => Tensor::zero::<f32>(&spec.shape),
                    DType::I64 => Tensor::zero::<i64>(&spec.shape),
                }
                .map(Arc::new)
            })
            .collect::<TractResult<Vec<_>>>()
            .map_err(|e| err(format!("{e:#}")))?;
        Ok(Self {
            artifact: path.to_path_buf(),
            state,
            input_values,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
        })
    }
}

impl CpuEngine {
    /// One tract turn on the inputs as they stand: what `SimpleState::run`
    /// does, minus its per-run list of outputs (they are read in place) and
    /// the symbol resolution of stateful ops (KV caches, which no ONNX
    /// segment has; the shapes are static). The caller resets the turn, also
    /// when this fails.
    fn exec(&mut self, outputs: &mut [&mut [f32]]) -> Result<()> {
        let err = |message| offramp_engines::run_error(&self.artifact, message);
        for (k, value) in self.input_values.iter().enumerate() {
            self.state
                .set_input(k, TValue::from_const(Arc::clone(value)))
                .map_err(|e| err(format!("{e:#}")))?;
        }
        self.state.exec().map_err(|e| err(format!("{e:#}")))?;
        for (k, (out, spec)) in outputs.iter_mut().zip(&self.outputs).enumerate() {
            let view = self
                .state
                .output(k)
                .and_then(|v| v.try_as_plain_ram()?.as_slice::<f32>())
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

/// The time one kind of tract operator takes in a run of a segment's
/// optimised plan: what `offramp bench engines --ops` reports, to see where
/// a segment's time goes. On small segments much of it is per-operator work
/// (packing, per-row kernels such as softmax) that does not scale with the
/// segment's MACs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OpTime {
    /// The operator's name in tract's optimised plan (e.g. `OptMatMul`).
    pub op: String,
    /// Nodes of this kind in the plan.
    pub nodes: usize,
    /// Mean microseconds per run spent in them.
    pub us: f64,
}

impl CpuEngine {
    /// Runs the plan `iters` times on the inputs of the last [`Engine::run`]
    /// (zeros before the first), timing every node, and returns the mean time
    /// per run of each kind of operator, the slowest first (nothing for 0
    /// runs). A profiling aid, not for the hot path: it allocates, and the
    /// timing adds a little to every node.
    pub fn op_times(&mut self, iters: usize) -> Result<Vec<OpTime>> {
        let err = |message| offramp_engines::run_error(&self.artifact, message);
        // op name -> (nodes seen, seconds)
        let mut per: std::collections::BTreeMap<String, (usize, f64)> = Default::default();
        for _ in 0..iters {
            let inputs: TVec<TValue> = self
                .input_values
                .iter()
                .map(|v| TValue::from_const(Arc::clone(v)))
                .collect();
            let ran = self
                .state
                .run_plan_with_eval(inputs, |session, op_state, node, input| {
                    let t = std::time::Instant::now();
                    let out = tract_onnx::tract_core::plan::eval(session, op_state, node, input);
                    let dt = t.elapsed().as_secs_f64();
                    let e = per.entry(node.op().name().into_owned()).or_default();
                    e.0 += 1;
                    e.1 += dt;
                    out
                });
            if let Err(e) = ran {
                // A failed run keeps its turn (and tract's references to our
                // inputs, which `run` would then copy rather than reuse).
                let _ = self.state.reset_turn();
                return Err(err(format!("{e:#}")));
            }
        }
        let runs = iters.max(1);
        let mut ops: Vec<OpTime> = per
            .into_iter()
            .map(|(op, (nodes, s))| OpTime {
                op,
                nodes: nodes / runs,
                us: s * 1e6 / runs as f64,
            })
            .collect();
        ops.sort_by(|a, b| b.us.total_cmp(&a.us));
        Ok(ops)
    }
}

impl Engine for CpuEngine {
    fn run(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) -> Result<()> {
        let err = |message| offramp_engines::run_error(&self.artifact, message);
        offramp_engines::check_arity(
            &self.artifact,
            (inputs.len(), outputs.len()),
            (self.inputs.len(), self.outputs.len()),
        )?;
        for ((data, spec), value) in inputs.iter().zip(&self.inputs).zip(&mut self.input_values) {
            // Ours alone: the last run's reset dropped tract's references
            // (were one left, `make_mut` would copy rather than write under it).
            let mut view = Arc::make_mut(value)
                .try_as_plain_ram_mut()
                .map_err(|e| err(format!("input {:?}: {e}", spec.name)))?;
            let len = view.len();
            if len != data.len() {
                return Err(err(format!(
                    "input {:?} has {} values, the engine takes {len}",
                    spec.name,
                    data.len(),
                )));
            }
            match spec.dtype {
                DType::F32 => view
                    .as_slice_mut::<f32>()
                    .map_err(|e| err(format!("input {:?}: {e}", spec.name)))?
                    .copy_from_slice(data),
                // Token ids, held as exact f32 integers (checked < 2^24).
                DType::I64 => {
                    let dst = view
                        .as_slice_mut::<i64>()
                        .map_err(|e| err(format!("input {:?}: {e}", spec.name)))?;
                    for (d, x) in dst.iter_mut().zip(data.iter()) {
                        *d = *x as i64;
                    }
                }
            }
        }
        let ran = self.exec(outputs);
        // Drops tract's references to the inputs and every value of the turn.
        let reset = self.state.reset_turn();
        ran?;
        reset.map_err(|e| Error::Run {
            artifact: self.artifact.clone(),
            message: format!("{e:#}"),
        })
    }
}
