//! `threads` where the OS does not tell what a process's threads are doing (all but Linux).

use super::ThreadSnapshot;

pub(super) fn threads_of(_pid: u32) -> Option<Vec<ThreadSnapshot>> {
    None
}
