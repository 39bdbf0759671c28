//! Progress bars for commands that run longer than a few seconds.

use indicatif::{ProgressBar, ProgressStyle};
use offramp_calibrate::eval::{evaluate, EvalReport};
use offramp_runtime::exit_chain::ExitPolicy;
use offramp_runtime::pipeline::Pipeline;
use offramp_sim::SimConfig;

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
pub fn evaluate_with_progress(
    p: &mut Pipeline,
    cfg: &SimConfig,
    first_seed: u64,
    episodes: usize,
    policy: ExitPolicy,
    label: &str,
) -> anyhow::Result<EvalReport> {
    let bar = progress_bar(episodes as u64, label);
    let r = evaluate(p, cfg, first_seed, episodes, policy, &mut || bar.inc(1))?;
    bar.finish_and_clear();
    Ok(r)
}
