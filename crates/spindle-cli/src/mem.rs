//! Resident memory of this process, from `/proc/self/status`.

/// The `VmRSS` line of `/proc/self/status`, in KiB, or `None` if unavailable.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_field_kib(&status, "VmRSS")
}

/// Parses a `Name:   1234 kB` field out of a `/proc/<pid>/status` text.
pub fn status_field_kib(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        let mut words = rest.split_whitespace();
        let value = words.next()?.parse().ok()?;
        (words.next() == Some("kB")).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_fields() {
        let text = "Name:\tspindle\nVmPeak:\t  100 kB\nVmRSS:\t   4321 kB\nThreads:\t1\n";
        assert_eq!(status_field_kib(text, "VmRSS"), Some(4321));
        assert_eq!(status_field_kib(text, "VmPeak"), Some(100));
        assert_eq!(status_field_kib(text, "Threads"), None);
        assert!(rss_kib().is_some_and(|k| k > 0));
    }
}
