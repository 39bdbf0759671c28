//! `offramp record`: camera episodes into the replay format, from any frame
//! source, so that a robot's own frames calibrate its thresholds
//! (`offramp calibrate --episodes DIR`) without a simulator.
//!
//! The directory holds, for N frames: `frames.npy` u8 [N, H, W, 3] (with
//! several cameras, `--camera A,B`, the first; `frames.1.npy`... the
//! others), `instructions.npy` i64 [N], `episodes.npy` i32 [N] (what
//! `replay:DIR` and calibration read), `timestamps_ns.npy` i64 [N] (capture time since
//! the first frame) and `meta.json`. Episodes start where the source says
//! (a replay's episode boundaries, the simulator's resets) and every
//! `--episode-frames` frames.
//!
//! With `--telemetry`, the action the robot executed is recorded too:
//! `executed.npy` f32 [N, 2], the wheel speeds (m/s, left and right) the
//! motor controller last reported applying (its telemetry through `offramp
//! bridge`, on `<robot>/telemetry`), NaN for a frame with no report in the
//! `--telemetry-max-age-ms` before it.
//!
//! Frames are streamed to disk as they are taken: memory stays one frame,
//! and Ctrl-C, a crash or a camera fault leaves a recording that loads with
//! every whole frame (Ctrl-C and a fault also write `meta.json`, saying
//! what stopped it).

use crate::args::{at_least_1, positive, ZenohArgs};
use anyhow::{bail, Context};
use offramp_link::executed::Executed;
use offramp_link::zenoh_link::{open_session, telemetry_subscriber, Keys};
use offramp_runtime::camera::{self, CameraSpec, ReplayWriter, Views};
use offramp_runtime::exit_chain::instruction_code;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// replay:DIR | v4l:/dev/videoN | sim; several cameras separated by
    /// commas (`v4l:/dev/video0,v4l:/dev/video2`), in the order of the
    /// model's image inputs.
    #[arg(long)]
    pub camera: CameraSpec,
    /// The recording directory (created; must not hold a recording).
    #[arg(long)]
    pub out: PathBuf,
    /// Stop after this many frames.
    #[arg(long, value_parser = at_least_1)]
    pub frames: usize,
    /// Camera rate (sim and replay play at it; a V4L2 camera runs at its own).
    #[arg(long, default_value_t = 10.0, value_parser = positive)]
    pub fps: f64,
    /// Start a new episode every this many frames, besides where the
    /// source starts one.
    #[arg(long, value_parser = at_least_1)]
    pub episode_frames: Option<usize>,
    /// The instruction of every frame, where the source has none to give
    /// (a V4L2 camera); a replay's or the simulator's own is kept.
    #[arg(long)]
    pub instruction: Option<usize>,
    /// Record the executed action from the robot's telemetry
    /// (`executed.npy`), over zenoh (see the zenoh options).
    #[arg(long)]
    pub telemetry: bool,
    /// A telemetry report older than this when a frame arrives is not that
    /// frame's executed action.
    #[arg(long, default_value_t = 500.0, value_parser = positive)]
    pub telemetry_max_age_ms: f64,
    #[command(flatten)]
    pub zenoh_args: ZenohArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
pub struct RecordReport {
    pub camera: String,
    pub out: String,
    pub frames: usize,
    pub episodes: usize,
    /// Each camera view's [width, height].
    pub views: Vec<(usize, usize)>,
    /// Frames the source published that the recorder missed (it keeps the
    /// newest, as the runtime does).
    pub dropped: u64,
    pub seconds: f64,
    /// What ended the recording: `frames` (as many as asked), `interrupted`
    /// (Ctrl-C), `source ended`, or the camera's fault.
    pub stopped: String,
    /// With --telemetry: frames with an executed action, and the reports
    /// received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executed_frames: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry_reports: Option<u64>,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let r = record(&a)?;
    crate::args::print_report(a.json, &r, |r| {
        println!(
            "recorded {} frames ({}) in {} episodes into {} ({} dropped, {:.1} s)",
            r.frames,
            Views::new(r.views.clone()),
            r.episodes,
            r.out,
            r.dropped,
            r.seconds
        )
    })
}

