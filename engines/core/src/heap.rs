//! Hands the memory an engine's load freed back to the system.
//!
//! Loading a segment is allocation-heavy and short-lived: the parsed graph,
//! the weights as the file stores them and the copies a backend repacks for
//! its kernels exist side by side, and all but the last are freed when the
//! load returns. glibc's allocator keeps what was freed inside its heap: after
//! a large block is freed it raises its `mmap` threshold to that size, so the
//! next segment's weights land in the heap too, and freed holes between live
//! weights stay resident. On a 4-segment ViT-S-size set (86.6 MB of fp32
//! weights) the process's peak went from 160–161 MB to 143–145 MB with the
//! trim below, and what it holds while the robot runs to about 131 MB. `malloc_trim(0)` after each engine gives back every free page of
//! the heap without changing how later allocations are served, so the frame
//! loop keeps its speed.

/// Returns the free pages of the process's heap to the system (glibc); a
/// no-op on other C libraries, whose allocators return memory on their own
/// terms. Costs a walk of the heap's free lists: for between loads, not
/// for the frame loop.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases pages of chunks that are free; every
    // live allocation is untouched. The return value (whether anything was
    // released) is not needed.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The process's peak resident memory so far (`VmHWM`), in bytes: what
/// `/usr/bin/time -f %M` reports at exit. `None` where `/proc` has no such
/// line (not Linux).
pub fn peak_resident_bytes() -> Option<u64> {
    status_bytes("VmHWM:")
}

/// The process's resident memory now (`VmRSS`), in bytes; `None` where
/// `/proc` has no such line.
pub fn resident_bytes() -> Option<u64> {
    status_bytes("VmRSS:")
}

fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn the_peak_is_read_from_proc() {
        let resident = super::resident_bytes().unwrap();
        assert!(super::peak_resident_bytes().unwrap() >= resident);
        let block = std::hint::black_box(vec![1u8; 64 << 20]);
        assert!(super::peak_resident_bytes().unwrap() >= resident + (60 << 20));
        drop(block);
    }
}
