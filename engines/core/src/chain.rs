//! The engines of one set, chained, with every buffer allocated once.

use crate::manifest::TensorSpec;
use crate::{DeviceTensor, Engine, EngineSet, Error, Result};

/// Where a segment input comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    ModelInput(usize),
    PreviousOutput(usize),
}

struct Stage {
    engine: Box<dyn Engine>,
    sources: Vec<Source>,
    outputs: Vec<Vec<f32>>,
    names: Vec<String>,
    /// The output the head reads, or, in a set without a head, the output
    /// that is this exit's action.
    feature: usize,
    /// Outputs only the next segment reads, kept on the GPU: their host
    /// buffers are stale ([`Chain::keep_between_segments_on_device`]).
    on_device: Vec<bool>,
}

/// The shared head, when the set has one.
struct HeadStage {
    engine: Box<dyn Engine>,
    /// Where the feature sits among the head's inputs; the other inputs
    /// (a recurrent state, a cache's tensors) fill the rest in order.
    feature_at: usize,
    action: usize,
    /// Output index of the next recurrent state (`None`: stateless).
    state: Option<usize>,
    outputs: Vec<Vec<f32>>,
    /// Input index of the recurrent state.
    state_at: Option<usize>,
    /// Per head input: what [`Chain::run_head`] feeds an input that is
    /// neither the feature nor the state (an empty cache: zero keys and
    /// values, every slot masked); empty for those two.
    idle: Vec<Vec<f32>>,
}

/// Runs segment after segment of an engine set, and the shared head on any
/// exit's feature. Buffers are sized from the manifest when the chain is
/// built; running allocates nothing in this code (the backend may).
pub struct Chain {
    inputs: Vec<Vec<f32>>,
    stages: Vec<Stage>,
    head: Option<HeadStage>,
    /// Time spent inside engines since the last `take_engine_time`.
    engine_time: std::time::Duration,
    /// Device time (CUDA events) since the last `take_device_seconds`;
    /// negative while no engine reported any.
    device_time: f32,
}

/// Most inputs or outputs one segment may have (the run path uses fixed
/// arrays of slices rather than allocating a list per call).
pub const MAX_IO: usize = 16;

fn buffers(specs: &[TensorSpec]) -> Vec<Vec<f32>> {
    specs.iter().map(|s| vec![0.0; s.elements()]).collect()
}

/// Which engine of a set a [`Chain::with_engines`] factory is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Exit segment `i`.
    Segment(usize),
    /// The shared action head.
    Head,
}

