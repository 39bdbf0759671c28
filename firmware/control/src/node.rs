//! The controller behind its serial link: bytes in, frames out.

use crate::{Action, Config, Controller, Output};
use heapless::Deque;
use offramp_protocol::{
    board_name, decode, encode, Accumulator, Boot, Fault, Feed, HostMsg, McuMsg, Pong, ResetCause,
    MAX_FRAME, PROTOCOL_VERSION,
};

/// Outgoing messages waiting for the UART. Telemetry is periodic, so when the
/// queue is full the newest message is dropped rather than blocking control.
const TX_QUEUE: usize = 8;

/// Link layer + [`Controller`]. The board calls [`Node::on_byte`] for every
/// received byte, [`Node::tick`] every control period and drains
/// [`Node::next_frame`] into its UART.
pub struct Node {
    ctl: Controller,
    rx: Accumulator<MAX_FRAME>,
    tx: Deque<McuMsg, TX_QUEUE>,
    reset_cause: ResetCause,
    report_seq: u32,
    next_report_us: u64,
    faults_supported: bool,
    /// The first frame after boot has not gone out yet.
    first_frame: bool,
}

impl Node {
    /// A node that announces itself with a [`Boot`] message. `faults_supported`
    /// says whether this build acts on [`HostMsg::InjectFault`].
    pub fn new(
        cfg: Config,
        board: &str,
        reset_cause: ResetCause,
        reset_count: u32,
        faults_supported: bool,
    ) -> Self {
        let mut node = Self {
            ctl: Controller::new(cfg),
            rx: Accumulator::new(),
            tx: Deque::new(),
            reset_cause,
            report_seq: 0,
            next_report_us: 0,
            faults_supported,
            first_frame: true,
        };
        node.queue(McuMsg::Boot(Boot {
            protocol: PROTOCOL_VERSION,
            reset_cause,
            reset_count,
            board: board_name(board),
            command_timeout_ms: (cfg.command_timeout_us / 1000) as u32,
        }));
        node
    }

    pub fn controller(&self) -> &Controller {
        &self.ctl
    }

    fn queue(&mut self, msg: McuMsg) {
        // Full queue: drop this message; the next telemetry carries the state.
        let _ = self.tx.push_back(msg);
    }

    /// Feeds one received byte at `now_us`. Returns a fault the board must
    /// simulate, if one was requested and this build supports it.
    pub fn on_byte(&mut self, byte: u8, now_us: u64) -> Option<Fault> {
        let decoded = match self.rx.feed(byte) {
            Feed::Pending => return None,
            Feed::Frame(frame) => decode::<HostMsg>(frame),
            Feed::Error(e) => Err(e),
        };
        let msg = match decoded {
            Ok(msg) => msg,
            Err(e) => {
                let reason = e.reason();
                self.ctl.counters_mut().count(reason);
                self.queue(McuMsg::Rejected { reason, seq: None });
                return None;
            }
        };
        let c = self.ctl.counters_mut();
        c.frames_ok = c.frames_ok.saturating_add(1);
        let seq = match msg {
            HostMsg::Drive(d) => Some(d.seq),
            HostMsg::Arm { seq } | HostMsg::Release { seq } => Some(seq),
            _ => None,
        };
        match self.ctl.handle(msg, now_us) {
            Ok(Action::None) => None,
            Ok(Action::Pong { nonce }) => {
                self.queue(McuMsg::Pong(Pong {
                    nonce,
                    uptime_us: now_us,
                }));
                None
            }
            Ok(Action::Fault(f)) if self.faults_supported => Some(f),
            Ok(Action::Fault(_)) => {
                let reason = offramp_protocol::Reject::Unsupported;
                self.ctl.counters_mut().count(reason);
                self.queue(McuMsg::Rejected { reason, seq: None });
                None
            }
            Err(reason) => {
                self.queue(McuMsg::Rejected { reason, seq });
                None
            }
        }
    }

    /// Counts bytes the board's receive queue had to drop.
    pub fn count_rx_dropped(&mut self, n: u32) {
        let c = self.ctl.counters_mut();
        c.rx_dropped = c.rx_dropped.saturating_add(n);
    }

    /// One control tick. Queues telemetry when due and on every motor-state
    /// change, so a timeout stop is reported at once.
    pub fn tick(&mut self, now_us: u64) -> Output {
        let before = self.ctl.state();
        let out = self.ctl.tick(now_us);
        if now_us >= self.next_report_us || out.state != before {
            self.report(now_us);
        }
        out
    }

    /// Queues a telemetry report now.
    pub fn report(&mut self, now_us: u64) {
        let t = self
            .ctl
            .telemetry(now_us, self.report_seq, self.reset_cause);
        self.report_seq = self.report_seq.wrapping_add(1);
        self.next_report_us = now_us.saturating_add(self.ctl.config().telemetry_period_us);
        self.queue(McuMsg::Telemetry(t));
    }

