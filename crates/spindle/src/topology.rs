//! CPUs and CPU features: what the machine offers, and pinning an OS thread to a CPU.
//!
//! Core types name a CPU set and a CPU-feature set. Both are checked against this
//! machine when a runtime is built: a CPU the process may not run on, or a feature
//! the CPU lacks, is a configuration error rather than a surprise at run time.

use std::io;

/// The CPUs the calling OS thread may run on, ascending (its affinity mask). Falls
/// back to `0..available_parallelism` if the kernel does not say.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is a plain bit array, for which all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; `set` is a writable cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        return (0..n).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE, the number of bits in a `cpu_set_t`.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Pins the calling OS thread to `cpu`.
pub(crate) fn pin_current(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Confines the calling OS thread to the CPUs in `cpus` (an unpinned core of a type).
pub(crate) fn confine_current(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: `cpu` is below CPU_SETSIZE (filtered).
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The CPU the calling OS thread is running on right now, if the kernel says.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu has no preconditions.
    let c = unsafe { libc::sched_getcpu() };
    usize::try_from(c).ok()
}

macro_rules! feature_table {
    ($($name:tt),* $(,)?) => {
        /// Every CPU-feature name a core type may require, with whether this CPU has it.
        fn feature_table() -> &'static [(&'static str, bool)] {
            static TABLE: std::sync::OnceLock<Vec<(&'static str, bool)>> =
                std::sync::OnceLock::new();
            TABLE.get_or_init(|| vec![$(($name, std::arch::is_x86_feature_detected!($name))),*])
        }
    };
}

#[cfg(target_arch = "x86_64")]
feature_table!(
    "sse2",
    "sse3",
    "ssse3",
    "sse4.1",
    "sse4.2",
    "popcnt",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "bmi1",
    "bmi2",
    "lzcnt",
    "movbe",
    "aes",
    "pclmulqdq",
    "sha",
    "adx",
    "rdrand",
    "rdseed",
    "xsave",
    "avx512f",
    "avx512bw",
    "avx512cd",
    "avx512dq",
    "avx512vl",
    "avx512vnni",
    "vaes",
    "vpclmulqdq",
    "gfni",
);

/// Whether this CPU has `feature`: `Some(true/false)` for a known name, `None` for a
/// name spindle does not know.
///
/// # Examples
///
/// ```
/// assert_eq!(spindle::topology::has_feature("sse2"), Some(true));
/// assert_eq!(spindle::topology::has_feature("warp-drive"), None);
/// ```
pub fn has_feature(feature: &str) -> Option<bool> {
    feature_table()
        .iter()
        .find(|(n, _)| *n == feature)
        .map(|&(_, has)| has)
}

/// The CPU-feature names spindle knows (valid in a core type's feature set).
pub fn known_features() -> impl Iterator<Item = &'static str> {
    feature_table().iter().map(|&(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_cpus_are_sorted_and_include_the_current_one() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        assert!(cpus.is_sorted());
        if let Some(c) = current_cpu() {
            assert!(cpus.contains(&c), "running on {c}, allowed {cpus:?}");
        }
    }

    #[test]
    fn pinning_moves_the_thread() {
        let cpus = allowed_cpus();
        let last = *cpus.last().unwrap();
        std::thread::spawn(move || {
            pin_current(last).unwrap();
            assert_eq!(current_cpu(), Some(last));
            assert!(pin_current(usize::MAX).is_err());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn features() {
        assert!(known_features().any(|f| f == "avx2"));
        assert_eq!(has_feature("nope"), None);
    }
}
