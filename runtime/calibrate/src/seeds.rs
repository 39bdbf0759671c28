//! The simulator's seed ranges, each for one use, so that no published
//! figure comes from episodes a model or a choice has seen.
//!
//! Episodes are seeded and deterministic: a seed range used to train, to
//! calibrate, or to choose (an architecture, a DAgger round, a criterion, a
//! budget) flatters whatever it was used for. The ranges:
//!
//! | seeds | use |
//! |---|---|
//! | 0 – 99,999 | held-out evaluation (the demo's figures) |
//! | 100,000 – 199,999 | training demonstrations |
//! | 200,000 – 299,999 | calibration |
//! | 300,000 – 699,999 | DAgger rounds |
//! | 700,000 – 999,999 | validation: every choice |
//! | 1,000,000 and up | test: touched once, for a published figure |

/// A named seed range: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub name: &'static str,
    pub start: u64,
    pub end: u64,
    /// A model learns from these episodes: evaluating on them flatters it.
    pub seen_in_training: bool,
}

pub const RANGES: [Range; 6] = [
    Range {
        name: "held-out",
        start: 0,
        end: 100_000,
        seen_in_training: false,
    },
    Range {
        name: "training",
        start: 100_000,
        end: 200_000,
        seen_in_training: true,
    },
    Range {
        name: "calibration",
        start: 200_000,
        end: 300_000,
        seen_in_training: false,
    },
    Range {
        name: "DAgger",
        start: 300_000,
        end: 700_000,
        seen_in_training: true,
    },
    Range {
        name: "validation",
        start: 700_000,
        end: 1_000_000,
        seen_in_training: false,
    },
    Range {
        name: "test",
        start: 1_000_000,
        end: u64::MAX,
        seen_in_training: false,
    },
];

/// The range seed `s` lies in.
pub fn range_of(s: u64) -> &'static Range {
    RANGES
        .iter()
        .find(|r| (r.start..r.end).contains(&s))
        .unwrap_or(&RANGES[RANGES.len() - 1])
}

/// The ranges `episodes` episodes from `first` touch, named (`"test"`,
/// `"held-out + training"`).
pub fn describe(first: u64, episodes: u64) -> String {
    let last = first.saturating_add(episodes.max(1) - 1);
    RANGES
        .iter()
        .filter(|r| r.start <= last && first < r.end)
        .map(|r| r.name)
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Refuses evaluation episodes a model trained on (training or DAgger
/// seeds), naming the range.
pub fn check_evaluation(first: u64, episodes: u64) -> Result<(), String> {
    let last = first.saturating_add(episodes.max(1) - 1);
    match RANGES
        .iter()
        .find(|r| r.seen_in_training && r.start <= last && first < r.end)
    {
        Some(r) => Err(format!(
            "evaluation seeds {first}..={last} reach the {} range ({}..{}), which models learn from: \
             evaluate on held-out (0+), validation (700000+) or test (1000000+) seeds",
            r.name, r.start, r.end
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranges_tile_the_seeds_and_are_named() {
        for w in RANGES.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        assert_eq!(range_of(0).name, "held-out");
        assert_eq!(range_of(250_000).name, "calibration");
        assert_eq!(range_of(1_000_000).name, "test");
        assert_eq!(describe(1_000_000, 2000), "test");
        assert_eq!(describe(99_990, 20), "held-out + training");
    }

    #[test]
    fn evaluation_on_seeds_models_learned_from_is_refused() {
        assert!(check_evaluation(0, 200).is_ok());
        assert!(check_evaluation(700_000, 2000).is_ok());
        assert!(check_evaluation(1_000_000, 2000).is_ok());
        let e = check_evaluation(99_900, 200).unwrap_err();
        assert!(e.contains("reach the training range"), "{e}");
        let e = check_evaluation(300_000, 10).unwrap_err();
        assert!(e.contains("DAgger"), "{e}");
    }
}
