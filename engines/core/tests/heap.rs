//! `return_freed_memory` gives the pages of freed blocks back to the system
//! even where live blocks sit between them, as an engine's load leaves the
//! heap: weights kept, the parsed graph and the file's copy freed around them.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn freed_blocks_between_live_ones_leave_the_process() {
    fn anon_kb() -> i64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let v = s.lines().find_map(|l| l.strip_prefix("RssAnon:")).unwrap();
        v.trim().trim_end_matches("kB").trim().parse().unwrap()
    }
    // A large block freed raises glibc's mmap threshold to its size (as a
    // segment's file buffer does), so the blocks below land in the heap.
    drop(std::hint::black_box(vec![1u8; 16 << 20]));
    let mut freed = Vec::new();
    let mut live = Vec::new();
    for _ in 0..48 {
        freed.push(std::hint::black_box(vec![1u8; 1 << 20]));
        live.push(std::hint::black_box(vec![1u8; 64]));
    }
    drop(freed);
    let before = anon_kb();
    offramp_engines::return_freed_memory();
    let after = anon_kb();
    assert!(
        before - after >= 40 << 10,
        "48 MiB freed between live blocks: resident {before} kB before, {after} kB after"
    );
    assert_eq!(live.len(), 48);
}
