//! Named threads: the static thread table and the choice of variant.
//!
//! `#[spindle::thread(name = "dot", variant = "avx2")]` on a `fn(A) -> R` puts an
//! [`Entry`] into a link-time table (a `linkme` distributed slice): the name, the
//! variant, the CPU features the variant needs, an erased entry point, and the type
//! identities of `A` and `R`. Nothing is registered at run time.
//!
//! [`spawn_named`] looks the name up, checks the types, picks the
//! core from the attributes, and runs the most specific variant that the core's type
//! can run (see [`choose`]). Every runtime checks the table when it starts (see
//! [`TableError`]) and keeps, per name and core type, the variant it picks.
//!
//! A variant's features are its `requires = "..."` list if given, else its variant
//! name read as a `+`-separated feature list (`"avx2"`, `"avx2+fma"`; `"avx512"` means
//! `avx512f`), plus the features of the function's `#[target_feature(enable = ..)]`.
//! The variant `generic` needs nothing. Features imply others as in `rustc`
//! (`avx512f` brings `avx2`, `avx`, `fma`, ...); a variant's *specificity* is the size
//! of its implied feature set.

use std::any::TypeId;

pub use crate::registry::{Entry, TableError, choose, table};
#[doc(hidden)]
pub use crate::registry::{THREADS, call_erased};

use crate::error::SpawnError;
use crate::registry::{NameInfo, index};
use crate::sched::CoreCtx;
use crate::sched::placement::Target;
use crate::shared::Shared;
use crate::task::tcb::Name;
use crate::thread::{Builder, JoinHandle, spawn_unchecked};

/// Spawns the named thread `name` with argument `arg` in the caller's runtime and
/// returns its handle; [`JoinHandle::variant`] tells which variant runs.
///
/// `attrs` places it (a core, a core type, or by default the least loaded core of the
/// caller's type, else of the type that runs the most specific variant) and sets its
/// priority and stack size; a name given there replaces the table's name as the
/// thread's name. The variant is the most specific one the chosen core's type can
/// run (see [`choose`]). The thread is created lazily: its stack is taken and first
/// touched by the core that runs it.
///
/// # Errors
///
/// [`SpawnError::UnknownName`], [`SpawnError::TypeMismatch`] (naming the expected
/// and the given types), [`SpawnError::NoRunnableVariant`], [`SpawnError::NoSuchCore`],
/// [`SpawnError::NoSuchType`], [`SpawnError::ShutDown`], [`SpawnError::NoRuntime`],
/// and the attribute errors of [`Builder`]. `arg` is dropped then.
///
/// # Examples
///
/// ```
/// #[spindle::thread(name = "sum", variant = "generic")]
/// fn sum(v: Vec<u64>) -> u64 {
///     v.iter().sum()
/// }
///
/// #[spindle::thread(name = "sum", variant = "avx2")]
/// fn sum_avx2(v: Vec<u64>) -> u64 {
///     v.iter().sum()
/// }
///
/// spindle::run(|| {
///     let h = spindle::spawn_named::<Vec<u64>, u64>("sum", vec![1, 2, 3], spindle::Builder::new())
///         .unwrap();
///     let picked = h.variant();
///     assert_eq!(h.join().unwrap(), 6);
///     let avx2 = spindle::topology::has_feature("avx2") == Some(true);
///     assert_eq!(picked, Some(if avx2 { "avx2" } else { "generic" }));
///
///     // Wrong types are a typed error naming both signatures.
///     let err = spindle::spawn_named::<u32, u64>("sum", 1, spindle::Builder::new()).unwrap_err();
///     assert!(err.to_string().contains("fn(alloc::vec::Vec<u64>) -> u64"));
/// });
/// ```
pub fn spawn_named<A, R>(name: &str, arg: A, attrs: Builder) -> Result<JoinHandle<R>, SpawnError>
where
    A: Send + 'static,
    R: Send + 'static,
{
    let shared = Shared::current().ok_or_else(SpawnError::not_in_runtime)?;
    spawn_named_in(shared, name, arg, attrs)
}

