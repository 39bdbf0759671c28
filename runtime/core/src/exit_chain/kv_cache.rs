//! The key/value cache of a temporal attention head (`[head.cache]`):
//! allocated once from the manifest, written in place, never resized or
//! compacted, so a robot can run for hours at a constant cost a frame.
//!
//! Slots `0..sinks` keep the episode's first entries (attention sinks,
//! StreamingLLM); `sinks..sinks + saddles` keep the entries that drew the
//! most attention (Inf-MLLM's attention saddles); the last `recent` slots
//! are a ring of the newest. When the ring is full, its oldest entry
//! leaves it: it takes a free saddle slot, or the place of the saddle with
//! the lowest score if its own is higher, else it is dropped. An entry's
//! score is the attention the committed frames pay it, decayed by
//! `saddle_decay` a frame (an exponentially weighted retrieval window of
//! about `1 / (1 - decay)` frames); an entry starts at 0 and gathers its
//! score while in the ring.
//!
//! Positions are ranks by recency among the cached entries (1 = the newest
//! cached, up to `slots`; the current frame is 0), so nothing grows with
//! the frame count: the commit counter is a u64, and only its order is
//! used. The mask is 0 for a held slot (minus `recency_bias × rank`) and
//! [`MASKED`] for an empty one.
//!
//! Early exit (DeeR's commit rule): every candidate exit's head reads the
//! cache as it is and its entry is staged ([`KvCache::stage`]); only the
//! exit the frame commits writes its entry and its attention
//! ([`KvCache::commit`]), so entries from different exits sit side by
//! side.

use offramp_engines::cache::{CacheLayout, MASKED};

/// The runtime's cache of one chain. Every buffer is allocated in
/// [`KvCache::new`].
pub struct KvCache {
    layout: CacheLayout,
    /// Per layer: keys `[rows, slots, key_dim]`, values `[rows, slots,
    /// value_dim]`, in the head's input layout.
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    mask: Vec<f32>,
    positions: Vec<f32>,
    held: Vec<bool>,
    /// The commit count at which each slot's entry was made.
    made: Vec<u64>,
    score: Vec<f32>,
    /// Held slots, oldest entry first (`order[..len]`).
    order: Vec<usize>,
    len: usize,
    /// Entries committed since the last reset.
    commits: u64,
    /// Next ring slot (0..recent).
    ring: usize,
    /// Per exit: the staged entry (every layer's key, then value) and the
    /// attention its frame paid each slot.
    staged: Vec<Vec<f32>>,
    staged_attention: Vec<Vec<f32>>,
    /// Per exit: whether its staged entry and attention are finite.
    staged_ok: Vec<bool>,
    /// Entries dropped by the last commit (0 or 1) and since the start.
    evicted_last: u32,
    evicted_total: u64,
}

impl KvCache {
    pub fn new(layout: CacheLayout, exits: usize) -> Self {
        let s = layout.slots;
        let keys = layout
            .layers
            .iter()
            .map(|l| vec![0.0; l.rows * s * l.key_dim])
            .collect();
        let values = layout
            .layers
            .iter()
            .map(|l| vec![0.0; l.rows * s * l.value_dim])
            .collect();
        let entry = layout.entry_len();
        let mut c = Self {
            keys,
            values,
            mask: vec![MASKED; s],
            positions: vec![0.0; s],
            held: vec![false; s],
            made: vec![0; s],
            score: vec![0.0; s],
            order: vec![0; s],
            len: 0,
            commits: 0,
            ring: 0,
            staged: vec![vec![0.0; entry]; exits],
            staged_attention: vec![vec![0.0; s]; exits],
            staged_ok: vec![false; exits],
            evicted_last: 0,
            evicted_total: 0,
            layout,
        };
        c.reset();
        c
    }

    pub fn layout(&self) -> &CacheLayout {
        &self.layout
    }

