//! LeRobot datasets (the layout robot-learning teams keep their
//! demonstrations in) read and converted into offramp's replay format, so
//! that a team's own demonstrations calibrate its thresholds (`offramp
//! calibrate --episodes`) or replay as a camera (`--camera replay:DIR`):
//! `offramp import-lerobot`.
//!
//! * [`dataset`]: a dataset's metadata, its frames' rows (parquet) and its
//!   videos (decoded by ffmpeg), in layouts v2.x and v3.0.
//! * [`import`]: the frames of chosen cameras and episodes as the replay
//!   format's arrays.
//!
//! A crate of its own because it pulls the parquet reader, which only a
//! development machine needs: the `offramp` binary's `lerobot` feature turns
//! it on, and the robot's build leaves it out.

pub mod dataset;
pub mod import;

pub use dataset::Dataset;
pub use import::{import, ImportReport};
