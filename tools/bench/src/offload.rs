//! `offramp bench offload`: local-only against offloading the deep exits to
//! a server, on the same closed-loop episodes, in one run. The robot's
//! engines are throttled by a stated slowdown factor to model a robot
//! slower than the server (here both are this machine): after each engine
//! run, the robot's engine sleeps (factor − 1) × the time the run took. The
//! server (in-process, its own zenoh session on loopback) is not throttled.

use crate::Bars;
use offramp_calibrate::eval::{evaluate, EvalReport};
use offramp_engines::{Chain, Engine, EngineSet};
use offramp_engines_cpu::CpuEngine;
use offramp_link::offload::{set_prefix, OffloadServer, ZenohOffload};
use offramp_link::zenoh_link::{free_loopback_endpoint, open_session, ZenohOptions};
use offramp_runtime::exit_chain::offload::OffloadCounters;
use offramp_runtime::exit_chain::{ExitChain, ExitPolicy};
use offramp_runtime::pipeline::Pipeline;
use offramp_sim::SimConfig;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A CPU engine made `factor` times slower: after each run it sleeps
/// (factor − 1) × the run's own time.
struct Throttled {
    inner: CpuEngine,
    factor: f64,
}

impl Engine for Throttled {
    fn run(
        &mut self,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
    ) -> offramp_engines::Result<()> {
        let t0 = Instant::now();
        let r = self.inner.run(inputs, outputs);
        std::thread::sleep(t0.elapsed().mul_f64(self.factor - 1.0));
        r
    }
}

fn throttled_pipeline(
    set: &EngineSet,
    factor: f64,
    frame: (usize, usize),
) -> anyhow::Result<Pipeline> {
    let chain = Chain::with_engines(set, |_, path, inputs, outputs| {
        Ok(Box::new(Throttled {
            inner: CpuEngine::load(path, inputs, outputs)?,
            factor,
        }))
    })?;
    Ok(Pipeline::with_chain(
        set,
        ExitChain::with_chain(set, chain)?,
        frame,
    )?)
}

#[derive(Serialize)]
pub struct Side {
    pub success_rate: f64,
    pub successes: usize,
    pub frames: usize,
    pub mean_exit: f64,
    /// Mean compute per frame on the robot, as a share of the full model.
    pub robot_compute_ratio: f64,
    /// The same over both devices.
    pub total_compute_ratio: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub remote_frames: usize,
    pub fallback_frames: usize,
}

impl Side {
    fn of(r: &EvalReport) -> Self {
        let (p50, p99) = r
            .latency_ms
            .map_or((f64::NAN, f64::NAN), |l| (l.p50, l.p99));
        Self {
            success_rate: r.success_rate,
            successes: r.successes,
            frames: r.frames,
            mean_exit: r.mean_exit,
            robot_compute_ratio: r.robot_compute_ratio,
            total_compute_ratio: r.compute_ratio,
            latency_p50_ms: p50,
            latency_p99_ms: p99,
            remote_frames: r.remote_frames,
            fallback_frames: r.fallback_frames,
        }
    }
}

#[derive(Serialize)]
pub struct OffloadBench {
    pub engines: String,
    /// The robot's engines run this many times slower than the server's
    /// (a sleep after each run; both are this machine).
    pub robot_slowdown: f64,
    /// Exits the robot keeps (1-based: exits 1..=K local, the rest served).
    pub local_exits: usize,
    pub episodes: usize,
    pub first_seed: u64,
    pub local_only: Side,
    pub offload: Side,
    pub offload_counters: Option<OffloadCounters>,
    /// Requests the server answered.
    pub served: u64,
    /// Robot-side compute of offload over local-only.
    pub robot_compute_saving: f64,
}

pub fn run(
    engines: &Path,
    episodes: usize,
    first_seed: u64,
    local_exits: usize,
    slowdown: f64,
    bars: Bars,
) -> anyhow::Result<OffloadBench> {
    let cfg = SimConfig::default();
    let set = EngineSet::open(engines)?;
    let size = (cfg.image_width, cfg.image_height);
    let robot = "bench-offload";
    let prefix = set_prefix(robot, &set)?;
    let endpoint = free_loopback_endpoint()?;
    let robot_session = open_session(&ZenohOptions {
        listen: vec![endpoint.clone()],
        ..Default::default()
    })?;
    // The server: every exit loaded, unthrottled, in its own thread.
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        let session = open_session(&ZenohOptions {
            connect: vec![endpoint],
            ..Default::default()
        })?;
        let chain = ExitChain::new(&set, set.manifest.build.backend)?;
        let mut server = OffloadServer::open(session, chain, &prefix, 0, "bench")?;
        std::thread::spawn(move || {
            server.run(&stop);
            server.counters()
        })
    };
    let link = ZenohOffload::for_set(robot_session, robot, &set)?;
    if !link.wait_for_servers(1, Duration::from_secs(20)) {
        anyhow::bail!("the in-process offload server was not seen within 20 s");
    }
    let mut local = throttled_pipeline(&set, slowdown, size)?;
    let mut offload = throttled_pipeline(&set, slowdown, size)?;
    offload
        .chain
        .set_offload(local_exits, Box::new(link), Duration::from_secs(1))?;
    let tick = bars(2 * episodes as u64, "bench offload");
    let run =
        |p: &mut Pipeline| evaluate(p, &cfg, first_seed, episodes, ExitPolicy::Criterion, &*tick);
    let lo = run(&mut local)?;
    let off = run(&mut offload)?;
    drop(tick);
    stop.store(true, Ordering::Relaxed);
    let served = server
        .join()
        .map_err(|_| anyhow::anyhow!("the offload server thread panicked"))?
        .served;
    Ok(OffloadBench {
        engines: engines.display().to_string(),
        robot_slowdown: slowdown,
        local_exits,
        episodes,
        first_seed,
        robot_compute_saving: 1.0 - off.robot_compute_ratio / lo.robot_compute_ratio,
        offload_counters: offload.chain.offload_counters(),
        local_only: Side::of(&lo),
        offload: Side::of(&off),
        served,
    })
}

/// `--robot-slowdown`: how many times slower the robot's engines run than
/// the server's; at least 1.
pub fn parse_slowdown(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f >= 1.0 => Ok(f),
        Ok(f) => Err(format!(
            "{f} is below 1 (the robot cannot be faster than itself)"
        )),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}
