//! Pinning OS threads to CPUs, and checking where threads really ran.
//!
//! The single-core benches pin their OS-thread peers to one CPU ([`bench_cpu`]), the
//! cross-core benches pin their two OS threads to two CPUs ([`cross_cpus`]) and check
//! with [`current_cpu`] that they ran there. Pinning may fail (a CPU set without the
//! wanted CPU, a single CPU, a restricted container); the workloads then run unpinned
//! and record that, and reports say `"pinned": false`.
//!
//! Peers that cannot be pinned (tokio's and may's workers pick up whichever task is
//! ready) sample, on some hops, the CPU that sent a message and the CPU that received
//! it ([`HopSampler`]) and record how many sampled hops crossed CPUs
//! ([`record_hops`]), so that a report can say how often a "cross-core" message
//! really left its core.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

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

/// The two CPUs the cross-core benches pin their two OS threads to: the first two
/// allowed ones, or `None` if fewer than two are allowed (or the set is unknown).
pub fn cross_cpus() -> Option<(usize, usize)> {
    match allowed_cpus()[..] {
        [a, b, ..] => Some((a, b)),
        _ => None,
    }
}

/// The CPU the calling thread runs on (`sched_getcpu`), or `None` if unknown.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu takes no arguments and only returns a number (or -1).
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

/// Pins the calling OS thread to `cpu` (if any) and checks with [`current_cpu`] that
/// it now runs there; records the outcome with [`record_pinned`] and returns it.
pub fn pin_and_check(cpu: Option<usize>) -> bool {
    let ok = cpu.is_some_and(|c| pin_current(c) && current_cpu() == Some(c));
    record_pinned(ok);
    ok
}

/// Checks that the calling thread, pinned to `cpu` earlier, still runs there (it
/// should: pinning is a hard limit); records a failure with [`record_pinned`].
pub fn check_still_on(cpu: Option<usize>) {
    if cpu.is_none() || current_cpu() != cpu {
        record_pinned(false);
    }
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

/// Sampled hops since the last [`take_hops`]: (crossed CPUs, sampled).
static HOPS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Adds `sampled` hops to the record, `crossed` of which went from one CPU to another.
pub fn record_hops(crossed: u64, sampled: u64) {
    HOPS[0].fetch_add(crossed, Ordering::Relaxed);
    HOPS[1].fetch_add(sampled, Ordering::Relaxed);
}

/// The hops recorded since the last call, as (crossed CPUs, sampled), `None` if none
/// was sampled; resets the record.
pub fn take_hops() -> Option<(u64, u64)> {
    let crossed = HOPS[0].swap(0, Ordering::Relaxed);
    let sampled = HOPS[1].swap(0, Ordering::Relaxed);
    (sampled > 0).then_some((crossed, sampled))
}

/// Samples, on one side of a message handoff, whether messages crossed CPUs.
///
/// The sender puts [`HopSampler::stamp`] into every message: its CPU on every
/// [`HopSampler::EVERY`]th message (the first included), [`HopSampler::NONE`]
/// otherwise. The receiver passes the stamp to [`HopSampler::check`], which compares
/// it with its own CPU. Sampling costs one `sched_getcpu` (a vDSO call) per side per
/// sampled message. Dropping the sampler records its counts with [`record_hops`].
#[derive(Debug, Default)]
pub struct HopSampler {
    crossed: u64,
    sampled: u64,
}

impl HopSampler {
    /// One message in this many is sampled.
    pub const EVERY: u64 = 64;
    /// The stamp of a message that is not sampled.
    pub const NONE: u32 = u32::MAX;

    /// A sampler with no hop counted yet.
    pub fn new() -> HopSampler {
        HopSampler::default()
    }

    /// The stamp of the `i`th message this side sends.
    pub fn stamp(i: u64) -> u32 {
        if i.is_multiple_of(Self::EVERY) {
            Self::cpu_stamp()
        } else {
            Self::NONE
        }
    }

    /// The current CPU as a stamp, for a message that is always sampled.
    pub fn cpu_stamp() -> u32 {
        current_cpu().map_or(Self::NONE - 1, |c| c as u32)
    }

    /// Counts one sampled hop, which `crossed` CPUs or not.
    pub fn count(&mut self, crossed: bool) {
        self.sampled += 1;
        self.crossed += u64::from(crossed);
    }

    /// Counts a received message with `stamp`, if it was sampled.
    pub fn check(&mut self, stamp: u32) {
        if stamp != Self::NONE {
            self.sampled += 1;
            if stamp != Self::cpu_stamp() {
                self.crossed += 1;
            }
        }
    }
}

impl Drop for HopSampler {
    fn drop(&mut self) {
        record_hops(self.crossed, self.sampled);
    }
}

/// Restricts the calling thread (and the threads it starts) to `cpus`; does nothing
/// for an empty list. Allocates nothing (it runs between fork and exec).
pub fn set_affinity(cpus: &[usize]) {
    if cpus.is_empty() {
        return;
    }
    // SAFETY: `cpu_set_t` is a plain bit array, for which all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: `c` is an allowed CPU, below CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed. Threads started later inherit it.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
}

/// Makes `cmd`'s process start restricted to `cpus` (nothing for an empty list).
pub fn confine_command(cmd: &mut std::process::Command, cpus: Vec<usize>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the hook only calls sched_setaffinity on a set built on the stack: no allocation, no lock.
    unsafe {
        cmd.pre_exec(move || {
            set_affinity(&cpus);
            Ok(())
        })
    };
}
