//! How the kernel schedules our threads (Linux; elsewhere these do nothing and return false).

/// Sets the calling thread's niceness (Linux: `setpriority` on a thread id affects that thread
/// only). Best effort: false when refused or not on Linux.
pub fn lower_thread_priority(nice: i32) -> bool {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; no memory is passed.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice) == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        false
    }
}

/// Moves the calling thread to SCHED_IDLE, keeping its niceness: a normal thread that wakes
/// preempts it at once (a nice-19 thread still runs out its slice first, up to a few
/// milliseconds), and while normal threads want the CPU it gets a tiny share of it, about 0.3%.
pub fn idle_policy() -> bool {
    #[cfg(target_os = "linux")]
    {
        set_policy(libc::SCHED_IDLE as u32)
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(target_os = "linux")]
fn set_policy(policy: u32) -> bool {
    // SAFETY: gettid and getpriority take no pointers; `attr` is a valid, initialised
    // sched_attr of the size it declares, alive for the call, and the kernel does not keep it.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
        if nice == -1 && *libc::__errno_location() != 0 {
            return false;
        }
        let attr = libc::sched_attr {
            size: std::mem::size_of::<libc::sched_attr>() as u32,
            sched_policy: policy,
            sched_flags: 0,
            sched_nice: nice,
            sched_priority: 0,
            sched_runtime: 0,
            sched_deadline: 0,
            sched_period: 0,
        };
        libc::syscall(
            libc::SYS_sched_setattr,
            tid,
            &attr as *const libc::sched_attr,
            0u32,
        ) == 0
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn a_thread_moves_to_the_idle_policy_and_keeps_its_niceness() {
        std::thread::spawn(|| {
            assert!(super::lower_thread_priority(5));
            assert!(super::idle_policy());
            // SAFETY: both take the calling thread (0) and no pointers.
            let (policy, nice) = unsafe {
                (
                    libc::sched_getscheduler(0),
                    libc::getpriority(libc::PRIO_PROCESS, 0),
                )
            };
            assert_eq!(policy, libc::SCHED_IDLE);
            assert_eq!(nice, 5);
        })
        .join()
        .unwrap();
    }
}
