//! Progress bars for commands that run longer than a few seconds.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` items labelled `what`.
pub fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} [{{bar:40}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Closed-loop evaluation with a bar over the episodes, spread over
/// `pipelines` (one thread each; [`offramp_calibrate::eval::evaluate_on`]).
#[cfg(feature = "sim")]
pub fn evaluate_with_progress(
    pipelines: &mut [offramp_runtime::pipeline::Pipeline],
    cfg: &offramp_sim::SimConfig,
    first_seed: u64,
    episodes: usize,
    policy: offramp_runtime::exit_chain::ExitPolicy,
    label: &str,
) -> anyhow::Result<offramp_calibrate::eval::EvalReport> {
    let bar = progress_bar(episodes as u64, label);
    let r = offramp_calibrate::eval::evaluate_on(
        pipelines,
        cfg,
        first_seed,
        episodes,
        policy,
        &|| bar.inc(1),
    )?;
    bar.finish_and_clear();
    Ok(r)
}

/// `jobs` pipelines of `set` for closed-loop episodes in parallel, at most
/// `episodes` (default: one per core the machine offers on the CPU
/// backend; one on a GPU backend, whose engines share one GPU).
#[cfg(feature = "sim")]
pub fn pipelines(
    set: &offramp_engines::EngineSet,
    backend: offramp_engines::BackendKind,
    frame: (usize, usize),
    jobs: Option<usize>,
    episodes: usize,
) -> anyhow::Result<Vec<offramp_runtime::pipeline::Pipeline>> {
    let jobs = jobs.unwrap_or_else(|| match backend {
        offramp_engines::BackendKind::Cpu | offramp_engines::BackendKind::Onnxruntime => {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
        offramp_engines::BackendKind::Tensorrt => 1,
    });
    (0..jobs.min(episodes).max(1))
        .map(|_| {
            Ok(offramp_runtime::pipeline::Pipeline::open(
                set, backend, frame,
            )?)
        })
        .collect()
}

/// A bar for a phase of a domain crate's run (`offramp_bench::Bars`,
/// `offramp_calibrate::sweep::Bars`): its tick, which clears the bar when
/// dropped.
pub fn bars(len: u64, what: &str) -> Box<dyn Fn() + Sync> {
    struct Clear(ProgressBar);
    impl Drop for Clear {
        fn drop(&mut self) {
            self.0.finish_and_clear();
        }
    }
    let bar = Clear(progress_bar(len, what));
    Box::new(move || bar.0.inc(1))
}
