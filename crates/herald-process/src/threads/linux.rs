//! Linux leaf of `threads`: `/proc/PID/task/TID/{comm,stat,wchan}`.

use super::{ThreadSnapshot, parse_thread};

pub(super) fn threads_of(pid: u32) -> Option<Vec<ThreadSnapshot>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut threads: Vec<ThreadSnapshot> = tasks
        .flatten()
        .filter_map(|task| {
            let tid: u32 = task.file_name().to_str()?.parse().ok()?;
            let dir = task.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let wchan = std::fs::read_to_string(dir.join("wchan")).ok();
            parse_thread(tid, &comm, &stat, wchan.as_deref())
        })
        .collect();
    threads.sort_by_key(|t| t.tid);
    Some(threads)
}
