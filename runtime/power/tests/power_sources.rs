//! Power sources over fixture directories that reproduce real device layouts
//! (Orin Nano, AGX Orin with two INA3221 chips, Xavier's iio driver, a
//! laptop's RAPL zones) and real tegrastats lines, including broken files.

use offramp_power::hwmon::Ina3221;
use offramp_power::iio::Ina3221Iio;
use offramp_power::rapl::Rapl;
use offramp_power::sampler::Sampler;
use offramp_power::tegrastats::{parse_line, Tegrastats};
use offramp_power::{self as power, PowerChoice, PowerError, PowerSource};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/power")
        .join(name)
}

fn read_all(s: &mut dyn PowerSource) -> (Vec<String>, Vec<f64>, f64) {
    let mut mw = vec![0.0; s.rails().len()];
    let total = s.read(&mut mw).unwrap().unwrap();
    (s.rails().to_vec(), mw, total)
}

/// Copies a fixture tree into a temp dir we may break.
fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn orin_nano_hwmon() {
    let mut s = Ina3221::open(&fixture("orin-nano")).unwrap();
    let (rails, mw, total) = read_all(&mut s);
    // Channel 7 ("sum of shunt voltages") is skipped.
    assert_eq!(rails, ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]);
    assert_eq!(
        mw,
        [
            5072.0 * 1128.0 / 1e3,
            5064.0 * 168.0 / 1e3,
            5068.0 * 320.0 / 1e3
        ]
    );
    // VDD_IN is the board input: it is the total, not the sum.
    assert_eq!(total, mw[0]);
    assert!(s.describe().contains("hwmon1"), "{}", s.describe());
}

#[test]
fn agx_orin_two_chips_skip_nc() {
    let mut s = Ina3221::open(&fixture("agx-orin")).unwrap();
    let (rails, mw, total) = read_all(&mut s);
    assert_eq!(
        rails,
        [
            "VDD_GPU_SOC",
            "VDD_CPU_CV",
            "VIN_SYS_5V0",
            "VDDQ_VDD2_1V8AO"
        ]
    );
    assert_eq!(mw[3], 4992.0 * 72.0 / 1e3);
    // No input rail: the module total is the sum.
    assert!((total - mw.iter().sum::<f64>()).abs() < 1e-9);
}

#[test]
fn xavier_iio() {
    let mut s = Ina3221Iio::open(&fixture("xavier-iio")).unwrap();
    let (rails, mw, total) = read_all(&mut s);
    assert_eq!(rails, ["GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"]);
    assert_eq!(mw, [1155.0, 385.0, 1540.0, 0.0, 230.0, 1612.0]);
    assert_eq!(total, 4922.0);
    // The iio layout is not the hwmon one, and vice versa.
    assert!(matches!(
        Ina3221::open(&fixture("xavier-iio")),
        Err(PowerError::NotFound {
            kind: "ina3221",
            ..
        })
    ));
    assert!(Ina3221Iio::open(&fixture("orin-nano")).is_err());
}

#[test]
fn rapl_counts_energy_across_a_wrap() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture("rapl"), dir.path());
    let mut s = Rapl::open(dir.path()).unwrap();
    // Top-level zones only: core and uncore are inside package-0.
    assert_eq!(s.rails(), ["package-0", "psys"]);
    let mut mw = [0.0; 2];
    assert_eq!(s.read(&mut mw).unwrap(), None, "a counter's first read");
    let zone = dir.path().join("sys/class/powercap/intel-rapl:0/energy_uj");
    let psys = dir.path().join("sys/class/powercap/intel-rapl:1/energy_uj");
    std::thread::sleep(Duration::from_millis(100));
    // package-0 wraps (range 262143328850): +328850 + 1000000 µJ.
    std::fs::write(&zone, "1000000\n").unwrap();
    std::fs::write(&psys, "92210004\n").unwrap();
    let t0 = Instant::now();
    let total = s.read(&mut mw).unwrap().unwrap();
    let dt_max = 0.100 + t0.elapsed().as_secs_f64() + 0.5;
    // 1.32885 J over ≥ 0.1 s: ≤ 13.3 W and more than over the longest dt.
    assert!(mw[0] <= 1_328_850.0 / 0.1 / 1e3 + 1e-6, "{mw:?}");
    assert!(mw[0] >= 1_328_850.0 / dt_max / 1e3, "{mw:?}");
    assert!((total - mw[0] - mw[1]).abs() < 1e-9);
}

#[test]
fn rapl_unreadable_counter_is_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture("rapl"), dir.path());
    let zone = dir.path().join("sys/class/powercap/intel-rapl:1/energy_uj");
    std::fs::remove_file(&zone).unwrap();
    let e = Rapl::open(dir.path()).err().unwrap().to_string();
    assert!(e.contains("intel-rapl:1/energy_uj"), "{e}");
}

