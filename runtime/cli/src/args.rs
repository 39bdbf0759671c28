//! Arguments shared by several commands, and value checks that refuse a bad
//! value with a message naming it (instead of silently clamping it).

use offramp_engines::EngineSet;
use offramp_link::zenoh_link::ZenohOptions;
use offramp_runtime::camera::CameraSpec;
use std::path::PathBuf;

/// `--engines DIR`, the engine set a command runs. Flatten it into a
/// command's `Args` (`#[command(flatten)] pub engine: EngineArgs`); a command
/// that says more of it replaces the help with `#[command(mut_arg("engines",
/// |a| a.help("...")))]` on its `Args`.
#[derive(clap::Args, Clone, Debug)]
pub struct EngineArgs {
    /// Engine set: a directory with manifest.toml (`offramp build` writes one).
    #[arg(long)]
    pub engines: PathBuf,
    /// Threads of the CPU backend, shared by every segment (default: the
    /// cores this process may use, less one for the bridge).
    #[arg(long, value_parser = at_least_1)]
    pub threads: Option<usize>,
}

impl EngineArgs {
    /// Opens the set, with the CPU backend on --threads threads.
    pub fn open(&self) -> anyhow::Result<EngineSet> {
        offramp_engines_cpu::set_threads(self.threads())?;
        Ok(EngineSet::open(&self.engines)?)
    }

    pub fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(offramp_engines_cpu::default_threads)
    }
}

/// `--engines DIR` for commands that run the demo's set unless told
/// otherwise.
#[derive(clap::Args, Clone, Debug)]
pub struct DemoEngineArgs {
    /// Engine set (default: the committed demo set, from the repository root).
    #[arg(long, default_value = "engines/models/demo")]
    pub engines: PathBuf,
}

/// `--camera SPEC`, the simulator's camera unless told otherwise. A command
/// that takes only some sources says which with `mut_arg("camera", ...)`.
#[derive(clap::Args, Clone, Debug)]
pub struct CameraArgs {
    /// sim | replay:DIR | v4l:/dev/videoN; several cameras separated by
    /// commas, in the order of the model's image inputs.
    #[arg(long, default_value = "sim")]
    pub camera: CameraSpec,
}

/// `--config FILE`, the simulator's task.
#[cfg(feature = "sim")]
#[derive(clap::Args, Clone, Debug)]
pub struct SimConfigArgs {
    /// Simulator configuration (TOML); default: the built-in one.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[cfg(feature = "sim")]
impl SimConfigArgs {
    pub fn load(&self) -> anyhow::Result<offramp_sim::SimConfig> {
        Ok(offramp_sim::SimConfig::load(self.config.as_deref())?)
    }
}

/// Without a config file: peer mode, no multicast scouting, the endpoints
/// given here (else an ephemeral loopback port). With one, the file is the
/// whole truth: a flag for a field it sets is refused.
#[derive(clap::Args, Clone, Debug)]
pub struct ZenohArgs {
    /// Robot name: keys <robot>/action, <robot>/telemetry, <robot>/alive/*.
    #[arg(long, default_value = "offramp")]
    pub robot: String,
    /// zenoh JSON5 config file (replaces the embedded default; the flags
    /// below may only fill what it leaves unset).
    #[arg(long)]
    pub zenoh_config: Option<PathBuf>,
    /// peer | client
    #[arg(long)]
    pub zenoh_mode: Option<String>,
    /// Endpoints to listen on, e.g. tcp/127.0.0.1:7447 (repeatable). A
    /// plaintext endpoint beyond loopback needs --insecure.
    #[arg(long)]
    pub listen: Vec<String>,
    /// Endpoints to connect to (repeatable).
    #[arg(long)]
    pub connect: Vec<String>,
    /// Accept a listener that any host on the network can reach in
    /// plaintext (it can then publish actions to this robot).
    #[arg(long)]
    pub insecure: bool,
}

impl ZenohArgs {
    pub fn options(&self) -> ZenohOptions {
        ZenohOptions {
            config: self.zenoh_config.clone(),
            mode: self.zenoh_mode.clone(),
            listen: self.listen.clone(),
            connect: self.connect.clone(),
            insecure: self.insecure,
        }
    }
}

/// A count that must be at least 1 (episodes, frames, iterations).
pub fn at_least_1(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?} is not a whole number: {e}")),
    }
}

/// The largest value a numeric flag takes. The bound keeps what is built
/// from a flag in range: `3 / fps` as a `Duration`, `now + timeout` as an
/// `Instant` would overflow and panic in the middle of a run instead of
/// being refused here.
const MAX_FLAG: f64 = 1e9;

/// A positive, finite number (durations, rates, budgets) from 1e-6 to
/// [`MAX_FLAG`].
pub fn positive(s: &str) -> Result<f64, String> {
    const RANGE: std::ops::RangeInclusive<f64> = 1e-6..=MAX_FLAG;
    match s.parse::<f64>() {
        Ok(v) if !(v > 0.0 && v.is_finite()) => Err(format!("{v} is not a positive number")),
        Ok(v) if !RANGE.contains(&v) => Err(format!(
            "{v} is out of range: at least {:e}, at most {:e}",
            RANGE.start(),
            RANGE.end()
        )),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("{s:?} is not a number: {e}")),
    }
}

/// A number that is zero or more (a duration that may be skipped), at most
/// [`MAX_FLAG`].
pub fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if !(v >= 0.0 && v.is_finite()) => {
            Err(format!("{v} is not zero or a positive number"))
        }
        Ok(v) if v > MAX_FLAG => Err(format!("{v} is out of range: at most {MAX_FLAG:e}")),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("{s:?} is not a number: {e}")),
    }
}

/// A share between 0 and 1 inclusive.
#[cfg(feature = "sim")]
pub fn share(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v}: must be a share between 0 and 1")),
        Err(e) => Err(format!("{s:?} is not a number: {e}")),
    }
}

/// A count with a floor below which a measurement means nothing.
pub fn at_least(min: usize) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |s: &str| match s.parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        Ok(n) => Err(format!(
            "{n} is too few to measure anything: at least {min}"
        )),
        Err(e) => Err(format!("{s:?} is not a whole number: {e}")),
    }
}

/// Without the `sim` feature there is no simulator to drive.
#[cfg(not(feature = "sim"))]
pub fn no_sim(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what}: this offramp was built without the simulator (the `sim` feature); \
         use a replay:DIR or v4l: camera, or rebuild with `--features sim`"
    )
}

/// Prints a command's report: pretty JSON with `--json`, else the
/// command's own screen for a person.
pub fn print_report<R: serde::Serialize>(
    json: bool,
    report: &R,
    human: impl FnOnce(&R),
) -> anyhow::Result<()> {
    if json {
        use std::io::Write;
        // Not println!: a closed pipe is an error to return, not a panic.
        writeln!(
            std::io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(report)?
        )?;
    } else {
        human(report);
    }
    Ok(())
}
