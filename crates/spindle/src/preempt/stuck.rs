//! The tick's check for the handoff: a worker core whose running thread has passed no
//! schedule point for `handoff_ticks` ticks while its OS thread is in the kernel is
//! stuck, and loses its core (`sched::carrier`).
//!
//! Workers pay nothing for it: the tick already reads every core's schedule points,
//! and only for a core that has not moved does it read the core's OS thread's line in
//! `/proc/self/task/<tid>/stat`:
//!
//! - asleep (`S`, `D`: a system call, a lock, a page fault): stuck now;
//! - running (`R`): computing, or working in the kernel (a `read` of a cold file
//!   copies for most of its time). The two look alike from outside; the user and
//!   system times tell them apart, at their 10 ms granularity: a thread whose system
//!   time grew more than its user time since the tick first saw it running is in the
//!   kernel, and stuck (the kernel splits a thread's run time between the two in the
//!   ratio of its tick samples, so a kernel-bound spell can move the user time a
//!   little too). A computing thread keeps its core.
//!
//! A stuck core is taken by the tick (`Core::take_stuck`, with `membarrier`), or,
//! where the kernel has no `membarrier`, its carrier's signal handler is asked to let
//! it go (`Core::let_go`).
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

use super::tick::signal;
use super::watchdog::Watch;
use crate::sched::Core;

/// Ticks between two reads of `/proc` for a core whose thread stays inside the
/// runtime (each try of `take_stuck` costs every running thread a barrier).
const RECHECK: u64 = 4;

/// Takes the core of a worker if it is stuck: its thread has not passed a schedule
/// point since tick `w.still_since` (`points` now), for at least `ticks` ticks, and
/// its OS thread is in the kernel. `t` is the current tick.
pub(super) fn check(core: &Core, w: &mut Watch, t: u64, ticks: u32, points: u64) {
    if t.saturating_sub(w.still_since) < u64::from(ticks) || t < w.recheck_at {
        return;
    }
    let k = &core.clock;
    let tid = k.tid.load(Ordering::Relaxed);
    if tid == 0 {
        return;
    }
    let Some(stat) = read_stat(tid) else {
        return;
    };
    let in_kernel = match stat.state {
        b'S' | b'D' => true,
        b'R' => {
            // First seen running in this spell: remember its times.
            if w.times_at != Some(w.still_since) {
                w.times_at = Some(w.still_since);
                w.user = stat.user;
                w.system = stat.system;
                false
            } else {
                stat.system - w.system.min(stat.system) > stat.user - w.user.min(stat.user)
            }
        }
        _ => false,
    };
    if !in_kernel {
        return;
    }
    if crate::os::membarrier_ready() && !BY_SIGNAL.load(Ordering::Relaxed) {
        let tcb = k.tcb.load(Ordering::Relaxed) as *mut crate::task::tcb::Tcb;
        // SAFETY: the clock published `tcb` as the core's running thread; its stack block stays mapped, and `take_stuck` re-checks, after its barrier, that the thread still runs there before it touches more than the mark.
        if !tcb.is_null() && unsafe { core.take_stuck(tcb, points) } {
            // The old carrier runs its thread on, adrift, when its call returns: on
            // its type's CPUs but the one the core's new carrier is pinned to, so the
            // two do not share it (unless it is the type's only CPU).
            let ty = core.ty.load(Ordering::Relaxed);
            let pinned = core.cpu.load(Ordering::Relaxed);
            let cpus: Vec<usize> = core.set().types[ty]
                .cpus
                .iter()
                .copied()
                .filter(|&c| c != pinned)
                .collect();
            if !cpus.is_empty() {
                let _ = crate::topology::confine(tid, &cpus);
            }
        } else {
            // Inside the runtime (a short wait on one of its locks).
            w.recheck_at = t + RECHECK;
        }
    } else if core.carrier.ask(points) {
        // The handler on the carrier lets the core go (`Core::let_go`).
        signal(k);
    }
}

/// Handoff through the carrier's signal handler even where `membarrier` is available
/// (the path of kernels without it), for tests.
pub(crate) static BY_SIGNAL: AtomicBool = AtomicBool::new(false);

/// What the tick reads of an OS thread in its `stat` line.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    /// The state letter (`R`, `S`, `D`, ...).
    state: u8,
    /// User and system time, in clock ticks (10 ms).
    user: u64,
    system: u64,
}

/// The `stat` line of OS thread `tid` of this process, if it can be read.
fn read_stat(tid: i32) -> Option<Stat> {
    let mut buf = [0u8; 512];
    let mut f = std::fs::File::open(format!("/proc/self/task/{tid}/stat")).ok()?;
    let n = f.read(&mut buf).ok()?;
    parse_stat(&buf[..n])
}

/// Parses a `stat` line: the fields after the command name, which is in parentheses
/// and may itself hold spaces and parentheses, are the state (3rd field), ..., user
/// time (14th) and system time (15th).
fn parse_stat(line: &[u8]) -> Option<Stat> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(line.get(close + 2..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let mut fields = fields.skip(10);
    let user = fields.next()?.parse().ok()?;
    let system = fields.next()?.parse().ok()?;
    Some(Stat {
        state,
        user,
        system,
    })
}

#[cfg(test)]
mod tests {
    use super::{Stat, parse_stat};

    #[test]
    fn the_fields_follow_the_last_parenthesis() {
        let line = b"12 (spin (a) b) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: b'S',
                user: 11,
                system: 12
            })
        );
        assert_eq!(parse_stat(b"12 (cut"), None);
        assert_eq!(parse_stat(b"12 (x) R 1 2"), None);
    }

    #[test]
    fn this_thread_is_running_while_it_reads_itself() {
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() };
        assert_eq!(super::read_stat(me).map(|s| s.state), Some(b'R'));
    }
}