    /// Encodes the next outgoing message into `buf`; returns the frame length.
    ///
    /// The first frame after boot starts with a delimiter: a reset can cut
    /// the frame the UART was sending, and the receiver would join those
    /// bytes to the [`Boot`] frame and drop both as corrupt. The extra
    /// `0x00` ends the cut frame first (a receiver skips an empty frame).
    pub fn next_frame(&mut self, buf: &mut [u8; MAX_FRAME]) -> Option<usize> {
        while let Some(msg) = self.tx.pop_front() {
            if core::mem::take(&mut self.first_frame) {
                if let Some((lead, rest)) = buf.split_first_mut() {
                    if let Ok(n) = encode(&msg, rest) {
                        *lead = 0;
                        return Some(n + 1);
                    }
                }
            }
            // Every message fits MAX_FRAME (tested in the protocol crate); a
            // failure here would be a contract bug, and skipping beats panicking.
            if let Ok(n) = encode(&msg, buf) {
                return Some(n);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offramp_protocol::{Drive, FrameError, MotorState, Reject, Setpoint};

    fn frames(node: &mut Node) -> heapless::Vec<McuMsg, 16> {
        let mut out = heapless::Vec::new();
        let mut buf = [0u8; MAX_FRAME];
        while let Some(n) = node.next_frame(&mut buf) {
            let mut acc: Accumulator = Accumulator::new();
            for &b in &buf[..n] {
                if let Feed::Frame(f) = acc.feed(b) {
                    let _ = out.push(decode::<McuMsg>(f).unwrap());
                }
            }
        }
        out
    }

    fn send(node: &mut Node, msg: &HostMsg, now: u64) -> Option<Fault> {
        let mut buf = [0u8; MAX_FRAME];
        let n = encode(msg, &mut buf).unwrap();
        let mut fault = None;
        for &b in &buf[..n] {
            fault = fault.or(node.on_byte(b, now));
        }
        fault
    }

    #[test]
    fn a_boot_after_a_frame_cut_by_the_reset_still_arrives() {
        // The host had half of a pong when the firmware reset.
        let mut host: Accumulator = Accumulator::new();
        let mut buf = [0u8; MAX_FRAME];
        let n = encode(
            &McuMsg::Pong(Pong {
                nonce: 7,
                uptime_us: 123_456,
            }),
            &mut buf,
        )
        .unwrap();
        for &b in &buf[..n / 2] {
            assert_eq!(host.feed(b), Feed::Pending);
        }
        let mut node = Node::new(Config::DEFAULT, "host", ResetCause::Watchdog, 1, false);
        let n = node.next_frame(&mut buf).unwrap();
        let mut got = heapless::Vec::<Result<McuMsg, FrameError>, 4>::new();
        for &b in &buf[..n] {
            if let Feed::Frame(f) = host.feed(b) {
                let _ = got.push(decode::<McuMsg>(f));
            }
        }
        // The cut pong is dropped as corrupt; the boot decodes.
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].is_err());
        assert!(matches!(
            got[1],
            Ok(McuMsg::Boot(Boot {
                reset_cause: ResetCause::Watchdog,
                reset_count: 1,
                ..
            }))
        ));
        // Later frames carry no extra delimiter.
        node.report(0);
        let n = node.next_frame(&mut buf).unwrap();
        assert_ne!(buf[0], 0);
        assert_eq!(buf[..n].iter().filter(|b| **b == 0).count(), 1);
    }

    #[test]
    fn boot_then_commands_then_telemetry() {
        let mut node = Node::new(Config::DEFAULT, "host", ResetCause::PowerOn, 0, false);
        let boot = frames(&mut node);
        assert!(matches!(
            boot[0],
            McuMsg::Boot(Boot {
                protocol: PROTOCOL_VERSION,
                ..
            })
        ));
        send(&mut node, &HostMsg::Arm { seq: 1 }, 0);
        send(
            &mut node,
            &HostMsg::Drive(Drive {
                seq: 2,
                valid_until_us: 100_000,
                setpoint: Setpoint::Wheels {
                    left: 0.1,
                    right: 0.1,
                },
                exit_index: 3,
            }),
            0,
        );
        send(&mut node, &HostMsg::Ping { nonce: 42 }, 10);
        let out = node.tick(1_000);
        assert_eq!(out.state, MotorState::Running);
        let msgs = frames(&mut node);
        assert!(msgs.contains(&McuMsg::Pong(Pong {
            nonce: 42,
            uptime_us: 10
        })));
        let tel = msgs.iter().find_map(|m| match m {
            McuMsg::Telemetry(t) => Some(*t),
            _ => None,
        });
        let tel = tel.expect("telemetry on first tick");
        assert_eq!(tel.counters.frames_ok, 3);
        assert_eq!(tel.last_seq, Some(2));
    }

    #[test]
    fn garbage_is_counted_and_link_recovers() {
        let mut node = Node::new(Config::DEFAULT, "host", ResetCause::PowerOn, 0, false);
        frames(&mut node);
        for b in [1u8, 2, 3, 4, 5, 6, 7, 0, 0x55, 0x55, 0] {
            node.on_byte(b, 0);
        }
        for _ in 0..500 {
            node.on_byte(0xAA, 0);
        }
        node.on_byte(0, 0);
        let msgs = frames(&mut node);
        let reasons: heapless::Vec<Reject, 8> = msgs
            .iter()
            .filter_map(|m| match m {
                McuMsg::Rejected { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect();
        assert_eq!(reasons.len(), 3, "{msgs:?}");
        assert_eq!(reasons[2], Reject::Overflow);
        send(&mut node, &HostMsg::Ping { nonce: 1 }, 5);
        assert!(frames(&mut node).contains(&McuMsg::Pong(Pong {
            nonce: 1,
            uptime_us: 5
        })));
        let c = node.controller().counters();
        assert_eq!(c.rejected(), 3);
        assert_eq!(c.overflow, 1);
    }

    #[test]
    fn fault_injection_only_where_supported() {
        let mut real = Node::new(Config::DEFAULT, "board", ResetCause::PowerOn, 0, false);
        assert_eq!(
            send(&mut real, &HostMsg::InjectFault(Fault::HangMainLoop), 0),
            None
        );
        assert_eq!(real.controller().counters().unsupported, 1);
        let mut qemu = Node::new(Config::DEFAULT, "qemu", ResetCause::PowerOn, 0, true);
        assert_eq!(
            send(&mut qemu, &HostMsg::InjectFault(Fault::HangMainLoop), 0),
            Some(Fault::HangMainLoop)
        );
    }
}
