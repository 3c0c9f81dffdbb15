//! The cores of a runtime: the `Core` objects, their exchange slots, their types, and
//! which one is the service core.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicUsize};

use crossbeam_utils::CachePadded;

use super::exchange::Slots;
use super::{Core, CoreState, MAX_TYPES};
use crate::loom::Ordering;
use crate::task::tcb::Tcb;
use crate::topology::FeatureSet;

/// A core type as the runtime keeps it.
pub(crate) struct TypeInfo {
    pub(crate) name: String,
    pub(crate) cpus: Vec<usize>,
    /// Its CPU features, closed under implication.
    pub(crate) features: FeatureSet,
}

/// The cores of one runtime (the first field of the runtime's state: see
/// `runtime::Shared::of`).
#[repr(C)]
pub(crate) struct CoreSet {
    pub(crate) cores: Box<[Core]>,
    pub(crate) slots: Slots<Tcb>,
    /// Cores ever started: the exchange slots to scan are those of cores `0..hwm`.
    pub(crate) hwm: AtomicUsize,
    pub(crate) types: Vec<TypeInfo>,
    /// Threads per type spawned by OS threads outside the runtime.
    pub(crate) foreign_typed: [AtomicI64; MAX_TYPES],
    /// The first service core (the hypercore), if the runtime has one: it also runs
    /// the maintenance threads and dispatches readiness.
    pub(crate) hyper: Option<usize>,
    /// Service cores: ids `hyper..hyper + services` (0 without a hypercore).
    pub(crate) services: usize,
    /// The service core's type index.
    pub(crate) service_ty: Option<usize>,
    /// Where maintenance threads go: the service type, else the first worker type.
    pub(crate) maint_ty: usize,
    /// Per type: cores spinning idle, looking for work (`steal`: at most one, so the
    /// others sleep). On a line of its own: idle cores write it, and the fields above
    /// are read on every schedule point.
    pub(crate) spinning: CachePadded<[AtomicU32; MAX_TYPES]>,
    /// Per type: cores asleep in the kernel (a core with new work wakes one only if
    /// none spins). On a line of its own, as `spinning`.
    pub(crate) sleeping: CachePadded<[AtomicU32; MAX_TYPES]>,
    /// Threads running adrift: their cores were handed to other OS threads while
    /// they blocked in the kernel (`carrier`); they have not rejoined a core yet.
    pub(crate) adrift: AtomicUsize,
}

impl CoreSet {
    /// Whether core `id` is a service core.
    #[inline]
    pub(crate) fn is_service(&self, id: usize) -> bool {
        self.hyper
            .is_some_and(|h| id >= h && id < h + self.services)
    }
    /// Whether the runtime has a service core.
    #[inline]
    pub(crate) fn has_service(&self) -> bool {
        self.hyper.is_some()
    }
    /// Core `id` if it is started and active.
    pub(crate) fn active_core(&self, id: usize) -> Option<&Core> {
        self.cores
            .get(id)
            .filter(|c| c.id < self.hwm.load(Ordering::Acquire) && c.state() == CoreState::Active)
    }
    /// The index of the type named `name`.
    pub(crate) fn type_index(&self, name: &str) -> Option<usize> {
        self.types.iter().position(|t| t.name == name)
    }
    /// Live threads of type `ty` (relaxed sums of single-writer counters: a snapshot).
    pub(crate) fn live_of_type(&self, ty: usize) -> i64 {
        let n = self.hwm.load(Ordering::Acquire);
        self.cores[..n]
            .iter()
            .map(|c| c.typed[ty].load(Ordering::Relaxed))
            .sum::<i64>()
            + self.foreign_typed[ty].load(Ordering::Relaxed)
    }
    /// Live threads of every type (a snapshot, like [`CoreSet::live_of_type`]).
    pub(crate) fn live_threads(&self) -> i64 {
        (0..self.types.len()).map(|ty| self.live_of_type(ty)).sum()
    }
    /// The cores ever started (`0..hwm`).
    pub(crate) fn started(&self) -> &[Core] {
        &self.cores[..self.hwm.load(Ordering::Acquire)]
    }
}
