//! Offloading deep exits over real zenoh sessions on loopback, with the
//! demo engine set on the CPU backend: the server is `OffloadServer` (what
//! `offramp serve` runs), the robot an `ExitChain` with `ZenohOffload`.

use offramp_engines::manifest::{CarriedDtype, OffloadSpec};
use offramp_engines::{BackendKind, EngineSet};
use offramp_link::offload::{set_digest, set_prefix, OffloadServer, ServeCounters, ZenohOffload};
use offramp_link::zenoh_link::{free_loopback_endpoint, open_session, ZenohOptions};
use offramp_runtime::exit_chain::offload::{Offload, OffloadError, OffloadReply, OffloadRequest};
use offramp_runtime::exit_chain::{ExitChain, ExitPolicy, FrameOutcome};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// The demo set and a copy of it in a scratch directory (for a manifest
/// of its own).
fn demo_copy() -> (EngineSet, tempfile::TempDir) {
    let demo = demo_set();
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&demo.dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    (demo, dir)
}

#[test]
fn fp16_carried_tensors_stay_close_to_local_exits() {
    // The demo set with `[offload] carried = "fp16"` in its manifest.
    let (demo, dir) = demo_copy();
    let mut m = demo.manifest.clone();
    m.offload = Some(OffloadSpec {
        carried: CarriedDtype::Fp16,
        ..OffloadSpec::default()
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

#[test]
fn answers_past_the_manifests_bounds_are_not_committed() {
    let (demo, dir) = demo_copy();
    // A bound that is not a bound is refused by name.
    let mut m = demo.manifest.clone();
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        m.offload = Some(OffloadSpec {
            max_abs_state: Some(bad),
            ..OffloadSpec::default()
        });
        let e = EngineSet::write_manifest(dir.path(), &m)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("offload.max_abs_state") && e.contains("finite"),
            "{e}"
        );
    }
    // The demo head's state is a GRU's (within 1): a bound below what it
    // reaches refuses the server's answers, and the robot falls back.
    m.offload = Some(OffloadSpec {
        max_abs_state: Some(1e-3),
        ..OffloadSpec::default()
    });
    EngineSet::write_manifest(dir.path(), &m).unwrap();
    let set = EngineSet::open(dir.path()).unwrap();
    let (server, _, mut robot) = local_and_offloaded(&set, "bounded");
    for f in 0..20 {
        fill(&mut robot, f);
        let r = robot.step(ExitPolicy::Criterion).unwrap();
        assert!(!r.remote && r.fallback, "frame {f}: {r:?}");
    }
    let c = robot.offload_counters().unwrap();
    assert_eq!((c.requests, c.answered, c.rejected), (20, 0, 20));
    drop(server);
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

/// A TCP relay that holds every byte `delay_ms` before passing it on, in
/// order, both ways: the server's session reaches the robot only through
/// it, so requests and replies are late on the wire itself, and a reply
/// that misses its frame's deadline really arrives, later.
fn slow_link(to: &str, delay_ms: Arc<AtomicU64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let at = listener.local_addr().unwrap();
    let to = to.strip_prefix("tcp/").unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let (Ok(a), Ok(b)) = (conn, TcpStream::connect(&to)) else {
                return;
            };
            let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
            for (from, into) in [(a, b), (b2, a2)] {
                let delay = delay_ms.clone();
                std::thread::spawn(move || pump(from, into, &delay));
            }
        }
    });
    format!("tcp/{at}")
}

