//! Who listens on a TCP port — named when the gateway's listen address is taken, so a clash says which
//! program to stop instead of looking like a crash.
//!
//! Linux only: `/proc/net/tcp` and `/proc/net/tcp6` give the inode of the socket listening on the port,
//! and the `/proc/PID/fd` links name the process holding it (other users' processes are readable only to
//! root; then the holder is unknown). Elsewhere the holder is not looked up: the error still names the
//! address. Parsing is pure ([`listening_inode`]) and tested everywhere.

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
    #[cfg(not(target_os = "linux"))]
    {
        let _ = port;
        None
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

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_found_holding_its_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let holder = port_holder(port).expect("found");
        assert_eq!(holder.pid, std::process::id());
    }
}