    /// Empties the cache (a new episode, or a frame that stopped).
    pub fn reset(&mut self) {
        for b in self.keys.iter_mut().chain(self.values.iter_mut()) {
            b.iter_mut().for_each(|x| *x = 0.0);
        }
        self.held.iter_mut().for_each(|h| *h = false);
        self.score.iter_mut().for_each(|x| *x = 0.0);
        self.len = 0;
        self.commits = 0;
        self.ring = 0;
        self.evicted_last = 0;
        self.refresh();
    }

    /// Head input `j`'s buffer if the cache feeds it.
    pub fn input(&self, j: usize) -> Option<&[f32]> {
        if j == self.layout.mask {
            return Some(&self.mask);
        }
        if Some(j) == self.layout.positions {
            return Some(&self.positions);
        }
        self.layout.layers.iter().enumerate().find_map(|(l, x)| {
            if x.past_key == j {
                Some(&self.keys[l][..])
            } else if x.past_value == j {
                Some(&self.values[l][..])
            } else {
                None
            }
        })
    }

    /// Keeps exit `exit`'s entry and attention from the head's `outputs`
    /// (its last run); returns whether they are finite.
    pub fn stage(&mut self, exit: usize, outputs: &[Vec<f32>]) -> bool {
        let entry = &mut self.staged[exit];
        let mut at = 0;
        for l in &self.layout.layers {
            for (k, n) in [
                (l.present_key, l.rows * l.key_dim),
                (l.present_value, l.rows * l.value_dim),
            ] {
                entry[at..at + n].copy_from_slice(&outputs[k][..n]);
                at += n;
            }
        }
        let att = &outputs[self.layout.attention];
        let stride = self.layout.attention_stride;
        let rows = (att.len() / stride).max(1);
        let mean = &mut self.staged_attention[exit];
        mean.iter_mut().for_each(|x| *x = 0.0);
        for row in att.chunks_exact(stride) {
            for (m, a) in mean.iter_mut().zip(row) {
                *m += a / rows as f32;
            }
        }
        let ok = entry.iter().chain(mean.iter()).all(|x| x.is_finite());
        self.staged_ok[exit] = ok;
        ok
    }

    /// Whether exit `exit`'s staged entry is finite (it may be committed).
    pub fn staged_ok(&self, exit: usize) -> bool {
        self.staged_ok[exit]
    }

    /// Writes exit `exit`'s staged entry into the cache: the committed
    /// frame's attention updates the scores, the entry takes a sink slot
    /// (the episode's first entries) or the ring's next slot, whose old
    /// entry competes for a saddle slot.
    pub fn commit(&mut self, exit: usize) {
        let decay = self.layout.decay;
        for s in 0..self.layout.slots {
            if self.held[s] {
                self.score[s] = decay * self.score[s] + self.staged_attention[exit][s];
            }
        }
        self.evicted_last = 0;
        let (sinks, saddles) = (self.layout.sinks, self.layout.saddles);
        let slot = if self.commits < sinks as u64 {
            self.commits as usize
        } else {
            let slot = sinks + saddles + self.ring;
            self.ring = (self.ring + 1) % self.layout.recent;
            if self.held[slot] {
                self.leave_ring(slot);
            }
            slot
        };
        self.write(slot, exit);
        self.commits += 1;
        self.refresh();
    }

    /// The ring's oldest entry, in `slot`, leaves it for a saddle slot or
    /// is dropped; either way one entry leaves the cache unless a saddle
    /// slot was free.
    fn leave_ring(&mut self, slot: usize) {
        let saddles = self.layout.sinks..self.layout.sinks + self.layout.saddles;
        let free = saddles.clone().find(|&s| !self.held[s]);
        let target = match free {
            Some(s) => Some(s),
            None => {
                // The weakest saddle (the oldest among equals).
                // Scores are finite (a non-finite entry is never
                // committed); -0.0 and 0.0 tie.
                let weakest = saddles.clone().min_by(|&a, &b| {
                    self.score[a]
                        .partial_cmp(&self.score[b])
                        .unwrap_or(std::cmp::Ordering::Equal)
                        .then(self.made[a].cmp(&self.made[b]))
                });
                self.evicted_last = 1;
                match weakest {
                    Some(w) if self.score[slot] > self.score[w] => {
                        self.forget(w);
                        Some(w)
                    }
                    _ => None,
                }
            }
        };
        match target {
            Some(t) => self.move_entry(slot, t),
            None => self.forget(slot),
        }
        self.evicted_total += self.evicted_last as u64;
    }