fn pump(mut from: TcpStream, mut into: TcpStream, delay_ms: &AtomicU64) {
    let _ = into.set_nodelay(true);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Instant, Vec<u8>)>(4096);
    let writer = std::thread::spawn(move || {
        for (due, bytes) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if into.write_all(&bytes).is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 1 << 16];
    let mut last = Instant::now();
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        // In order: a byte never overtakes the one before it.
        let delay = Duration::from_millis(delay_ms.load(Ordering::Relaxed));
        last = last.max(Instant::now() + delay);
        if tx.send((last, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.join();
}

/// Loss in front of the real link: a lost request is never sent (TCP under
/// zenoh does not lose messages; a lost frame on a radio link looks like
/// this to the robot: no answer before the deadline).
struct Lossy {
    inner: ZenohOffload,
    /// Lose requests k where k·loss crosses an integer (evenly spread).
    loss: f64,
    n: u64,
}

impl Offload for Lossy {
    fn run_remote(
        &mut self,
        req: &OffloadRequest<'_>,
        deadline: Instant,
        reply: &mut OffloadReply,
    ) -> Result<bool, OffloadError> {
        self.n += 1;
        let lost =
            ((self.n as f64) * self.loss).floor() > (((self.n - 1) as f64) * self.loss).floor();
        if lost {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            return Ok(false);
        }
        self.inner.run_remote(req, deadline, reply)
    }
}

/// With a slow wire (a relay delaying every byte) and lost requests, no
/// frame misses its deadline, the fallback share follows the loss, every
/// frame falls back while replies come back too late, and answers resume
/// once the wire is fast again (the late replies of the slow frames arrive
/// meanwhile and are not taken for the new frames' answers: those are
/// answered only after the backlog has drained).
#[test]
fn with_delay_and_loss_no_frame_misses_its_deadline_and_fallbacks_follow_loss() {
    let set = demo_set();
    let period = Duration::from_millis(60);
    let fast = 2;
    // (one-way delay per frame, loss)
    let slow_from_10_to_20 = |f: u32| if (10..20).contains(&f) { 80 } else { fast };
    let cases: [(&dyn Fn(u32) -> u64, f64); 4] = [
        (&|_| fast, 0.0),
        (&|_| fast, 0.25),
        (&|_| fast, 0.5),
        (&slow_from_10_to_20, 0.0),
    ];
    let mut fell_back: Vec<Vec<bool>> = Vec::new();
    for (k, (delay_of, loss)) in cases.into_iter().enumerate() {
        let robot_name = format!("faulty-{k}");
        let (endpoint, link) = robot_link(&set, &robot_name);
        let delay_ms = Arc::new(AtomicU64::new(fast));
        let relay = slow_link(&endpoint, delay_ms.clone());
        let _server = Server::start(&set, &robot_name, &relay, 0, "edge");
        wait_for_servers(&link, 1);
        let mut robot = ExitChain::new(&set, BackendKind::Cpu).unwrap();
        let lossy = Lossy {
            inner: link,
            loss,
            n: 0,
        };
        robot
            .set_offload(1, Box::new(lossy), Duration::from_secs(1))
            .unwrap();
        always_past_exit_0(&set, &mut [&mut robot]);
        let frames = 40;
        let mut fb = Vec::new();
        for f in 0..frames {
            delay_ms.store(delay_of(f), Ordering::Relaxed);
            let (o, took) = frame(&mut robot, f, period);
            assert!(o.remote != o.fallback, "frame {f}: {o:?}");
            assert!(
                took < period + Duration::from_millis(40),
                "case {k}, loss {loss}: frame {f} took {took:?}"
            );
            fb.push(o.fallback);
        }
        let c = robot.offload_counters().unwrap();
        eprintln!("case {k}, loss {loss}: {c:?}, fell back {fb:?}");
        fell_back.push(fb);
    }
    let share = |fb: &[bool]| fb.iter().filter(|b| **b).count() as f64 / fb.len() as f64;
    // A fast wire: answered. Loss: about that share falls back.
    assert!(share(&fell_back[0]) <= 0.05, "{fell_back:?}");
    assert!((share(&fell_back[1]) - 0.25).abs() <= 0.1, "{fell_back:?}");
    assert!((share(&fell_back[2]) - 0.5).abs() <= 0.1, "{fell_back:?}");
    // 80 ms each way against a 60 ms frame: every slow frame falls back;
    // before, answered; a few frames after the wire is fast again (its
    // backlog of late replies drained), answered again.
    let slow = &fell_back[3];
    assert!(share(&slow[..10]) <= 0.1, "{slow:?}");
    assert_eq!(share(&slow[10..20]), 1.0, "{slow:?}");
    assert!(share(&slow[25..]) <= 0.1, "{slow:?}");
}