impl Chain {
    /// Builds the chain of `set` with engines from `make` (called once per
    /// segment, then for the head, with the artifact path and the tensors
    /// the manifest declares): a backend of your own, or test doubles.
    pub fn with_engines(
        set: &EngineSet,
        mut make: impl FnMut(
            Role,
            &std::path::Path,
            &[TensorSpec],
            &[TensorSpec],
        ) -> Result<Box<dyn Engine>>,
    ) -> Result<Self> {
        let m = &set.manifest;
        let too_many = m
            .exits
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("exits[{i}]"), s.inputs.len().max(s.outputs.len())))
            .chain(
                m.head
                    .iter()
                    .map(|h| ("head".to_string(), h.outputs.len().max(h.inputs.len()))),
            )
            .find(|(_, n)| *n > MAX_IO);
        if let Some((field, n)) = too_many {
            return Err(Error::Invalid {
                path: set.manifest_path.clone(),
                field,
                message: format!("{n} tensors on one side; at most {MAX_IO} are supported"),
            });
        }
        let loaded = m.loaded_exits();
        let mut stages = Vec::with_capacity(loaded);
        let mut prev: &[TensorSpec] = &m.inputs;
        for (i, seg) in m.exits.iter().enumerate().take(loaded) {
            let sources = seg
                .inputs
                .iter()
                .map(|input| {
                    let k = prev.iter().position(|t| t.name == input.name);
                    match (i, k) {
                        (0, Some(k)) => Ok(Source::ModelInput(k)),
                        (_, Some(k)) => Ok(Source::PreviousOutput(k)),
                        // EngineSet::open checked this; a hand-built set may not be.
                        (_, None) => Err(Error::Invalid {
                            path: set.manifest_path.clone(),
                            field: format!("exits[{i}].inputs"),
                            message: format!("{:?} has no source", input.name),
                        }),
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            let (field, name) = match &m.head {
                Some(_) => ("feature", &seg.feature),
                None => ("action", &seg.action),
            };
            let feature = seg
                .outputs
                .iter()
                .position(|t| Some(&t.name) == name.as_ref())
                .ok_or_else(|| Error::Invalid {
                    path: set.manifest_path.clone(),
                    field: format!("exits[{i}].{field}"),
                    message: format!("{name:?} is not an output"),
                })?;
            stages.push(Stage {
                engine: make(
                    Role::Segment(i),
                    &set.artifact_path(&seg.artifact),
                    &seg.inputs,
                    &seg.outputs,
                )?,
                sources,
                outputs: buffers(&seg.outputs),
                names: seg.outputs.iter().map(|t| t.name.clone()).collect(),
                feature,
                on_device: vec![false; seg.outputs.len()],
            });
            crate::return_freed_memory();
            prev = &seg.outputs;
        }
        let head = match &m.head {
            Some(h) => {
                let pos =
                    |list: &[TensorSpec], name: &str| list.iter().position(|t| t.name == name);
                let state = h.state_output.as_deref().map(|name| pos(&h.outputs, name));
                let (Some(feat), Some(action), None | Some(Some(_))) = (
                    pos(&h.inputs, &h.feature_input),
                    pos(&h.outputs, &h.action_output),
                    state,
                ) else {
                    return Err(Error::Invalid {
                        path: set.manifest_path.clone(),
                        field: "head".into(),
                        message: "feature, action or state tensor not found".into(),
                    });
                };
                let mask = h
                    .cache
                    .as_ref()
                    .and_then(|c| c.resolve(h).ok())
                    .map(|c| c.mask);
                let state_in = h.state_input.as_deref().and_then(|n| pos(&h.inputs, n));
                let idle = h
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(j, t)| {
                        let fill = if Some(j) == mask {
                            crate::cache::MASKED
                        } else {
                            0.0
                        };
                        match j != feat && Some(j) != state_in {
                            true => vec![fill; t.elements()],
                            false => Vec::new(),
                        }
                    })
                    .collect();
                let head = Some(HeadStage {
                    engine: make(
                        Role::Head,
                        &set.artifact_path(&h.artifact),
                        &h.inputs,
                        &h.outputs,
                    )?,
                    feature_at: feat,
                    action,
                    state: state.flatten(),
                    outputs: buffers(&h.outputs),
                    state_at: state_in,
                    idle,
                });
                crate::return_freed_memory();
                head
            }
            None => None,
        };
        Ok(Self {
            inputs: buffers(&m.inputs),
            stages,
            head,
            engine_time: std::time::Duration::ZERO,
            device_time: -1.0,
        })
    }

    pub fn exits(&self) -> usize {
        self.stages.len()
    }

    /// Model input `k` as a device buffer of segment 0's engine, for a
    /// producer on the GPU to fill instead of [`Chain::inputs_mut`] (see
    /// [`Engine::device_input`]); `None` on a backend without device
    /// buffers, where the host buffer stays the input.
    pub fn device_input(&mut self, k: usize) -> Option<DeviceTensor> {
        let stage = self.stages.first_mut()?;
        let j = stage
            .sources
            .iter()
            .position(|s| matches!(s, Source::ModelInput(m) if *m == k))?;
        stage.engine.device_input(j)
    }

    /// On a backend whose tensors live in GPU memory (TensorRT), lets each
    /// segment read the tensors it takes from the previous one (hidden
    /// states) straight from that segment's output buffers: no copy to the
    /// host and back between two segments. Outputs the host reads stay
    /// copied: each exit's feature (or action), and every output for which
    /// `host_reads(segment, output)` is true (a criterion's confidence or
    /// reference). Call before the first run; returns how many tensors stay
    /// on the device (0 on the CPU). Their host buffers
    /// ([`Chain::exit_outputs`]) are stale from then on, so a chain that
    /// offloads or serves exits must not call this.
    pub fn keep_between_segments_on_device(
        &mut self,
        host_reads: impl Fn(usize, usize) -> bool,
    ) -> usize {
        let mut kept = 0;
        for i in 1..self.stages.len() {
            let (done, rest) = self.stages.split_at_mut(i);
            let (prev, stage) = (&mut done[i - 1], &mut rest[0]);
            for (j, src) in stage.sources.iter().enumerate() {
                let Source::PreviousOutput(k) = *src else {
                    continue;
                };
                // An output two inputs read stays copied: were the second
                // link refused, that input would read a stale host buffer.
                let readers = stage
                    .sources
                    .iter()
                    .filter(|s| matches!(s, Source::PreviousOutput(r) if *r == k))
                    .count();
                if k == prev.feature || host_reads(i - 1, k) || readers > 1 {
                    continue;
                }
                let Some(buf) = prev.engine.device_output(k) else {
                    continue;
                };
                // SAFETY: `buf` is an output buffer of the previous engine of
                // this chain: it lives as long as the chain, and the chain
                // runs no engine after it starts dropping them.
                if unsafe { stage.engine.read_input_from(j, buf) } {
                    // The input reads the device buffer from now on: the host
                    // buffer is stale for it, even where the producer goes on
                    // copying its output out (then only that copy is wasted).
                    prev.engine.keep_output_on_device(k);
                    prev.on_device[k] = true;
                    kept += 1;
                }
            }
        }
        kept
    }

    /// Whether output `k` of segment `i` stays on the GPU (its host buffer
    /// is stale; see [`Chain::keep_between_segments_on_device`]).
    pub fn output_on_device(&self, i: usize, k: usize) -> bool {
        self.stages[i].on_device[k]
    }

    /// Buffers of the model inputs (segment 0), to fill before [`Chain::run_exit`].
    pub fn inputs_mut(&mut self) -> &mut [Vec<f32>] {
        &mut self.inputs
    }

    /// Runs segment `i`; segment `i - 1` (or the inputs, for 0) must have run.
    pub fn run_exit(&mut self, i: usize) -> Result<()> {
        let (done, rest) = self.stages.split_at_mut(i);
        let Some(stage) = rest.first_mut() else {
            return Ok(());
        };
        let prev_outputs = done.last().map(|s| &s.outputs);
        let mut ins: [&[f32]; MAX_IO] = [&[]; MAX_IO];
        for (slot, src) in ins.iter_mut().zip(&stage.sources) {
            *slot = match (*src, prev_outputs) {
                (Source::ModelInput(k), _) => &self.inputs[k],
                (Source::PreviousOutput(k), Some(p)) => &p[k],
                (Source::PreviousOutput(_), None) => &[],
            };
        }
        let n_in = stage.sources.len().min(ins.len());
        let mut outs: [&mut [f32]; MAX_IO] = Default::default();
        let n_out = stage.outputs.len().min(outs.len());
        for (slot, buf) in outs.iter_mut().zip(stage.outputs.iter_mut()) {
            *slot = buf;
        }
        let t0 = std::time::Instant::now();
        let r = stage.engine.run(&ins[..n_in], &mut outs[..n_out]);
        self.engine_time += t0.elapsed();
        if let Some(d) = stage.engine.device_seconds() {
            self.device_time = self.device_time.max(0.0) + d;
        }
        r
    }

    /// Device time of the engines run since the last call (GPU backends,
    /// from CUDA events); `None` when none reported any (the CPU backend).
    pub fn take_device_seconds(&mut self) -> Option<f32> {
        let t = std::mem::replace(&mut self.device_time, -1.0);
        (t >= 0.0).then_some(t)
    }

    /// Time spent inside the engines (backend code) since the last call:
    /// what a benchmark subtracts to get the runtime's own overhead.
    pub fn take_engine_time(&mut self) -> std::time::Duration {
        std::mem::take(&mut self.engine_time)
    }

    /// Output `k` of segment `i` from its last run.
    pub fn exit_output(&self, i: usize, k: usize) -> &[f32] {
        &self.stages[i].outputs[k]
    }

    /// Every output of segment `i` from its last run, in manifest order:
    /// what segment `i + 1` reads (the tensors an offload carries).
    pub fn exit_outputs(&self, i: usize) -> &[Vec<f32>] {
        &self.stages[i].outputs
    }

    /// The same, to write: a server resuming the chain after segment `i`
    /// puts the carried tensors here before running segment `i + 1`.
    pub fn exit_outputs_mut(&mut self, i: usize) -> &mut [Vec<f32>] {
        &mut self.stages[i].outputs
    }

    /// The feature segment `i` produced for the head.
    pub fn feature(&self, i: usize) -> &[f32] {
        let s = &self.stages[i];
        &s.outputs[s.feature]
    }

    /// Index of the output of segment `i` that the head reads (or, without
    /// a head, that is its action).
    pub fn feature_index(&self, i: usize) -> usize {
        self.stages[i].feature
    }

    /// Index of segment `i`'s output called `name`.
    pub fn output_index(&self, i: usize, name: &str) -> Option<usize> {
        self.stages.get(i)?.names.iter().position(|n| n == name)
    }

    /// Exit `i`'s action and next recurrent state, from the head run on
    /// its feature with state `state_in` (the state is empty for a
    /// stateless head; a cache head reads an empty cache), or, without a
    /// head, the segment's own action output. The caller decides whether
    /// to commit the state.
    pub fn run_head(&mut self, i: usize, state_in: &[f32]) -> Result<(&[f32], &[f32])> {
        let k = self.stages[i].feature;
        self.run_head_on(i, k, state_in)
    }

    /// The same for output `k` of segment `i` (e.g. DeeR's exit-0
    /// reference): the head run on it, or the output itself without a head.
    pub fn run_head_on(
        &mut self,
        i: usize,
        k: usize,
        state_in: &[f32],
    ) -> Result<(&[f32], &[f32])> {
        // The state where the head takes it; any other input (a cache's) as
        // the idle buffers (moved out for the call: no allocation).
        let idle = self
            .head
            .as_mut()
            .map(|h| std::mem::take(&mut h.idle))
            .unwrap_or_default();
        let (feature_at, state_at) = self
            .head
            .as_ref()
            .map_or((0, None), |h| (h.feature_at, h.state_at));
        let mut others: [&[f32]; MAX_IO] = [&[]; MAX_IO];
        let mut n = 0;
        // At most MAX_IO head inputs (checked when the chain is built).
        for (j, buf) in idle.iter().enumerate().take(MAX_IO) {
            if j != feature_at {
                others[n] = if Some(j) == state_at { state_in } else { buf };
                n += 1;
            }
        }
        let r = self.run_head_with(i, k, &others[..n]).map(|_| ());
        if let Some(h) = self.head.as_mut() {
            h.idle = idle;
        }
        r?;
        Ok(match self.head.as_ref() {
            None => (&self.stages[i].outputs[k], &[]),
            Some(head) => (
                &head.outputs[head.action],
                head.state.map_or(&[][..], |s| &head.outputs[s]),
            ),
        })
    }

    /// The head run on output `k` of segment `i` with `others` as its
    /// other inputs, in the head's input order without the feature (a
    /// recurrent state, a cache's keys, values, mask, positions); returns
    /// the action ([`Chain::head_outputs`] has every output). Without a
    /// head, the output itself.
    pub fn run_head_with(&mut self, i: usize, k: usize, others: &[&[f32]]) -> Result<&[f32]> {
        let feature: &[f32] = &self.stages[i].outputs[k];
        let Some(head) = self.head.as_mut() else {
            return Ok(feature);
        };
        // A wrong count reaches the engine as it is, which refuses it
        // naming its artifact.
        let n_in = (others.len() + 1).min(MAX_IO);
        let mut ins: [&[f32]; MAX_IO] = [&[]; MAX_IO];
        let mut rest = others.iter();
        for (j, slot) in ins.iter_mut().enumerate().take(n_in) {
            *slot = if j == head.feature_at {
                feature
            } else {
                rest.next().copied().unwrap_or(&[])
            };
        }
        let ins = &ins[..n_in];
        let mut outs: [&mut [f32]; MAX_IO] = Default::default();
        let n = head.outputs.len().min(outs.len());
        for (slot, buf) in outs.iter_mut().zip(head.outputs.iter_mut()) {
            *slot = buf;
        }
        let t0 = std::time::Instant::now();
        let r = head.engine.run(ins, &mut outs[..n]);
        self.engine_time += t0.elapsed();
        if let Some(d) = head.engine.device_seconds() {
            self.device_time = self.device_time.max(0.0) + d;
        }
        r?;
        Ok(&head.outputs[head.action])
    }

    /// The action of the last [`Chain::run_head_with`] on output `k` of
    /// segment `i`: the head's action output, or that output itself
    /// without a head.
    pub fn head_action(&self, i: usize, k: usize) -> &[f32] {
        match &self.head {
            Some(h) => &h.outputs[h.action],
            None => &self.stages[i].outputs[k],
        }
    }

    /// Every output of the head from its last run, in manifest order.
    pub fn head_outputs(&self) -> &[Vec<f32>] {
        self.head.as_ref().map_or(&[], |h| &h.outputs)
    }
}
