//! The real-time path of offramp, and nothing else: what runs on the robot
//! between the camera and the actuator.
//!
//! * [`camera`]: frame sources ([`camera::Source`]: replay, V4L2) and the
//!   newest-frame handoff.
//! * [`preprocess`]: camera frame → model input, allocation-free. With
//!   `--features cuda`, `cuda_preprocess` computes the same on the GPU,
//!   straight into a TensorRT engine's input buffer.
//! * [`exit_chain`]: the DeeR early-exit loop over an engine set, with the
//!   per-frame deadline; [`exit_chain::offload`]: deep exits on a server,
//!   the runtime's side (the network is `offramp-link`'s).
//! * [`pipeline`]: preprocess + exit chain, the one frame step every caller
//!   uses.
//! * [`run_loop`]: camera → pipeline → [`run_loop::Actuator`], with stats.
//! * [`recorder`]: the per-frame flight recorder.
//! * [`npy`]: the replay format's arrays.
//! * [`stats`]: latency summaries.
//! * [`twist`]: the command a differential drive gets, held inside its
//!   limits.
//! * [`closed_loop`]: a task the robot acts in, in lockstep with the run
//!   loop (the simulator implements it; calibration is written against it).
//!
//! The simulator, plotting, the network and the QEMU harness live in other
//! crates; this one never links them.

pub mod backend;
pub mod camera;
pub mod closed_loop;
#[cfg(feature = "cuda")]
pub mod cuda_preprocess;
pub mod exit_chain;
pub mod npy;
#[cfg(feature = "cuda")]
pub mod nvrtc;
pub mod pipeline;
pub mod pixfmt;
pub mod preprocess;
pub mod recorder;
pub mod run_loop;
pub mod stats;
pub mod twist;
