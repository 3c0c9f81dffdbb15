//! What a core does besides running threads.
//!
//! The scheduler calls its core's role at every schedule point, in its idle loop, when
//! it is about to sleep, and when it leaves. The runtime installs the roles before a
//! core first starts: the service core serves the offloaded system calls, a worker
//! collects their completions (see `offload`). The scheduler does not know what a role
//! does; a role is called only by its core's own OS thread.

use std::time::Duration;

use super::{Core, CoreCtx};

/// What a core does besides running threads (see the module docs).
pub(crate) trait CoreRole: Sync {
    /// At every schedule point, before the next thread is picked. One load when there
    /// is nothing to do: it is on the switch path.
    fn at_schedule_point(&self, ctx: &mut CoreCtx<'_>);

    /// In the idle loop: whether there is work for the core (true also when the call
    /// did some).
    fn idle_work(&self, core: &Core) -> bool;

    /// The value the core announces in its doorbell before it sleeps: 1 for a futex
    /// sleep, 2 for a monitored wait that a waker's write ends.
    fn sleep_mark(&self, _core: &Core) -> u32 {
        1
    }

    /// The idle sleep, after the doorbell said the core may sleep.
    fn idle_sleep(&self, core: &Core, timeout: Option<Duration>) {
        core.doorbell.sleep(timeout);
    }

    /// A leaving core's last work before it evacuates, in its scheduler context.
    fn on_leave(&self, _ctx: &mut CoreCtx<'_>) {}
}

/// The role of a core that only runs threads.
pub(crate) struct NoRole;

impl CoreRole for NoRole {
    fn at_schedule_point(&self, _ctx: &mut CoreCtx<'_>) {}

    fn idle_work(&self, _core: &Core) -> bool {
        false
    }
}
