//! Offloading deep exits over real zenoh sessions on loopback, with the
//! demo engine set on the CPU backend: the server is `OffloadServer` (what
//! `offramp serve` runs), the robot an `ExitChain` with `ZenohOffload`.

use offramp_engines::manifest::{CarriedDtype, OffloadSpec};
use offramp_engines::{BackendKind, EngineSet};
use offramp_link::offload::{set_digest, set_prefix, OffloadServer, ServeCounters, ZenohOffload};
use offramp_link::zenoh_link::{free_loopback_endpoint, open_session, ZenohOptions};
use offramp_runtime::exit_chain::offload::{Offload, OffloadError, OffloadReply, OffloadRequest};
use offramp_runtime::exit_chain::{ExitChain, ExitPolicy, FrameOutcome};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn demo_set() -> EngineSet {
    EngineSet::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../engines/models/demo"))
        .unwrap()
}

/// A server in its own thread with its own session, until stopped: the
/// session closes with it, as when its process ends.
struct Server {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<ServeCounters>>,
}

impl Server {
    fn start(set: &EngineSet, robot: &str, connect: &str, rank: u32, name: &str) -> Self {
        let set = set.clone();
        let (robot, connect, name) = (robot.to_string(), connect.to_string(), name.to_string());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let session = open_session(&ZenohOptions {
                connect: vec![connect],
                ..Default::default()
            })
            .unwrap();
            let chain = ExitChain::new(&set, BackendKind::Cpu).unwrap();
            let prefix = set_prefix(&robot, &set).unwrap();
            let mut server = OffloadServer::open(session, chain, &prefix, rank, &name).unwrap();
            server.run(&flag);
            server.counters()
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the server and closes its session; returns what it served.
    fn kill(&mut self) -> ServeCounters {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.kill();
        }
    }
}

/// The robot's session (listening) and an offload link to `robot`'s servers.
fn robot_link(set: &EngineSet, robot: &str) -> (String, ZenohOffload) {
    let endpoint = free_loopback_endpoint().unwrap();
    let session = open_session(&ZenohOptions {
        listen: vec![endpoint.clone()],
        ..Default::default()
    })
    .unwrap();
    (
        endpoint,
        ZenohOffload::for_set(session, robot, set).unwrap(),
    )
}

fn wait_for_servers(link: &ZenohOffload, n: usize) {
    assert!(
        link.wait_for_servers(n, Duration::from_secs(20)),
        "servers seen: {:?}",
        link.live_servers()
    );
}

/// A deterministic image and instruction for frame `f`.
fn fill(chain: &mut ExitChain, f: u32) {
    let mut x = f.wrapping_mul(2_654_435_761).wrapping_add(12345);
    for v in chain.image_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *v = (x % 2000) as f32 / 1000.0 - 1.0;
    }
    chain.set_instruction(f as usize % 3).unwrap();
}

/// Thresholds under which exit 0 never stops (every frame wants a deeper
/// exit) and the deeper exits keep the calibrated ones.
fn always_past_exit_0(set: &EngineSet, chains: &mut [&mut ExitChain]) {
    let mut t = set.manifest.criterion.thresholds.clone();
    t.resize(set.manifest.exits.len() - 1, 0.05);
    t[0] = 0.0;
    for c in chains {
        c.set_thresholds(&t);
    }
}

/// A server for `robot`, and two chains of `set`: one local, one with
/// exits 2.. offloaded to it; every frame past exit 1 on both.
fn local_and_offloaded(set: &EngineSet, robot: &str) -> (Server, ExitChain, ExitChain) {
    let (endpoint, link) = robot_link(set, robot);
    let server = Server::start(set, robot, &endpoint, 0, "edge");
    wait_for_servers(&link, 1);
    let mut local = ExitChain::new(set, BackendKind::Cpu).unwrap();
    let mut offloaded = ExitChain::new(set, BackendKind::Cpu).unwrap();
    offloaded
        .set_offload(1, Box::new(link), Duration::from_secs(10))
        .unwrap();
    always_past_exit_0(set, &mut [&mut local, &mut offloaded]);
    (server, local, offloaded)
}

