//! offramp motor-controller firmware for an STM32F411 (WeAct "Black Pill")
//! driving a dual H-bridge (e.g. DRV8833/TB6612): PWM + direction per wheel.
//!
//! | signal        | pin  | peripheral        |
//! |---------------|------|-------------------|
//! | link TX / RX  | PA9 / PA10 | USART1, 115200 8N1 |
//! | left PWM      | PA6  | TIM3 CH1, 20 kHz  |
//! | right PWM     | PA7  | TIM3 CH2, 20 kHz  |
//! | left / right direction | PB0 / PB1 | GPIO |
//!
//! The logic is the same `offramp-control` crate the QEMU board runs and the
//! host tests exercise; this crate only wires it to embassy:
//!
//! * `link_rx` task: UART bytes → [`Node::on_byte`];
//! * `control` task: 1 kHz ticker → [`Node::tick`] → PWM and direction pins,
//!   drains telemetry to the UART, and pets the independent watchdog, which
//!   therefore resets the chip when control ticks stop (a hung task starves
//!   the cooperative executor).
#![no_std]
#![no_main]

use core::cell::RefCell;
use defmt_rtt as _;
use embassy_executor::Spawner;
use embassy_stm32::gpio::{Level, Output, OutputType, Speed};
use embassy_stm32::time::khz;
use embassy_stm32::timer::low_level::CountingMode;
use embassy_stm32::timer::simple_pwm::{PwmPin, SimplePwm};
use embassy_stm32::usart::{self, BufferedUart, BufferedUartRx, BufferedUartTx};
use embassy_stm32::wdg::IndependentWatchdog;
use embassy_stm32::{bind_interrupts, peripherals};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_time::{Duration, Instant, Ticker};
use offramp_control::reset::ram;
use offramp_control::{Config, Node};
use offramp_protocol::{ResetCause, MAX_FRAME};
use static_cell::StaticCell;

bind_interrupts!(struct Irqs {
    USART1 => usart::BufferedInterruptHandler<peripherals::USART1>;
});

/// Watchdog timeout: ten missed control ticks would already be an anomaly;
/// 50 ms bounds how long a hung firmware can leave the motors running.
const WATCHDOG_US: u32 = 50_000;

type Shared = Mutex<CriticalSectionRawMutex, RefCell<Option<Node>>>;
static NODE: Shared = Mutex::new(RefCell::new(None));

fn with_node<R>(f: impl FnOnce(&mut Node) -> R) -> Option<R> {
    NODE.lock(|n| n.borrow_mut().as_mut().map(f))
}

/// Reset cause from the RCC flags (then cleared), refined by the RAM record.
fn reset_cause() -> (ResetCause, u32) {
    use embassy_stm32::pac::RCC;
    let csr = RCC.csr().read();
    let chip = if csr.wdgrstf() || csr.wwdgrstf() {
        ResetCause::Watchdog
    } else if csr.borrstf() {
        ResetCause::BrownOut
    } else if csr.porrstf() {
        ResetCause::PowerOn
    } else if csr.sftrstf() {
        ResetCause::Software
    } else if csr.padrstf() {
        ResetCause::Pin
    } else {
        ResetCause::Unknown
    };
    RCC.csr().modify(|w| w.set_rmvf(true));
    ram::take_cause(Some(chip))
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let (cause, count) = reset_cause();
    let p = embassy_stm32::init(Default::default());

    // Motors off before anything else can go wrong.
    let mut pwm = SimplePwm::new(
        p.TIM3,
        Some(PwmPin::new(p.PA6, OutputType::PushPull)),
        Some(PwmPin::new(p.PA7, OutputType::PushPull)),
        None,
        None,
        khz(20),
        CountingMode::EdgeAlignedUp,
    );
    pwm.ch1().set_duty_cycle_fully_off();
    pwm.ch2().set_duty_cycle_fully_off();
    pwm.ch1().enable();
    pwm.ch2().enable();
    let dir_left = Output::new(p.PB0, Level::Low, Speed::Low);
    let dir_right = Output::new(p.PB1, Level::Low, Speed::Low);

    let mut wdg = IndependentWatchdog::new(p.IWDG, WATCHDOG_US);
    wdg.unleash();

    static TX_BUF: StaticCell<[u8; 512]> = StaticCell::new();
    static RX_BUF: StaticCell<[u8; 512]> = StaticCell::new();
    let (tx_buf, rx_buf) = (TX_BUF.init([0; 512]), RX_BUF.init([0; 512]));
    let mut cfg = usart::Config::default();
    cfg.baudrate = 115_200;
    let uart = match BufferedUart::new(p.USART1, p.PA10, p.PA9, tx_buf, rx_buf, Irqs, cfg) {
        Ok(u) => u,
        Err(_) => fail("USART1 configuration rejected"),
    };
    let (tx, rx) = uart.split();

    NODE.lock(|n| {
        n.replace(Some(Node::new(
            Config::DEFAULT,
            "stm32f411",
            cause,
            count,
            cfg!(feature = "fault-injection"),
        )))
    });
    defmt::info!(
        "offramp-fw-stm32f411 booted: reset cause {}, resets {}",
        cause,
        count
    );

    spawner.spawn(link_rx(rx).unwrap_or_else(|_| fail("spawn link_rx")));
    control(pwm, dir_left, dir_right, wdg, tx).await
}