pub fn record(a: &Args) -> anyhow::Result<RecordReport> {
    if a.out.join("frames.npy").exists() {
        bail!("{}: already holds a recording", a.out.display());
    }
    let source: Box<dyn camera::Source> = match &a.camera {
        #[cfg(feature = "sim")]
        CameraSpec::Sim => Box::new(offramp_sim::camera::SimCamera::new(
            &offramp_sim::SimConfig::default(),
            0,
        )),
        #[cfg(not(feature = "sim"))]
        CameraSpec::Sim => return Err(crate::args::no_sim("--camera sim")),
        spec => camera::open(spec)?,
    };
    // Subscribed before the camera starts, so the first frames find the
    // robot's reports already coming.
    let mut telemetry = if a.telemetry {
        let session = open_session(&a.zenoh_args.options())?;
        let key = Keys::new(&a.zenoh_args.robot)?.telemetry;
        let (sub, rx) = telemetry_subscriber(&session, &key)?;
        let max_age = Duration::from_secs_f64(a.telemetry_max_age_ms / 1000.0);
        Some((session, sub, Executed::new(rx, max_age)))
    } else {
        None
    };
    let mut executed_frames = 0usize;
    // Ctrl-C (or SIGTERM) ends the recording after the frame in hand.
    let interrupted = offramp_link::signal::stop_flag()?;
    let capture = camera::start(source, a.fps)?;
    let views = capture.views.clone();
    // Streamed: every frame is on disk, counted, as soon as it is taken.
    let mut writer = ReplayWriter::create(
        &a.out,
        &views,
        telemetry.is_some().then_some(("executed.npy", 2)),
    )
    .with_context(|| format!("creating the recording in {}", a.out.display()))?;
    let timeout = Duration::from_secs_f64(3.0 / a.fps).max(Duration::from_secs(1));
    let start = Instant::now();
    let mut first: Option<Instant> = None;
    let mut episode: i32 = -1;
    let mut in_episode = 0usize;
    let mut stopped = "frames".to_string();
    let mut failed: Option<anyhow::Error> = None;
    while writer.frames() < a.frames {
        if interrupted.load(std::sync::atomic::Ordering::Relaxed) {
            stopped = "interrupted".into();
            break;
        }
        let got = capture.latest.take(timeout, |buf, meta| {
            let at = meta.captured.unwrap_or_else(Instant::now);
            let t0 = *first.get_or_insert(at);
            let split = a.episode_frames.is_some_and(|n| in_episode >= n);
            if meta.new_episode || split || episode < 0 {
                episode += 1;
                in_episode = 0;
            }
            in_episode += 1;
            let mut executed = [f32::NAN; 2];
            if let Some(got) = telemetry.as_mut().and_then(|(_, _, e)| e.at(at)) {
                executed = got;
                executed_frames += 1;
            }
            writer.push(
                buf,
                instruction_code(a.instruction.unwrap_or(meta.instruction)),
                episode,
                at.saturating_duration_since(t0).as_nanos() as i64,
                telemetry.is_some().then_some(&executed[..]),
            )
        });
        match got {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                stopped = format!("write error: {e}");
                failed = Some(e.into());
                break;
            }
            None => {
                if capture
                    .latest
                    .closed
                    .load(std::sync::atomic::Ordering::Acquire)
                {
                    if let Some(why) = capture.latest.fault() {
                        stopped = format!("camera fault: {why}");
                        failed = Some(anyhow::anyhow!("--camera {}: {why}", a.camera));
                    } else {
                        stopped = "source ended".into();
                    }
                    break;
                }
                stopped = format!("no frame for {timeout:?}");
                failed = Some(anyhow::anyhow!(
                    "--camera {}: no frame for {timeout:?}",
                    a.camera
                ));
                break;
            }
        }
    }
    let n = writer.frames();
    let dropped = capture
        .latest
        .dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    drop(capture);
    writer
        .finish()
        .with_context(|| format!("finishing the recording in {}", a.out.display()))?;
    if n == 0 {
        let why = failed.unwrap_or_else(|| anyhow::anyhow!("the source gave no frame"));
        return Err(why.context(format!("--camera {}: nothing recorded", a.camera)));
    }
    let io = |name: &str| format!("writing {}", a.out.join(name).display());
    let report = RecordReport {
        camera: a.camera.to_string(),
        out: a.out.display().to_string(),
        frames: n,
        episodes: (episode + 1) as usize,
        views: views.sizes().to_vec(),
        dropped,
        seconds: start.elapsed().as_secs_f64(),
        stopped,
        executed_frames: telemetry.is_some().then_some(executed_frames),
        telemetry_reports: telemetry.as_ref().map(|(_, _, e)| e.reports),
    };
    std::fs::write(
        a.out.join("meta.json"),
        serde_json::to_string_pretty(&report)?,
    )
    .with_context(|| io("meta.json"))?;
    if let Some(e) = failed {
        return Err(e.context(format!(
            "the recording in {} keeps its {n} frames",
            a.out.display()
        )));
    }
    Ok(report)
}