/// [`spawn_named`] in the runtime `shared`.
pub(crate) fn spawn_named_in<A, R>(
    shared: &Shared,
    name: &str,
    arg: A,
    attrs: Builder,
) -> Result<JoinHandle<R>, SpawnError>
where
    A: Send + 'static,
    R: Send + 'static,
{
    if shared.shutdown.load(std::sync::atomic::Ordering::Acquire) || crate::fork::forked() {
        return Err(SpawnError::not_running());
    }
    let (ni, info) = lookup::<A, R>(name)?;
    let mut opts = attrs.opts()?;
    opts.lazy = true;
    // The target's type, as for any spawn (the service core refuses named threads
    // too); with no target, the type that can run the name.
    let ty = match shared.target_type(&opts.target)? {
        Some(ty) => ty,
        None => type_for(shared, ni, info),
    };
    let Some(vi) = shared.choices.get(ni, ty) else {
        return Err(no_variant(shared, name, info, ty));
    };
    let entry = info.variants[vi];
    if !matches!(opts.target, Target::Core(_)) {
        opts.target = Target::TypeIndex(ty);
    }
    if opts.name.is_none() {
        opts.name = Some(Name::Static(entry.name()));
    }
    let call = entry.call();
    let f = move || -> R {
        let mut arg = std::mem::ManuallyDrop::new(arg);
        let mut out = std::mem::MaybeUninit::<R>::uninit();
        // SAFETY: the entry's types were checked to be A and R: it moves the A out of `arg` (never dropped here) and writes an R to `out`; it runs on a core whose type has the variant's features.
        unsafe {
            call((&raw mut *arg).cast(), out.as_mut_ptr().cast());
            out.assume_init()
        }
    };
    // SAFETY: the closure and R are 'static and Send.
    let mut h = unsafe { spawn_unchecked(shared, f, opts)? };
    h.variant = Some(entry.variant());
    Ok(h)
}

/// The named thread `name` and its index, if it takes an `A` and returns an `R`.
fn lookup<A: 'static, R: 'static>(name: &str) -> Result<(usize, &'static NameInfo), SpawnError> {
    let idx = index();
    let Some(ni) = idx.find(name) else {
        return Err(SpawnError::UnknownName {
            name: name.to_string(),
            known: idx.all_names().iter().map(|n| n.to_string()).collect(),
        });
    };
    let info = &idx.names[ni];
    let first = info.variants[0];
    if first.arg_type_id() != TypeId::of::<A>() || first.ret_type_id() != TypeId::of::<R>() {
        return Err(SpawnError::TypeMismatch {
            name: name.to_string(),
            expected: format!("fn({}) -> {}", first.arg_type(), first.return_type()),
            given: format!(
                "fn({}) -> {}",
                std::any::type_name::<A>(),
                std::any::type_name::<R>()
            ),
        });
    }
    Ok((ni, info))
}

/// The core type of a named spawn with no target: the caller's type if it can run
/// the name, else the type that runs the most specific variant.
fn type_for(shared: &Shared, ni: usize, info: &NameInfo) -> usize {
    let mine = CoreCtx::current()
        .filter(|(ctx, _)| std::ptr::eq(ctx.core().set_ptr(), &shared.set))
        // SAFETY: `me` is the running thread; its type is its own to read.
        .map_or(0, |(_, me)| unsafe { (*me).ty } as usize);
    if shared.choices.get(ni, mine).is_some() {
        return mine;
    }
    (0..shared.types.len())
        .filter_map(|ty| Some((shared.choices.get(ni, ty)?, ty)))
        .max_by_key(|&(v, ty)| (info.features[v].len(), std::cmp::Reverse(ty)))
        .map_or(mine, |(_, ty)| ty)
}

/// The error of a named spawn onto type `ty`, which runs no variant of `name`: what
/// each variant lacks there.
fn no_variant(shared: &Shared, name: &str, info: &NameInfo, ty: usize) -> SpawnError {
    let have = shared.types[ty].features;
    SpawnError::NoRunnableVariant {
        name: name.to_string(),
        core_type: shared.types[ty].name.clone(),
        variants: info
            .variants
            .iter()
            .zip(&info.features)
            .map(|(v, f)| match v.features() {
                Ok(_) => format!("{} lacks {}", v.variant(), have.missing(*f)),
                Err(u) => format!("{} needs unknown feature '{u}'", v.variant()),
            })
            .collect(),
    }
}
