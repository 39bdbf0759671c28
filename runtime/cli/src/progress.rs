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

/// Closed-loop evaluation with a bar over the episodes.
#[cfg(feature = "sim")]
pub fn evaluate_with_progress(
    p: &mut offramp_runtime::pipeline::Pipeline,
    cfg: &offramp_sim::SimConfig,
    first_seed: u64,
    episodes: usize,
    policy: offramp_runtime::exit_chain::ExitPolicy,
    label: &str,
) -> anyhow::Result<offramp_calibrate::eval::EvalReport> {
    let bar = progress_bar(episodes as u64, label);
    let r = offramp_calibrate::eval::evaluate(p, cfg, first_seed, episodes, policy, &mut || {
        bar.inc(1)
    })?;
    bar.finish_and_clear();
    Ok(r)
}
