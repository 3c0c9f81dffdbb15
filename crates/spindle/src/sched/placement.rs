//! Where a thread goes: a spawn's target (a core, a type, the service core), the least
//! loaded core of a type, the core of an urgent thread, a woken thread whose core left.

use super::{CoreSet, CoreState, IDLE_LEVEL};
use crate::error::SpawnError;
use crate::loom::Ordering;

/// Where a spawn puts the thread.
pub(crate) enum Target {
    /// The spawner's core, if it is a worker core of this runtime; else placed as
    /// [`Target::TypeIndex`] of the first worker type.
    Any,
    /// This core.
    Core(usize),
    /// The least loaded core of this type.
    Type(String),
    /// The least loaded core of the type with this index (a resolved `Type`).
    TypeIndex(usize),
    /// The service core (the hypercore), or the worker cores if it is disabled.
    Maintenance,
}

impl CoreSet {
    /// The type a spawn's target names, checked: `Ok(None)` for [`Target::Any`], whose
    /// type the caller chooses. A target naming the service core or its type is
    /// `SpawnError::ServiceCore`: it runs maintenance threads only.
    pub(crate) fn target_type(&self, target: &Target) -> Result<Option<usize>, SpawnError> {
        self.refuse_service_core(target)?;
        Ok(match target {
            Target::Any => None,
            Target::Core(id) => Some(
                self.active_core(*id)
                    .ok_or(SpawnError::NoSuchCore { core: *id })?
                    .ty
                    .load(Ordering::Relaxed),
            ),
            Target::Type(name) => Some(
                self.type_index(name)
                    .ok_or_else(|| SpawnError::NoSuchType { name: name.clone() })?,
            ),
            Target::TypeIndex(ty) => Some(*ty),
            Target::Maintenance => Some(self.maint_ty),
        })
    }

    /// Where a new thread of run-queue level `level` goes: its type and its core.
    /// `here` is the spawning thread's core and type, if it is a thread of this
    /// runtime: a plain spawn ([`Target::Any`]) from a worker core goes on that core; a
    /// maintenance thread's child goes to a worker type, placed like a spawn of that
    /// type.
    pub(crate) fn resolve(
        &self,
        target: &Target,
        level: u8,
        here: Option<(usize, usize)>,
    ) -> Result<(usize, usize), SpawnError> {
        let from = here.map(|(core, _)| core);
        if let (Target::Maintenance, Some(h)) = (target, self.hyper) {
            // Every maintenance thread runs on the first service core (the hypercore):
            // the others only serve calls.
            return Ok((self.maint_ty, h));
        }
        if let Target::Core(id) = target {
            let ty = self.target_type(target)?.expect("a core has a type");
            return Ok((ty, *id));
        }
        let ty = match self.target_type(target)? {
            Some(ty) => ty,
            None => match here {
                // A plain spawn stays where the spawner is: the child's data is in
                // this core's cache, and an idle core asks for work if there is too
                // much here (`steal`). A more urgent child preempts its spawner.
                Some((core, ty))
                    if Some(ty) != self.service_ty
                        && self.cores[core].state() == CoreState::Active =>
                {
                    return Ok((ty, core));
                }
                // A maintenance thread's children are worker threads.
                Some((_, ty)) if Some(ty) != self.service_ty => ty,
                _ => 0,
            },
        };
        let dst = self
            .place(ty, level, from)
            .ok_or_else(|| SpawnError::NoCoreOfType {
                name: self.types[ty].name.clone(),
            })?;
        Ok((ty, dst))
    }

    /// `SpawnError::ServiceCore` if `target` names the service core or its type: it
    /// runs maintenance threads only (those spawn with `Target::Maintenance`).
    fn refuse_service_core(&self, target: &Target) -> Result<(), SpawnError> {
        let service = match target {
            Target::Core(id) => self.is_service(*id),
            Target::Type(name) => {
                self.service_ty.is_some() && self.type_index(name) == self.service_ty
            }
            _ => false,
        };
        let core = match target {
            Target::Core(id) => Some(*id),
            _ => self.hyper,
        };
        match core {
            Some(core) if service => Err(SpawnError::ServiceCore { core }),
            _ => Ok(()),
        }
    }
    /// Where a new thread of type `ty` and run-queue level `level` goes: if it is more
    /// urgent than what every active core of the type runs, the core running the least
    /// urgent thread (which is then asked to reschedule); otherwise the least loaded
    /// one, preferring `from` on ties. `None` if the type has no active core.
    pub(crate) fn place(&self, ty: usize, level: u8, from: Option<usize>) -> Option<usize> {
        let mut least: Option<(u32, usize)> = None;
        let mut calmest: Option<(u8, usize)> = None;
        for c in self.started() {
            if c.ty.load(Ordering::Relaxed) != ty || c.state() != CoreState::Active {
                continue;
            }
            let load = c.published.load.load(Ordering::Relaxed);
            // An idle core keeps the level of its last thread (see `Published`).
            let running = if load == 0 {
                IDLE_LEVEL
            } else {
                c.published.level.load(Ordering::Relaxed)
            };
            let better_load = match least {
                None => true,
                Some((l, id)) => load < l || (load == l && Some(c.id) == from && id != c.id),
            };
            if better_load {
                least = Some((load, c.id));
            }
            let better_level = match calmest {
                None => true,
                Some((r, _)) => running > r || (running == r && Some(c.id) == from),
            };
            if better_level {
                calmest = Some((running, c.id));
            }
        }
        match (calmest, least) {
            (Some((running, id)), _) if level < running && running != IDLE_LEVEL => Some(id),
            (_, Some((_, id))) => Some(id),
            _ => None,
        }
    }
    /// Where a woken (or evacuated) thread of type `ty` goes when its own core is not
    /// active: the least loaded active core of the type, else of any type.
    pub(crate) fn place_woken(&self, ty: u8, from: Option<usize>) -> usize {
        if let Some(id) = self.place(ty as usize, IDLE_LEVEL, from) {
            return id;
        }
        self.started()
            .iter()
            .filter(|c| c.state() == CoreState::Active && !self.is_service(c.id))
            .min_by_key(|c| c.published.load.load(Ordering::Relaxed))
            .map_or(from.unwrap_or(0), |c| c.id)
    }
}