    fn forget(&mut self, s: usize) {
        if self.held[s] {
            self.held[s] = false;
            if let Some(i) = self.order[..self.len].iter().position(|&x| x == s) {
                self.order.copy_within(i + 1..self.len, i);
                self.len -= 1;
            }
        }
    }

    fn move_entry(&mut self, from: usize, to: usize) {
        let slots = self.layout.slots;
        for (l, x) in self.layout.layers.iter().enumerate() {
            for (buf, dim) in [
                (&mut self.keys[l], x.key_dim),
                (&mut self.values[l], x.value_dim),
            ] {
                for r in 0..x.rows {
                    let base = r * slots * dim;
                    buf.copy_within(base + from * dim..base + (from + 1) * dim, base + to * dim);
                }
            }
        }
        self.held[to] = true;
        self.made[to] = self.made[from];
        self.score[to] = self.score[from];
        if let Some(i) = self.order[..self.len].iter().position(|&x| x == from) {
            self.order[i] = to;
        }
        self.held[from] = false;
    }

    fn write(&mut self, slot: usize, exit: usize) {
        self.forget(slot);
        let slots = self.layout.slots;
        let entry = &self.staged[exit];
        let mut at = 0;
        for (l, x) in self.layout.layers.iter().enumerate() {
            for (buf, dim) in [
                (&mut self.keys[l], x.key_dim),
                (&mut self.values[l], x.value_dim),
            ] {
                for r in 0..x.rows {
                    let base = r * slots * dim + slot * dim;
                    buf[base..base + dim].copy_from_slice(&entry[at..at + dim]);
                    at += dim;
                }
            }
        }
        self.held[slot] = true;
        self.made[slot] = self.commits;
        self.score[slot] = 0.0;
        // The newest entry: last in age order.
        self.order[self.len] = slot;
        self.len += 1;
    }

    /// Positions and mask from the age order.
    fn refresh(&mut self) {
        let bias = self.layout.recency_bias;
        self.mask.iter_mut().for_each(|m| *m = MASKED);
        self.positions.iter_mut().for_each(|p| *p = 0.0);
        for (i, &s) in self.order[..self.len].iter().enumerate() {
            let rank = (self.len - i) as f32;
            self.positions[s] = rank;
            self.mask[s] = -bias * rank;
        }
    }

    /// Entries held.
    pub fn occupancy(&self) -> usize {
        self.len
    }

    /// Entries the last commit dropped (0 or 1).
    pub fn evicted_last(&self) -> u32 {
        self.evicted_last
    }

    /// Entries dropped since the cache was made.
    pub fn evicted_total(&self) -> u64 {
        self.evicted_total
    }

