//! What the kernel says of a running process (`/proc/PID/status`): its memory and threads, as
//! benchmarks report them and tests bound them.

use std::io;

/// A process's resident memory and thread count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcStatus {
    /// `VmRSS`, in bytes.
    pub rss: u64,
    /// `VmHWM` (the peak resident set), in bytes.
    pub hwm: u64,
    /// `Threads`.
    pub threads: u64,
}

/// `/proc/PID/status` of process `pid`.
pub fn status(pid: u32) -> io::Result<ProcStatus> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {path}: {e}")))?;
    Ok(parse_status(&text))
}

/// `VmRSS` and `VmHWM` (kB in the file) in bytes, and `Threads`; 0 when absent.
pub fn parse_status(status: &str) -> ProcStatus {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    ProcStatus {
        rss: field("VmRSS:") * 1024,
        hwm: field("VmHWM:") * 1024,
        threads: field("Threads:"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn status_fields_are_read_memory_in_bytes() {
        let status = "Name:\tetcd\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t9\n";
        let want = ProcStatus {
            rss: 1024 * 1024,
            hwm: 2048 * 1024,
            threads: 9,
        };
        assert_eq!(parse_status(status), want);
        assert_eq!(parse_status("Name: x\n"), ProcStatus::default());
    }

    #[test]
    fn this_process_has_memory_and_a_thread() {
        let me = status(std::process::id()).unwrap();
        assert!(me.rss > 0 && me.hwm >= me.rss, "{me:?}");
        assert!(me.threads >= 1, "{me:?}");
    }
}
