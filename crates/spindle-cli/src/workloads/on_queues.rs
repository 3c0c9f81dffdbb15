//! The migration peers: two OS threads pinned to two CPUs
//! ([`crate::affinity::cross_cpus`]) move work items back and forth through one queue
//! per direction — what a runtime without exchange slots would do to move threads
//! between cores.
//!
//! [`IN_FLIGHT`] items circulate; each thread takes an item from its inbound queue,
//! touches it (as a core touches a thread's control block when it takes the thread
//! in) and pushes it onto its outbound queue. One operation is one item moved from one
//! CPU to the other.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_deque::{Injector, Steal};

use super::{cross_pair, half, scale, spin_until};

/// Items circulating between the two CPUs at any time. A spindle migration workload
/// keeps as many threads migrating, so that the figures compare.
pub const IN_FLIGHT: usize = 64;

/// A queue from one CPU to the other.
trait Lane: Sync {
    fn push(&self, item: Box<u64>);
    fn pop(&self) -> Option<Box<u64>>;
}

impl Lane for Mutex<VecDeque<Box<u64>>> {
    fn push(&self, item: Box<u64>) {
        self.lock().expect("lane poisoned").push_back(item);
    }

    fn pop(&self) -> Option<Box<u64>> {
        self.lock().expect("lane poisoned").pop_front()
    }
}

impl Lane for Injector<Box<u64>> {
    fn push(&self, item: Box<u64>) {
        Injector::push(self, item);
    }

    fn pop(&self) -> Option<Box<u64>> {
        loop {
            match self.steal() {
                Steal::Success(item) => return Some(item),
                Steal::Empty => return None,
                Steal::Retry => {}
            }
        }
    }
}

/// `n` moves (rounded up to even) between two pinned threads through `to_b` and
/// `to_a`; time runs from the first thread's start to the last one's end.
fn migrate<L: Lane>(n: u64, to_b: L, to_a: L) -> Duration {
    let k = half(n);
    // Every item starts on its way to B, allocated outside the timed part.
    for i in 0..IN_FLIGHT {
        to_b.push(Box::new(i as u64));
    }
    let mover = |from: &L, to: &L| {
        let t0 = Instant::now();
        for _ in 0..k {
            let mut item = None;
            spin_until(|| {
                item = from.pop();
                item.is_some()
            });
            let mut item = item.expect("spun until an item came");
            *item += 1;
            to.push(item);
        }
        (t0, Instant::now())
    };
    let (a, b) = cross_pair(|_| mover(&to_a, &to_b), |_| mover(&to_b, &to_a));
    scale(a.1.max(b.1) - a.0.min(b.0), 2 * k, n)
}

/// `n` item moves through a `std::sync::Mutex<VecDeque<Box<u64>>>` per direction.
pub fn migration_mutex(n: u64) -> Duration {
    let lane = || Mutex::new(VecDeque::with_capacity(IN_FLIGHT));
    migrate(n, lane(), lane())
}

/// `n` item moves through a `crossbeam_deque::Injector<Box<u64>>` per direction
/// (`push` / `steal`, retried on `Steal::Retry`).
pub fn migration_injector(n: u64) -> Duration {
    migrate(n, Injector::new(), Injector::new())
}