#[test]
fn remote_deep_exits_equal_local_ones_bit_for_bit() {
    let set = demo_set();
    let (_server, mut local, mut robot) = local_and_offloaded(&set, "bit-exact");
    let mut exits = vec![0usize; set.manifest.exits.len()];
    for f in 0..40 {
        fill(&mut local, f);
        fill(&mut robot, f);
        let l = local.step(ExitPolicy::Criterion).unwrap();
        let r = robot.step(ExitPolicy::Criterion).unwrap();
        assert!(r.remote && !r.fallback, "frame {f}: {r:?}");
        assert_eq!((r.exit, r.ran), (l.exit, l.ran), "frame {f}");
        let bits = |a: &[f32]| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(robot.action()), bits(local.action()), "frame {f}");
        for i in 1..l.ran {
            assert_eq!(
                r.scores[i].to_bits(),
                l.scores[i].to_bits(),
                "frame {f} exit {i}"
            );
        }
        exits[l.exit] += 1;
    }
    // The frames stopped at more than one remote exit, and the recurrent
    // state carried through them all (later actions depend on it).
    assert!(
        exits.iter().skip(1).filter(|n| **n > 0).count() >= 2,
        "{exits:?}"
    );
    let c = robot.offload_counters().unwrap();
    assert_eq!((c.requests, c.answered, c.fallbacks), (40, 40, 0));
}

#[test]
fn fp16_carried_tensors_stay_close_to_local_exits() {
    // The demo set with `[offload] carried = "fp16"` in its manifest.
    let demo = demo_set();
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&demo.dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let mut m = demo.manifest.clone();
    m.offload = Some(OffloadSpec {
        carried: CarriedDtype::Fp16,
    });
    EngineSet::write_manifest(dir.path(), &m).unwrap();
    let set = EngineSet::open(dir.path()).unwrap();
    assert_ne!(set_digest(&set).unwrap(), set_digest(&demo).unwrap());
    let (_server, mut local, mut robot) = local_and_offloaded(&set, "half");
    let (mut same_exit, mut worst) = (0, 0.0f32);
    for f in 0..40 {
        fill(&mut local, f);
        fill(&mut robot, f);
        let l = local.step(ExitPolicy::Criterion).unwrap();
        let r = robot.step(ExitPolicy::Criterion).unwrap();
        assert!(r.remote, "frame {f}: {r:?}");
        if l.exit == r.exit {
            same_exit += 1;
            for (a, b) in robot.action().iter().zip(local.action()) {
                worst = worst.max((a - b).abs());
            }
        }
    }
    eprintln!("fp16: {same_exit}/40 frames at the same exit, worst action difference {worst}");
    assert!(same_exit >= 36, "{same_exit}/40");
    assert!(worst < 0.01, "{worst}");
}

/// One frame at `period`, with the frame's deadline a period from its
/// start; returns the outcome and how long the step took.
fn frame(chain: &mut ExitChain, f: u32, period: Duration) -> (FrameOutcome, Duration) {
    fill(chain, f);
    let t0 = Instant::now();
    let o = chain
        .step_until(ExitPolicy::Criterion, Some(t0 + period))
        .unwrap();
    (o, t0.elapsed())
}

