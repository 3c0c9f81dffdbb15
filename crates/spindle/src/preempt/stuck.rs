//! The tick's check for the handoff: a worker core whose running thread has passed no
//! schedule point for `handoff_ticks` ticks while its OS thread sleeps in the kernel is
//! stuck, and its carrier is asked to let it go (`sched::carrier`).
//!
//! Workers pay nothing for it: the tick already reads every core's schedule points,
//! and only for a core that has not moved does it read the state of the core's OS
//! thread from `/proc`. One asleep in a system call or a page fault (`S`, `D`) loses
//! its core: the tick takes it (`Core::take_stuck`, with `membarrier`), or, where the
//! kernel has no `membarrier`, asks the carrier's signal handler to let it go
//! (`Core::let_go`). One running (`R`) is computing, or copying in the kernel, which
//! cannot be told apart from outside: it keeps its core, and is looked at again after
//! [`RECHECK`] ticks (a long `read` from the page cache is caught at its waits for the
//! disk, in `D`).

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

use super::tick::signal;
use super::watchdog::Watch;
use crate::sched::Core;

/// Ticks between two reads of `/proc` for a core found running user code.
const RECHECK: u64 = 2;

/// Asks the carrier of `core` to let it go if it is stuck: its thread has not passed a
/// schedule point since tick `w.still_since` (`points` now), for at least `ticks`
/// ticks, and its OS thread sleeps in the kernel. `t` is the current tick.
pub(super) fn check(core: &Core, w: &mut Watch, t: u64, ticks: u32, points: u64) {
    if t.saturating_sub(w.still_since) < u64::from(ticks) || t < w.recheck_at {
        return;
    }
    let k = &core.clock;
    let tid = k.tid.load(Ordering::Relaxed);
    if tid == 0 {
        return;
    }
    if !asleep_in_kernel(tid) {
        // Computing (or copying in the kernel, which user code cannot be told from).
        w.recheck_at = t + RECHECK;
        return;
    }
    if crate::os::membarrier_ready() && !BY_SIGNAL.load(Ordering::Relaxed) {
        let tcb = k.tcb.load(Ordering::Relaxed) as *mut crate::task::tcb::Tcb;
        // SAFETY: the clock published `tcb` as the core's running thread; its stack block stays mapped, and `take_stuck` re-checks, after its barrier, that the thread still runs there before it touches more than the mark.
        if !tcb.is_null() && unsafe { core.take_stuck(tcb, points) } {
            // The old carrier runs its thread on, adrift, when its call returns:
            // not on the CPU its core's new carrier is pinned to.
            let ty = core.ty.load(Ordering::Relaxed);
            let _ = crate::topology::confine(tid, &core.set().types[ty].cpus);
        }
    } else if core.carrier.ask(points) {
        // The handler on the carrier lets the core go (`Core::let_go`).
        signal(k);
    }
}

/// Handoff through the carrier's signal handler even where `membarrier` is available
/// (the path of kernels without it), for tests.
pub(crate) static BY_SIGNAL: AtomicBool = AtomicBool::new(false);

/// Whether OS thread `tid` of this process sleeps in the kernel (state `S` or `D` in
/// `/proc/self/task/<tid>/stat`). False when it cannot be told.
fn asleep_in_kernel(tid: i32) -> bool {
    let mut buf = [0u8; 512];
    let Ok(mut f) = std::fs::File::open(format!("/proc/self/task/{tid}/stat")) else {
        return false;
    };
    let Ok(n) = f.read(&mut buf) else {
        return false;
    };
    state_of(&buf[..n]).is_some_and(|s| s == b'S' || s == b'D')
}

/// The state letter of a `stat` line: the field after the command name, which is in
/// parentheses and may itself hold spaces and parentheses.
fn state_of(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).copied()
}

#[cfg(test)]
mod tests {
    use super::state_of;

    #[test]
    fn the_state_follows_the_last_parenthesis() {
        assert_eq!(state_of(b"12 (spindle-core-0) S 1 2 3"), Some(b'S'));
        assert_eq!(state_of(b"12 (a) b) (c) D 1"), Some(b'D'));
        assert_eq!(state_of(b"12 (cut"), None);
    }

    #[test]
    fn this_thread_is_not_asleep_while_it_asks() {
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() };
        assert!(!super::asleep_in_kernel(me));
    }
}
