//! One frame's work, the same everywhere: camera frame (one view per
//! camera) → preprocess into the chain's image inputs → exit chain →
//! action. The run loop, the demo, closed-loop evaluation, calibration and
//! every bench drive this one type, so what they measure is what the robot
//! runs.

use crate::camera::Views;
use crate::exit_chain::{ExitChain, ExitChainError, ExitPolicy, FrameOutcome};
use crate::preprocess::{FramePreprocess, PreprocessError};
use offramp_engines::{BackendKind, EngineSet};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Chain(#[from] ExitChainError),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[cfg(feature = "cuda")]
    #[error(transparent)]
    Cuda(#[from] crate::cuda_preprocess::CudaPreprocessError),
}

/// Preprocessor and exit chain, with every buffer made up front.
pub struct Pipeline {
    pub chain: ExitChain,
    pub pre: FramePreprocess,
    /// The CUDA preprocessing, writing straight into the first engine's
    /// input buffer on the GPU (see [`Self::use_cuda_preprocessing`]).
    #[cfg(feature = "cuda")]
    gpu: Option<(
        crate::cuda_preprocess::CudaPreprocess,
        offramp_engines::DeviceTensor,
    )>,
}

impl Pipeline {
    /// Loads `set` on `backend` for camera frames of `frame`: (width,
    /// height) for one camera, or [`Views`], one per image input.
    pub fn open(
        set: &EngineSet,
        backend: BackendKind,
        frame: impl Into<Views>,
    ) -> Result<Self, PipelineError> {
        Self::with_chain(set, ExitChain::new(set, backend)?, frame)
    }

    /// The same over an exit chain built by the caller (engines of its own,
    /// an offload link set).
    pub fn with_chain(
        set: &EngineSet,
        chain: ExitChain,
        frame: impl Into<Views>,
    ) -> Result<Self, PipelineError> {
        Ok(Self {
            chain,
            pre: FramePreprocess::for_set(set, &frame.into())?,
            #[cfg(feature = "cuda")]
            gpu: None,
        })
    }

    /// Preprocesses on the GPU, into the first engine's device input: the
    /// frame is uploaded once and its tensor never comes back to the host.
    /// Needs a backend with device buffers (TensorRT); an error says why
    /// when it cannot (no GPU, no NVRTC, a CPU engine set).
    #[cfg(feature = "cuda")]
    pub fn use_cuda_preprocessing(&mut self) -> Result<(), PipelineError> {
        use crate::cuda_preprocess::{CudaPreprocess, CudaPreprocessError};
        let (pre, input) = self.pre.single().ok_or_else(|| {
            CudaPreprocessError::Unavailable(
                "GPU preprocessing serves a model with one camera; this one reads several \
                 (their views are preprocessed on the CPU without --gpu-preprocess)"
                    .into(),
            )
        })?;
        // Checked before the engine is told its input lives on the device.
        let gpu = CudaPreprocess::new(pre)?;
        let dst = self.chain.input_on_device(input).ok_or_else(|| {
            CudaPreprocessError::Unavailable(
                "this engine set's backend has no device buffers to write into \
                 (GPU preprocessing feeds TensorRT engines)"
                    .into(),
            )
        })?;
        self.gpu = Some((gpu, dst));
        Ok(())
    }

    /// A new episode: forget the recurrent state, set the instruction
    /// (refused if the model does not know it).
    pub fn begin_episode(&mut self, instruction: usize) -> Result<(), PipelineError> {
        self.chain.reset();
        Ok(self.chain.set_instruction(instruction)?)
    }

    /// Runs one frame (HWC RGB, the views end to end) under
    /// `policy`; with a deadline, exits that cannot finish in time are
    /// skipped. Allocates nothing in this code.
    pub fn infer(
        &mut self,
        frame: &[u8],
        policy: ExitPolicy,
        deadline: Option<Instant>,
    ) -> Result<FrameOutcome, PipelineError> {
        #[cfg(feature = "cuda")]
        if let Some((gpu, dst)) = &mut self.gpu {
            gpu.run(frame)?;
            gpu.write_device(*dst)?;
            return Ok(self.chain.step_until(policy, deadline)?);
        }
        self.pre.run(frame, self.chain.inputs_mut())?;
        Ok(self.chain.step_until(policy, deadline)?)
    }

    /// The action of the last frame (zeros if it was stopped).
    pub fn action(&self) -> &[f32] {
        self.chain.action()
    }
}