    /// Entries committed since the last reset.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// The commit count each held slot's entry was made at (`None`: empty),
    /// slot by slot.
    pub fn made(&self) -> impl Iterator<Item = Option<u64>> + '_ {
        self.held
            .iter()
            .zip(&self.made)
            .map(|(h, m)| h.then_some(*m))
    }

    /// The buffers' addresses (keys then values per layer, mask,
    /// positions): fixed for the cache's life.
    pub fn addresses(&self) -> impl Iterator<Item = usize> + '_ {
        self.keys
            .iter()
            .chain(&self.values)
            .map(|b| b.as_ptr() as usize)
            .chain([
                self.mask.as_ptr() as usize,
                self.positions.as_ptr() as usize,
            ])
    }

    #[cfg(test)]
    pub(super) fn set_commits(&mut self, n: u64) {
        self.commits = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offramp_engines::cache::CacheLayer;

    /// One layer, one row, key and value of one element each: an entry is
    /// (k, v), so the test reads which frame sits where.
    fn cache(sinks: usize, saddles: usize, recent: usize, exits: usize) -> KvCache {
        let layout = CacheLayout {
            slots: sinks + saddles + recent,
            layers: vec![CacheLayer {
                past_key: 1,
                past_value: 2,
                present_key: 1,
                present_value: 2,
                rows: 1,
                key_dim: 1,
                value_dim: 1,
            }],
            mask: 3,
            positions: Some(4),
            attention: 3,
            attention_stride: sinks + saddles + recent + 1,
            sinks,
            saddles,
            recent,
            decay: 0.5,
            recency_bias: 0.0,
        };
        KvCache::new(layout, exits)
    }

    /// Head outputs for frame `f`: action, key f, value -f, attention.
    fn outputs(c: &KvCache, f: f32, attention: &[f32]) -> Vec<Vec<f32>> {
        let mut att = vec![0.0; c.layout.attention_stride];
        att[..attention.len()].copy_from_slice(attention);
        vec![vec![0.0], vec![f], vec![-f], att]
    }

    fn step(c: &mut KvCache, f: f32, attention: &[f32]) {
        let o = outputs(c, f, attention);
        assert!(c.stage(0, &o));
        c.commit(0);
    }

    fn keys(c: &KvCache) -> Vec<Option<f32>> {
        (0..c.layout.slots)
            .map(|s| c.held[s].then_some(c.keys[0][s]))
            .collect()
    }

    #[test]
    fn sinks_fill_first_then_the_ring_turns_and_drops_without_saddles() {
        let mut c = cache(2, 0, 3, 1);
        for f in 0..5 {
            step(&mut c, f as f32, &[]);
        }
        assert_eq!(
            keys(&c),
            [Some(0.0), Some(1.0), Some(2.0), Some(3.0), Some(4.0)]
        );
        assert_eq!((c.occupancy(), c.evicted_total()), (5, 0));
        step(&mut c, 5.0, &[]);
        // Frame 2, the ring's oldest, is gone; the sinks stay.
        assert_eq!(
            keys(&c),
            [Some(0.0), Some(1.0), Some(5.0), Some(3.0), Some(4.0)]
        );
        assert_eq!((c.evicted_last(), c.evicted_total()), (1, 1));
        // Values sit beside their keys.
        assert_eq!(c.values[0][2], -5.0);
        for f in 6..1000 {
            step(&mut c, f as f32, &[]);
        }
        assert_eq!(keys(&c)[..2], [Some(0.0), Some(1.0)]);
        let mut ring: Vec<f32> = keys(&c)[2..].iter().map(|k| k.unwrap()).collect();
        ring.sort_by(f32::total_cmp);
        assert_eq!(ring, [997.0, 998.0, 999.0]);
        assert_eq!(c.evicted_total(), 995);
    }

    #[test]
    fn the_entries_that_draw_attention_become_saddles() {
        // No sinks, 2 saddles, a ring of 2; slots: [s0, s1, r0, r1].
        let mut c = cache(0, 2, 2, 1);
        step(&mut c, 0.0, &[]); // r0 = 0
                                // Frame 1 looks hard at frame 0 (in r0).
        step(&mut c, 1.0, &[0.0, 0.0, 0.9, 0.0]); // r1 = 1
        step(&mut c, 2.0, &[0.0, 0.0, 0.1, 0.8]); // frame 0 leaves r0 for s0
        assert_eq!(keys(&c), [Some(0.0), None, Some(2.0), Some(1.0)]);
        step(&mut c, 3.0, &[]); // frame 1 leaves r1 for s1
        assert_eq!(keys(&c), [Some(0.0), Some(1.0), Some(2.0), Some(3.0)]);
        assert_eq!(c.evicted_total(), 0);
        // Frame 2 drew nothing: leaving the ring, it is dropped; the
        // saddles stay.
        step(&mut c, 4.0, &[0.0, 0.0, 0.0, 0.0]);
        assert_eq!(keys(&c), [Some(0.0), Some(1.0), Some(4.0), Some(3.0)]);
        assert_eq!(c.evicted_last(), 1);
        // Frame 3 draws more than the weaker saddle holds now (frame 0's
        // score has decayed below frame 1's): it takes frame 0's place.
        step(&mut c, 5.0, &[0.0, 0.0, 0.0, 0.9]);
        assert_eq!(keys(&c), [Some(3.0), Some(1.0), Some(4.0), Some(5.0)]);
        assert_eq!(c.evicted_total(), 2);
    }

    #[test]
    fn positions_rank_by_recency_and_the_mask_marks_empty_slots() {
        let mut c = cache(1, 1, 2, 1);
        step(&mut c, 0.0, &[]);
        step(&mut c, 1.0, &[]);
        // Slots: sink 0 holds frame 0, ring slot 2 frame 1.
        assert_eq!(c.positions, [2.0, 0.0, 1.0, 0.0]);
        assert_eq!(c.mask, [0.0, MASKED, 0.0, MASKED]);
        step(&mut c, 2.0, &[0.0, 0.0, 0.7]);
        step(&mut c, 3.0, &[]); // frame 1 moves to the saddle slot
        assert_eq!(keys(&c), [Some(0.0), Some(1.0), Some(3.0), Some(2.0)]);
        assert_eq!(c.positions, [4.0, 3.0, 1.0, 2.0]);
        c.layout.recency_bias = 0.5;
        c.refresh();
        assert_eq!(c.mask, [-2.0, -1.5, -0.5, -1.0]);
        c.reset();
        assert_eq!(c.occupancy(), 0);
        assert!(c.mask.iter().all(|&m| m == MASKED));
        assert_eq!(keys(&c), [None; 4]);
    }

    #[test]
    fn only_the_committed_exit_writes_its_entry_and_attention() {
        let mut c = cache(0, 1, 2, 3);
        // Three candidate exits staged; exit 1 commits.
        for (e, f) in [(0, 10.0), (1, 11.0), (2, 12.0)] {
            let att = if e == 1 { [0.0; 3] } else { [5.0; 3] };
            let o = outputs(&c, f, &att);
            assert!(c.stage(e, &o));
        }
        c.commit(1);
        assert_eq!(keys(&c), [None, Some(11.0), None]);
        assert!(c.score.iter().all(|&s| s == 0.0));
        // A bad entry is reported, not hidden.
        let mut o = outputs(&c, f32::NAN, &[]);
        assert!(!c.stage(0, &o));
        o[1][0] = 1.0;
        o[3][0] = f32::INFINITY;
        assert!(!c.stage(0, &o));
    }

    #[test]
    fn a_billion_frames_overflow_nothing() {
        let mut c = cache(1, 1, 2, 1);
        for f in 0..4 {
            step(&mut c, f as f32, &[]);
        }
        let before = (c.positions.clone(), c.mask.clone());
        c.set_commits(1_000_000_000_000);
        for f in 0..4 {
            step(&mut c, f as f32, &[0.1, 0.1, 0.1, 0.1]);
        }
        assert_eq!(c.occupancy(), 4);
        let mut p = c.positions.clone();
        p.sort_by(f32::total_cmp);
        assert_eq!(p, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(before.1, c.mask);
        assert!(c.positions.iter().all(|p| *p <= c.layout.slots as f32));
    }

    #[test]
    fn attention_is_averaged_over_rows_and_the_current_frame_left_out() {
        let mut c = cache(0, 0, 2, 1);
        // Two rows of [slot 0, slot 1, self].
        let o = vec![
            vec![0.0],
            vec![1.0],
            vec![1.0],
            vec![0.2, 0.4, 0.4, 0.6, 0.0, 0.4],
        ];
        assert!(c.stage(0, &o));
        let a = &c.staged_attention[0];
        assert!(
            (a[0] - 0.4).abs() < 1e-6 && (a[1] - 0.2).abs() < 1e-6,
            "{a:?}"
        );
    }
}
