//! Pinning OS threads to one CPU, for the OS-thread peers of the single-core benches.
//!
//! Pinning may fail (a CPU set without the wanted CPU, a restricted container); the
//! workloads then run unpinned and record that, and reports say `"pinned": false`.

use std::sync::atomic::{AtomicU8, Ordering};

const UNKNOWN: u8 = 0;
const PINNED: u8 = 1;
const UNPINNED: u8 = 2;

/// Outcome of the pinning done by the workloads since the last [`take_pinned`].
static PIN_STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// The CPUs the calling thread may run on, ascending; empty if the kernel will not say.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is a plain bit array, for which all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; `set` is a writable cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE, the number of bits in a `cpu_set_t`.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// The CPU the benches pin OS threads to: the last allowed one (may pins its worker
/// to the first), or `None` if the allowed set is unknown.
pub fn bench_cpu() -> Option<usize> {
    allowed_cpus().last().copied()
}

/// Pins the calling OS thread to `cpu`. Returns whether that worked.
pub fn pin_current(cpu: usize) -> bool {
    if cpu >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: all zeroes is the empty set (see `allowed_cpus`).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// Records the outcome of one pinning attempt: the state becomes "unpinned" as soon as
/// any attempt since the last [`take_pinned`] failed.
pub fn record_pinned(pinned: bool) {
    let new = if pinned { PINNED } else { UNPINNED };
    let _ = PIN_STATE.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| match old {
        UNPINNED => None,
        _ => Some(new),
    });
}

/// Whether every pinning attempt since the last call succeeded (`None`: there was no
/// attempt), and resets the record.
pub fn take_pinned() -> Option<bool> {
    match PIN_STATE.swap(UNKNOWN, Ordering::Relaxed) {
        PINNED => Some(true),
        UNPINNED => Some(false),
        _ => None,
    }
}
