//! Keeps the process's resident memory close to what it uses.
//!
//! mimalloc (the global allocator) reserves one large arena and marks it for transparent huge
//! pages. The kernel's khugepaged then collapses any 2 MiB range of it that holds even one
//! touched 4 KiB page into a huge page (`max_ptes_none` is 511 by default), in the background,
//! while the server is idle: after a burst of traffic freed its memory, RSS still grew by 20-40
//! MiB over the next half minute, as `AnonHugePages` in /proc/PID/smaps_rollup shows
//! (docs/benchmarks.md, "Hostile traffic"). Turning transparent huge pages off for this process
//! keeps freed pages freed. (What huge pages would gain for large tensors was not measured.)

/// Turns transparent huge pages off for this process (Linux; elsewhere a no-op). Returns whether
/// the kernel accepted it; a refusal only costs memory, so it is logged, never fatal.
pub fn disable_transparent_huge_pages() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory of ours.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        rc == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn transparent_huge_pages_are_off_afterwards() {
        assert!(super::disable_transparent_huge_pages());
        // SAFETY: PR_GET_THP_DISABLE takes no pointers; it returns the flag.
        let flag = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(flag, 1);
    }
}