/// The longest a control tick waits on the UART to transmit: well inside the
/// 1 ms tick, so a full transmit buffer delays no tick.
const TX_BUDGET: Duration = Duration::from_micros(300);

/// The control loop. Runs in `main` so that it owns the watchdog.
async fn control(
    mut pwm: SimplePwm<'static, peripherals::TIM3>,
    mut dir_left: Output<'static>,
    mut dir_right: Output<'static>,
    mut wdg: IndependentWatchdog<'static, peripherals::IWDG>,
    mut tx: BufferedUartTx<'static>,
) -> ! {
    let mut ticker = Ticker::every(Duration::from_millis(1));
    let mut frame = [0u8; MAX_FRAME];
    loop {
        ticker.next().await;
        let now = Instant::now().as_micros();
        if let Some(out) = with_node(|n| n.tick(now)) {
            dir_left.set_level(Level::from(out.duty_left < 0));
            dir_right.set_level(Level::from(out.duty_right < 0));
            pwm.ch1()
                .set_duty_cycle_fraction(out.duty_left.unsigned_abs() as u32, 10_000);
            pwm.ch2()
                .set_duty_cycle_fraction(out.duty_right.unsigned_abs() as u32, 10_000);
        }
        // A full or stuck UART must not stall control: each tick gives the
        // transmit at most TX_BUDGET, then moves on (a frame cut short is
        // dropped by the host's CRC; the rest wait for the next tick). A
        // flood of garbage in makes rejection reports out faster than the
        // line drains them, and an unbounded write here would stop the
        // control ticks, and with them the command timeout.
        let budget = embassy_time::with_timeout(TX_BUDGET, async {
            while let Some(Some(n)) = with_node(|node| node.next_frame(&mut frame)) {
                if embedded_io_async::Write::write_all(&mut tx, &frame[..n])
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        let _ = budget.await;
        wdg.pet();
    }
}

#[embassy_executor::task]
async fn link_rx(mut rx: BufferedUartRx<'static>) {
    let mut buf = [0u8; 64];
    loop {
        let n = match embedded_io_async::Read::read(&mut rx, &mut buf).await {
            Ok(n) => n,
            Err(e) => {
                // Framing/noise/overrun: the bytes are gone; COBS resyncs.
                defmt::warn!("USART1 receive error: {}", e);
                continue;
            }
        };
        let now = Instant::now().as_micros();
        for &b in &buf[..n] {
            if let Some(Some(fault)) = with_node(|node| node.on_byte(b, now)) {
                offramp_control::fault::simulate(fault);
            }
        }
    }
}

fn fail(what: &str) -> ! {
    defmt::error!("fatal: {=str}", what);
    ram::mark_before_reset(ResetCause::Software);
    cortex_m::peripheral::SCB::sys_reset()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    // Motors first: zero both compare registers, whatever state the driver is in.
    let tim = embassy_stm32::pac::TIM3;
    tim.ccr(0).write(|w| w.set_ccr(0));
    tim.ccr(1).write(|w| w.set_ccr(0));
    if let Some(loc) = info.location() {
        defmt::error!("panic at {=str}:{=u32}", loc.file(), loc.line());
    }
    ram::mark_before_reset(ResetCause::Panic);
    cortex_m::peripheral::SCB::sys_reset()
}