#[test]
fn tegrastats_lines_from_design_md() {
    let jp6 = "11-30-2025 13:26:01 RAM 2461/7620MB (lfb 3x2MB) SWAP 1243/3810MB (cached 5MB) CPU [19%@729,off] EMC_FREQ 4%@2133 GR3D_FREQ 0%@[305] VDD_IN 5704mW/5704mW VDD_CPU_GPU_CV 831mW/831mW VDD_SOC 1624mW/1624mW";
    let r = parse_line(jp6).unwrap();
    let names: Vec<&str> = r.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(names, ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]);
    assert_eq!(r[0].1, 5704.0);
    let old = parse_line("RAM 1500/3964MB CPU [10%@102] GPU 1155/1155 CPU 385/385").unwrap();
    assert_eq!(
        old,
        [("GPU".to_string(), 1155.0), ("CPU".to_string(), 385.0)]
    );
    // Memory figures (with a unit) and mixed units are not rails.
    assert!(matches!(
        parse_line("RAM 2461/7620MB SWAP 1243/3810MB IRAM 0/252kB"),
        Err(PowerError::TegrastatsLine(_))
    ));
    assert!(parse_line("VDD_IN 5704mW/5704").is_err());
}

#[test]
fn tegrastats_log_with_a_truncated_line_keeps_going() {
    let f = std::fs::File::open(fixture("tegrastats-jp6.log")).unwrap();
    let mut s = Tegrastats::from_reader(std::io::BufReader::new(f), "log".into()).unwrap();
    assert_eq!(s.rails(), ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]);
    let mut mw = [0.0; 3];
    assert_eq!(s.read(&mut mw).unwrap(), Some(5704.0));
    assert_eq!(s.read(&mut mw).unwrap(), Some(7969.0));
    assert_eq!(mw, [7969.0, 2610.0, 1982.0]);
    // Line 3 was cut off: an error naming the line, then the next line reads.
    let e = s.read(&mut mw).unwrap_err().to_string();
    assert!(e.contains("13:26:03"), "{e}");
    assert_eq!(s.read(&mut mw).unwrap(), Some(5745.0));
    let e = s.read(&mut mw).unwrap_err().to_string();
    assert!(e.contains("ended"), "{e}");

    let f = std::fs::File::open(fixture("tegrastats-jp4.log")).unwrap();
    let mut s = Tegrastats::from_reader(std::io::BufReader::new(f), "log".into()).unwrap();
    let mut mw = [0.0; 6];
    // No input rail in the old form: the total is the sum.
    assert_eq!(s.read(&mut mw).unwrap(), Some(4922.0));
}

#[test]
fn auto_picks_the_first_source_that_exists() {
    let p = Duration::from_millis(10);
    let (s, _) = power::open(PowerChoice::Auto, &fixture("orin-nano"), p).unwrap();
    assert!(s.unwrap().describe().starts_with("ina3221 hwmon"));
    let (s, _) = power::open(PowerChoice::Auto, &fixture("xavier-iio"), p).unwrap();
    assert!(s.unwrap().describe().starts_with("ina3221 iio"));
    let (s, _) = power::open(PowerChoice::Auto, &fixture("rapl"), p).unwrap();
    assert!(s.unwrap().describe().starts_with("rapl"));
    // Nothing there: no source, and the notes say what was tried.
    let empty = tempfile::tempdir().unwrap();
    let (s, notes) = power::open(PowerChoice::Auto, empty.path(), p).unwrap();
    assert!(s.is_none());
    let all = notes.join("\n");
    for kind in [
        "ina3221",
        "iio",
        "tegrastats",
        "rapl",
        "energy not measured",
    ] {
        assert!(all.contains(kind), "{all}");
    }
    // An explicit choice that is absent is an error, not a silent "none".
    let e = power::open(PowerChoice::Ina3221, empty.path(), p)
        .err()
        .unwrap();
    assert!(e.to_string().contains("ina3221/*/hwmon/hwmon*"), "{e}");
}

#[test]
fn empty_hwmon_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir
        .path()
        .join("sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon0");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("in1_label"), "NC\n").unwrap();
    let e = Ina3221::open(dir.path()).err().unwrap().to_string();
    assert!(e.contains("no labelled channels"), "{e}");
}

#[test]
fn sampler_survives_malformed_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture("orin-nano"), dir.path());
    let hw = dir
        .path()
        .join("sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1");
    let src = Box::new(Ina3221::open(dir.path()).unwrap());
    let epoch = Instant::now();
    let sampler = Sampler::start(src, epoch, Duration::from_millis(2)).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    std::fs::write(hw.join("curr2_input"), "garbage\n").unwrap();
    std::thread::sleep(Duration::from_millis(60));
    std::fs::write(hw.join("curr2_input"), "168\n").unwrap();
    std::fs::remove_file(hw.join("in3_input")).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    std::fs::write(hw.join("in3_input"), "5068\n").unwrap();
    // A different reading after recovery proves sampling resumed.
    std::fs::write(hw.join("curr1_input"), "2000\n").unwrap();
    std::thread::sleep(Duration::from_millis(60));
    let log = sampler.finish();
    assert!(log.read_errors >= 2, "{} errors", log.read_errors);
    let last = log.last_error.clone().unwrap();
    assert!(last.contains("in3_input"), "{last}");
    assert!(
        log.samples
            .iter()
            .any(|s| s.total_mw == 5072.0 * 1128.0 / 1e3),
        "samples before the damage"
    );
    assert!(
        log.samples
            .iter()
            .any(|s| s.total_mw == 5072.0 * 2000.0 / 1e3),
        "samples after recovery"
    );
    // Timestamps increase.
    assert!(log.samples.windows(2).all(|w| w[0].t < w[1].t));
}
