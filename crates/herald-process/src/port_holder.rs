//! Who listens on a TCP port — named when the gateway's listen address is taken, so a clash says which
//! program to stop instead of looking like a crash.
//!
//! Linux: `/proc/net/tcp` and `/proc/net/tcp6` give the inode of the socket listening on the port, and
//! the `/proc/PID/fd` links name the process holding it (other users' processes are readable only to
//! root; then the holder is unknown). Windows: `GetExtendedTcpTable` with the owning pid of each
//! listener (IPv4 and IPv6), the name from the process table. macOS: not looked up — the error still
//! names the address. Parsing is pure ([`listening_inode`]) and tested everywhere.

/// A process found listening on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortHolder {
    pub pid: u32,
    /// Its command name (`comm`), e.g. `herald`, `nginx`.
    pub name: String,
}

impl std::fmt::Display for PortHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {})", self.name, self.pid)
    }
}

/// The socket inode of a `/proc/net/tcp{,6}` line when it is a socket listening on `port`.
pub fn listening_inode(line: &str, port: u16) -> Option<u64> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let local = fields.get(1)?;
    let (_, hex_port) = local.rsplit_once(':')?;
    // State 0A is TCP_LISTEN.
    if u16::from_str_radix(hex_port, 16).ok()? != port || *fields.get(3)? != "0A" {
        return None;
    }
    fields.get(9)?.parse().ok().filter(|inode| *inode != 0)
}

/// The process listening on TCP `port`, when the OS can tell.
pub fn port_holder(port: u16) -> Option<PortHolder> {
    #[cfg(target_os = "linux")]
    {
        linux::port_holder(port)
    }
    #[cfg(windows)]
    {
        windows::port_holder(port)
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        let _ = port;
        None
    }
}

#[cfg(windows)]
mod windows {
    use super::PortHolder;
    use windows_sys::Win32::Foundation::{ERROR_INSUFFICIENT_BUFFER, NO_ERROR};
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        GetExtendedTcpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCPROW_OWNER_PID, TCP_TABLE_OWNER_PID_LISTENER,
    };
    use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};

    pub(super) fn port_holder(port: u16) -> Option<PortHolder> {
        // Pid 0 is the idle process: no real holder (Wine reports it for every socket).
        let pid = owner_v4(port)
            .or_else(|| owner_v6(port))
            .filter(|pid| *pid != 0)?;
        let name = match crate::identity::probe(pid) {
            crate::identity::ProcessProbe::Alive(info) => info
                .exe
                .as_deref()
                .and_then(|e| e.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "?".to_owned()),
            _ => "?".to_owned(),
        };
        Some(PortHolder { pid, name })
    }

    /// The listener table of one address family: `dwNumEntries` followed by the rows, in a buffer
    /// aligned for them.
    fn table(family: u16) -> Option<Vec<u64>> {
        let mut size = 0u32;
        for _ in 0..4 {
            let mut buffer = vec![0u64; (size as usize).div_ceil(8).max(1)];
            let mut given = (buffer.len() * 8) as u32;
            // SAFETY: `buffer` holds `given` writable bytes, 8-byte aligned; the API writes at most
            // `given` bytes and reports the size it needs otherwise.
            let rc = unsafe {
                GetExtendedTcpTable(
                    buffer.as_mut_ptr().cast(),
                    &mut given,
                    0,
                    u32::from(family),
                    TCP_TABLE_OWNER_PID_LISTENER,
                    0,
                )
            };
            match rc {
                NO_ERROR => return Some(buffer),
                ERROR_INSUFFICIENT_BUFFER => size = given,
                _ => return None,
            }
        }
        None
    }

    /// The rows of a table (`T` is the row type of its family).
    fn rows<T: Copy>(buffer: &[u64]) -> Vec<T> {
        let bytes = buffer.len() * 8;
        // SAFETY: the buffer starts with the u32 entry count; it is 8-byte aligned and at least 8 bytes.
        let count = unsafe { *buffer.as_ptr().cast::<u32>() } as usize;
        let first = std::mem::size_of::<u32>().next_multiple_of(std::mem::align_of::<T>());
        let fits = (bytes.saturating_sub(first)) / std::mem::size_of::<T>();
        (0..count.min(fits))
            // SAFETY: row `i` lies inside the buffer (bounded by `fits`) at the table's row offset, and
            // the row types are plain data.
            .map(|i| unsafe { *buffer.as_ptr().cast::<u8>().add(first).cast::<T>().add(i) })
            .collect()
    }

    pub(super) fn owner_v4(port: u16) -> Option<u32> {
        let buffer = table(AF_INET)?;
        rows::<MIB_TCPROW_OWNER_PID>(&buffer)
            .into_iter()
            .find(|row| u16::from_be(row.dwLocalPort as u16) == port)
            .map(|row| row.dwOwningPid)
    }

    fn owner_v6(port: u16) -> Option<u32> {
        let buffer = table(AF_INET6)?;
        rows::<MIB_TCP6ROW_OWNER_PID>(&buffer)
            .into_iter()
            .find(|row| u16::from_be(row.dwLocalPort as u16) == port)
            .map(|row| row.dwOwningPid)
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::{PortHolder, listening_inode};

    pub(super) fn port_holder(port: u16) -> Option<PortHolder> {
        let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|table| std::fs::read_to_string(table).ok())
            .flat_map(|text| {
                text.lines()
                    .skip(1)
                    .filter_map(|line| listening_inode(line, port))
                    .collect::<Vec<_>>()
            })
            .collect();
        if inodes.is_empty() {
            return None;
        }
        let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
                continue;
            };
            let holds = fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
            });
            if holds {
                let name = std::fs::read_to_string(entry.path().join("comm"))
                    .map(|c| c.trim().to_owned())
                    .unwrap_or_else(|_| "?".to_owned());
                return Some(PortHolder { pid, name });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_found_by_its_port() {
        let listening = "   1: 0100007F:1EC6 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 \
                         0 4242 1 0000000000000000 100 0 0 10 0";
        assert_eq!(listening_inode(listening, 7878), Some(4242));
        assert_eq!(listening_inode(listening, 7879), None);
        let established = listening.replace(" 0A ", " 01 ");
        assert_eq!(listening_inode(&established, 7878), None);
        let v6 = "   0: 00000000000000000000000001000000:1EC6 00000000000000000000000000000000:0000 0A \
                  00000000:00000000 00:00000000 00000000     0        0 77 1 0 100 0 0 10 0";
        assert_eq!(listening_inode(v6, 7878), Some(77));
        assert_eq!(
            listening_inode("  sl  local_address rem_address   st", 7878),
            None
        );
        assert_eq!(listening_inode("", 7878), None);
    }

    /// Windows: the listener is found in the table by its port; its owner is this process wherever the
    /// OS says (Wine reports no owners, pid 0, which the lookup treats as unknown).
    #[cfg(windows)]
    #[test]
    fn this_processs_listener_is_in_the_table() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let owner = windows::owner_v4(port).expect("the listener is in the table");
        assert!(owner == 0 || owner == std::process::id(), "{owner}");
        if let Some(holder) = port_holder(port) {
            assert_eq!(holder.pid, std::process::id());
        }
        drop(listener);
        assert_eq!(windows::owner_v4(port), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_found_holding_its_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let holder = port_holder(port).expect("found");
        assert_eq!(holder.pid, std::process::id());
    }
}