#[test]
fn killing_the_active_server_hands_over_to_the_standby_within_a_frame() {
    let set = demo_set();
    let (endpoint, link) = robot_link(&set, "failover");
    let mut active = Server::start(&set, "failover", &endpoint, 0, "active");
    let standby = Server::start(&set, "failover", &endpoint, 1, "standby");
    wait_for_servers(&link, 2);
    let mut robot = ExitChain::new(&set, BackendKind::Cpu).unwrap();
    robot
        .set_offload(1, Box::new(link), Duration::from_secs(1))
        .unwrap();
    always_past_exit_0(&set, &mut [&mut robot]);
    let period = Duration::from_millis(100);
    let mut outcomes = Vec::new();
    for f in 0..10 {
        let t = Instant::now();
        outcomes.push(frame(&mut robot, f, period));
        std::thread::sleep(period.saturating_sub(t.elapsed()));
    }
    let served_before = active.kill();
    let killed = Instant::now();
    let mut first_standby = None;
    for f in 10..30 {
        let t = Instant::now();
        let (o, took) = frame(&mut robot, f, period);
        if o.remote && first_standby.is_none() {
            first_standby = Some(killed.elapsed());
        }
        outcomes.push((o, took));
        std::thread::sleep(period.saturating_sub(t.elapsed()));
    }
    drop(standby);
    // Every frame had an action, within its deadline.
    assert_eq!(outcomes.len(), 30);
    for (f, (o, took)) in outcomes.iter().enumerate() {
        assert!(o.remote || o.fallback, "frame {f}: {o:?}");
        assert!(
            *took < period + Duration::from_millis(40),
            "frame {f} took {took:?}"
        );
    }
    assert_eq!(served_before.served, 10);
    let c = robot.offload_counters().unwrap();
    assert_eq!(c.failovers, 1, "{c:?}");
    // The first frame after the kill is already the standby's.
    let first = first_standby.expect("the standby never answered");
    assert!(
        first <= period,
        "standby first answered {first:?} after the kill"
    );
    assert!(outcomes[10].0.remote, "{:?}", outcomes[10].0);
    assert_eq!(c.fallbacks, 0, "{c:?}");
}

/// A link with injected delay and loss in front of the real one: a lost
/// request is never answered, a delayed one is sent `delay` late.
struct Faulty {
    inner: ZenohOffload,
    delay: Duration,
    /// Lose requests k where k·loss crosses an integer (evenly spread).
    loss: f64,
    n: u64,
}

impl Offload for Faulty {
    fn run_remote(
        &mut self,
        req: &OffloadRequest<'_>,
        deadline: Instant,
        reply: &mut OffloadReply,
    ) -> Result<bool, OffloadError> {
        self.n += 1;
        let lost =
            ((self.n as f64) * self.loss).floor() > (((self.n - 1) as f64) * self.loss).floor();
        std::thread::sleep(
            self.delay
                .min(deadline.saturating_duration_since(Instant::now())),
        );
        if lost {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            return Ok(false);
        }
        self.inner.run_remote(req, deadline, reply)
    }
}

#[test]
fn with_delay_and_loss_no_frame_misses_its_deadline_and_fallbacks_follow_loss() {
    let set = demo_set();
    let period = Duration::from_millis(60);
    let mut shares = Vec::new();
    for (k, (delay_ms, loss)) in [(5, 0.0), (5, 0.25), (20, 0.5), (80, 0.0)]
        .into_iter()
        .enumerate()
    {
        let robot_name = format!("faulty-{k}");
        let (endpoint, link) = robot_link(&set, &robot_name);
        let _server = Server::start(&set, &robot_name, &endpoint, 0, "edge");
        wait_for_servers(&link, 1);
        let mut robot = ExitChain::new(&set, BackendKind::Cpu).unwrap();
        let faulty = Faulty {
            inner: link,
            delay: Duration::from_millis(delay_ms),
            loss,
            n: 0,
        };
        robot
            .set_offload(1, Box::new(faulty), Duration::from_secs(1))
            .unwrap();
        always_past_exit_0(&set, &mut [&mut robot]);
        let frames = 40;
        for f in 0..frames {
            let (o, took) = frame(&mut robot, f, period);
            assert!(o.remote || o.fallback);
            assert!(
                took < period + Duration::from_millis(40),
                "delay {delay_ms} ms, loss {loss}: frame {f} took {took:?}"
            );
        }
        let c = robot.offload_counters().unwrap();
        let share = c.fallbacks as f64 / c.requests as f64;
        eprintln!("delay {delay_ms} ms, loss {loss}: fallback share {share:.3} ({c:?})");
        shares.push(share);
    }
    // No loss and a short delay: answered. Loss: about that share falls
    // back. A delay past the deadline: every frame falls back.
    assert!(shares[0] <= 0.05, "{shares:?}");
    assert!((shares[1] - 0.25).abs() <= 0.1, "{shares:?}");
    assert!((shares[2] - 0.5).abs() <= 0.1, "{shares:?}");
    assert_eq!(shares[3], 1.0, "{shares:?}");
}
