//! What offramp's reports are written as, apart from their JSON: SVG charts
//! (with the `plot` feature: [`plot`], the generic chart, and the charts of
//! the reports that have some, [`profile`] and, with `sweep`, [`sweep`]),
//! and flight records as MCAP ([`mcap`]), the container robotics tools read.
//!
//! A crate of its own so that the commands' domain crates (calibration,
//! benches) and the `offramp` command hold no drawing code, and so that the
//! robot's build, which leaves the `plot` feature out, does not compile
//! plotters; it keeps MCAP export (`offramp recording --mcap`).

pub mod mcap;
#[cfg(feature = "plot")]
pub mod plot;
#[cfg(feature = "plot")]
pub mod profile;
#[cfg(feature = "sweep")]
pub mod sweep;
