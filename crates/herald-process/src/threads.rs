//! What each thread of a process is doing, as the OS tells it: for the record of a worker the monitor
//! found wedged (a stopped process shows `T`, a loop blocked in the kernel shows where in `wchan`).
//!
//! **Invariant:** reading is best effort and never fails its caller: a thread that exits while it is
//! read is skipped, and an OS that does not tell (only Linux does, through `/proc/PID/task`) gives
//! `None`. The parsing is pure ([`parse_thread`]) and compiled everywhere; only the file reads are the
//! Linux leaf's.

#[cfg(target_os = "linux")]
#[path = "threads/linux.rs"]
mod os;
#[cfg(not(target_os = "linux"))]
#[path = "threads/other.rs"]
mod os;

/// One thread of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSnapshot {
    pub tid: u32,
    /// The thread's name (`comm`: at most 15 bytes on Linux).
    pub name: String,
    /// The scheduler state: `R` running, `S` sleeping, `D` in uninterruptible I/O, `T` stopped, …
    pub state: char,
    /// The kernel function the thread waits in, when it waits in one (`None` for `0` or unreadable).
    pub wchan: Option<String>,
}

/// Every thread of `pid`, or `None` where the OS does not say (or the process is gone).
pub fn threads_of(pid: u32) -> Option<Vec<ThreadSnapshot>> {
    os::threads_of(pid)
}

/// One thread from the text of its `comm`, `stat` and `wchan` files. `None` when `stat` is not one.
pub fn parse_thread(tid: u32, comm: &str, stat: &str, wchan: Option<&str>) -> Option<ThreadSnapshot> {
    // `tid (comm) state ...`: comm may hold spaces and parentheses, so the state follows the last ')'.
    let state = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().next()?;
    let mut chars = state.chars();
    let state = chars.next().filter(|_| chars.next().is_none())?;
    let wchan = wchan
        .map(str::trim)
        .filter(|w| !w.is_empty() && *w != "0")
        .map(str::to_owned);
    Some(ThreadSnapshot {
        tid,
        name: comm.trim_end_matches('\n').to_owned(),
        state,
        wchan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_thread_with_an_odd_name_is_read() {
        let thread = parse_thread(
            42,
            "herald (x) y\n",
            "42 (herald (x) y) T 1 42 42 0 -1 4194560 100 0 0 0",
            Some("do_signal_stop"),
        )
        .unwrap();
        assert_eq!(thread.tid, 42);
        assert_eq!(thread.name, "herald (x) y");
        assert_eq!(thread.state, 'T');
        assert_eq!(thread.wchan.as_deref(), Some("do_signal_stop"));
    }

    #[test]
    fn no_wait_channel_and_garbage_are_told_apart() {
        let thread = parse_thread(7, "herald-worker\n", "7 (herald-worker) R 1 2 3", Some("0")).unwrap();
        assert_eq!(thread.wchan, None);
        assert_eq!(parse_thread(7, "x", "7 (x) ", None), None);
        assert_eq!(parse_thread(7, "x", "no parenthesis S", None), None);
        assert_eq!(parse_thread(7, "x", "7 (x) SS 1", None), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_running_thread() {
        let threads = threads_of(std::process::id()).unwrap();
        assert!(threads.iter().any(|t| t.state == 'R'), "{threads:?}");
    }
}
