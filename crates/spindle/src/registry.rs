//! The registry of named threads: the link-time table of `#[spindle::thread]`
//! variants, its index by name, its check against a runtime's core types, and the
//! variant each type runs (published as `spindle::names`; see there).

use std::any::TypeId;
use std::fmt;
use std::sync::OnceLock;

use crate::topology::FeatureSet;

#[doc(hidden)]
#[linkme::distributed_slice]
pub static THREADS: [Entry];

/// One variant of a named thread, as `#[spindle::thread]` registers it.
pub struct Entry {
    name: &'static str,
    variant: &'static str,
    requires: &'static [&'static str],
    arg_type: fn() -> TypeId,
    arg_name: fn() -> &'static str,
    ret_type: fn() -> TypeId,
    ret_name: fn() -> &'static str,
    call: unsafe fn(*mut u8, *mut u8),
    file: &'static str,
    line: u32,
}

impl Entry {
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub const fn new(
        name: &'static str,
        variant: &'static str,
        requires: &'static [&'static str],
        arg_type: fn() -> TypeId,
        arg_name: fn() -> &'static str,
        ret_type: fn() -> TypeId,
        ret_name: fn() -> &'static str,
        call: unsafe fn(*mut u8, *mut u8),
        file: &'static str,
        line: u32,
    ) -> Entry {
        Entry {
            name,
            variant,
            requires,
            arg_type,
            arg_name,
            ret_type,
            ret_name,
            call,
            file,
            line,
        }
    }

    /// The thread's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The variant's name (`"generic"`, `"avx2"`, ...).
    pub fn variant(&self) -> &'static str {
        self.variant
    }

    /// The CPU-feature names the variant requires, as declared.
    pub fn requires(&self) -> &'static [&'static str] {
        self.requires
    }

    /// The required features with everything they imply, or the first unknown name.
    pub fn features(&self) -> Result<FeatureSet, String> {
        FeatureSet::parse(self.requires).map(FeatureSet::closure)
    }

    /// The argument type's name.
    pub fn arg_type(&self) -> &'static str {
        (self.arg_name)()
    }

    /// The return type's name.
    pub fn return_type(&self) -> &'static str {
        (self.ret_name)()
    }

    /// Where the function is defined (`file:line`).
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    pub(crate) fn arg_type_id(&self) -> TypeId {
        (self.arg_type)()
    }

    pub(crate) fn ret_type_id(&self) -> TypeId {
        (self.ret_type)()
    }

    /// The erased entry point: reads an `A` from `arg` (moving it out), runs the
    /// function, writes the `R` to `out`.
    pub(crate) fn call(&self) -> unsafe fn(*mut u8, *mut u8) {
        self.call
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("variant", &self.variant)
            .field("requires", &self.requires)
            .field("arg", &self.arg_type())
            .field("ret", &self.return_type())
            .field("at", &self.location())
            .finish()
    }
}

/// Every entry of the static thread table, in link order.
///
/// # Examples
///
/// ```
/// #[spindle::thread(name = "double", variant = "generic")]
/// fn double(x: u64) -> u64 {
///     x * 2
/// }
///
/// let e = spindle::names::table().iter().find(|e| e.name() == "double").unwrap();
/// assert_eq!((e.variant(), e.arg_type(), e.return_type()), ("generic", "u64", "u64"));
/// ```
pub fn table() -> &'static [Entry] {
    &THREADS
}

/// The variant among `variants` (implied feature sets) to run on a core type with
/// features `have`: the most specific one (largest implied set) that `have` contains;
/// the first such on ties. `None` if none is runnable.
///
/// Pure: the property tests check it against random feature sets.
///
/// # Examples
///
/// ```
/// use spindle::names::choose;
/// use spindle::topology::FeatureSet;
/// let f = |n: &[&str]| FeatureSet::parse(n).unwrap().closure();
/// let variants = [f(&[]), f(&["avx2"]), f(&["avx512f"])];
/// assert_eq!(choose(&variants, f(&["avx512f"])), Some(2));
/// assert_eq!(choose(&variants, f(&["avx2", "fma"])), Some(1));
/// assert_eq!(choose(&variants, f(&["sse2"])), Some(0));
/// assert_eq!(choose(&variants[1..], f(&["sse2"])), None);
/// ```
pub fn choose(variants: &[FeatureSet], have: FeatureSet) -> Option<usize> {
    let mut best: Option<(u32, usize)> = None;
    for (i, v) in variants.iter().enumerate() {
        if have.contains(*v) && best.is_none_or(|(len, _)| v.len() > len) {
            best = Some((v.len(), i));
        }
    }
    best.map(|(_, i)| i)
}

/// One name of the table with its variants.
pub(crate) struct NameInfo {
    pub(crate) name: &'static str,
    pub(crate) variants: Vec<&'static Entry>,
    /// Implied feature sets of the variants (all bits for an unknown feature, so no
    /// type can run it; such a table never passes validation anyway).
    pub(crate) features: Vec<FeatureSet>,
}

/// The table, indexed by name (sorted, for binary search).
pub(crate) struct Index {
    pub(crate) names: Vec<NameInfo>,
}

impl Index {
    fn build(entries: &'static [Entry]) -> Index {
        let mut names: Vec<NameInfo> = Vec::new();
        let mut sorted: Vec<&'static Entry> = entries.iter().collect();
        sorted.sort_by_key(|e| (e.name, e.variant));
        for e in sorted {
            if names.last().is_none_or(|n| n.name != e.name) {
                names.push(NameInfo {
                    name: e.name,
                    variants: Vec::new(),
                    features: Vec::new(),
                });
            }
            let n = names.last_mut().expect("pushed above");
            n.variants.push(e);
            n.features
                .push(e.features().unwrap_or(FeatureSet(u64::MAX)));
        }
        Index { names }
    }

    /// The index of `name`.
    #[inline]
    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        self.names.binary_search_by(|n| n.name.cmp(name)).ok()
    }

    /// Every name, for error messages.
    pub(crate) fn all_names(&self) -> Vec<&'static str> {
        self.names.iter().map(|n| n.name).collect()
    }
}

/// The process's table, indexed once.
pub(crate) fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| Index::build(table()))
}

/// Why a runtime refused the thread table. Every list names every offender.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableError {
    /// `(name, variant, locations)` registered more than once.
    pub duplicates: Vec<(String, String, Vec<String>)>,
    /// `(name, variant, feature)` whose required feature spindle does not know.
    pub unknown_features: Vec<(String, String, String)>,
    /// `(name, variant, types)`: variants of one name whose argument or return types
    /// differ from the first variant's (`types` shows both).
    pub mismatched_types: Vec<(String, String, String)>,
    /// `(name, variants with their features)` that no configured core type can run.
    pub unrunnable: Vec<(String, Vec<String>)>,
}

impl TableError {
    fn is_empty(&self) -> bool {
        self.duplicates.is_empty()
            && self.unknown_features.is_empty()
            && self.mismatched_types.is_empty()
            && self.unrunnable.is_empty()
    }
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the named-thread table is invalid:")?;
        for (name, variant, at) in &self.duplicates {
            writeln!(
                f,
                "  - thread '{name}' variant '{variant}' is defined {} times ({}): keep one \
                 #[spindle::thread] per (name, variant)",
                at.len(),
                at.join(", ")
            )?;
        }
        for (name, variant, feature) in &self.unknown_features {
            writeln!(
                f,
                "  - thread '{name}' variant '{variant}' requires '{feature}', which spindle \
                 does not know: use names from spindle::topology::FEATURES (or \
                 requires = \"...\")"
            )?;
        }
        for (name, variant, types) in &self.mismatched_types {
            writeln!(
                f,
                "  - thread '{name}' variant '{variant}' has a different signature ({types}): \
                 every variant of a name takes and returns the same types"
            )?;
        }
        for (name, variants) in &self.unrunnable {
            writeln!(
                f,
                "  - no configured core type can run any variant of thread '{name}' ({}): add \
                 a `generic` variant or a core type with those features",
                variants.join(", ")
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for TableError {}

/// Sentinel of [`Choices`]: no variant runs on that type.
const NONE: u16 = u16::MAX;

/// Per name (index order) and per core type: the index of the variant to run.
pub(crate) struct Choices(Vec<Vec<u16>>);

impl Choices {
    #[inline]
    pub(crate) fn get(&self, name: usize, ty: usize) -> Option<usize> {
        let v = *self.0.get(name)?.get(ty)?;
        (v != NONE).then_some(v as usize)
    }
}

/// Checks the table against the core types' feature sets and computes the choices.
/// Variants no configured type can run are reported as `tracing` warnings.
pub(crate) fn validate(types: &[(String, FeatureSet)]) -> Result<Choices, TableError> {
    validate_index(index(), types)
}

fn validate_index(index: &Index, types: &[(String, FeatureSet)]) -> Result<Choices, TableError> {
    let mut err = TableError::default();
    let mut choices = Vec::with_capacity(index.names.len());
    for n in &index.names {
        let first = n.variants[0];
        let mut i = 0;
        while i < n.variants.len() {
            let v = n.variants[i];
            let same = n.variants[i..]
                .iter()
                .take_while(|w| w.variant == v.variant)
                .count();
            if same > 1 {
                err.duplicates.push((
                    n.name.to_string(),
                    v.variant.to_string(),
                    n.variants[i..i + same]
                        .iter()
                        .map(|w| w.location())
                        .collect(),
                ));
            }
            if let Err(f) = v.features() {
                err.unknown_features
                    .push((n.name.to_string(), v.variant.to_string(), f));
            }
            if v.arg_type_id() != first.arg_type_id() || v.ret_type_id() != first.ret_type_id() {
                err.mismatched_types.push((
                    n.name.to_string(),
                    v.variant.to_string(),
                    format!(
                        "fn({}) -> {} against fn({}) -> {} of variant '{}'",
                        v.arg_type(),
                        v.return_type(),
                        first.arg_type(),
                        first.return_type(),
                        first.variant
                    ),
                ));
            }
            i += same;
        }
        let per_type: Vec<u16> = types
            .iter()
            .map(|(_, have)| choose(&n.features, *have).map_or(NONE, |i| i as u16))
            .collect();
        if per_type.iter().all(|&c| c == NONE) {
            err.unrunnable.push((
                n.name.to_string(),
                n.variants
                    .iter()
                    .zip(&n.features)
                    .map(|(v, f)| match v.features() {
                        Ok(_) => format!("{} needs {f}", v.variant),
                        Err(u) => format!("{} needs unknown feature '{u}'", v.variant),
                    })
                    .collect(),
            ));
        } else {
            for (v, f) in n.variants.iter().zip(&n.features) {
                if !types.iter().any(|(_, have)| have.contains(*f)) {
                    tracing::warn!(
                        thread = n.name,
                        variant = v.variant,
                        "no configured core type has the features of this variant ({f}); it \
                         will not run in this runtime"
                    );
                }
            }
        }
        choices.push(per_type);
    }
    if err.is_empty() {
        Ok(Choices(choices))
    } else {
        Err(err)
    }
}

/// Runs a named thread's function on an erased argument (the macro's glue).
///
/// # Safety
///
/// `arg` points to a valid `A` that is moved out here (the caller never drops it);
/// `out` points to room for an `R`, written here unless `f` panics.
#[doc(hidden)]
#[inline(always)]
pub unsafe fn call_erased<A, R>(arg: *mut u8, out: *mut u8, f: impl FnOnce(A) -> R) {
    // SAFETY: per the contract.
    unsafe {
        let a = arg.cast::<A>().read();
        out.cast::<R>().write(f(a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a() -> TypeId {
        TypeId::of::<u32>()
    }
    fn an() -> &'static str {
        "u32"
    }
    fn b() -> TypeId {
        TypeId::of::<u64>()
    }
    fn bn() -> &'static str {
        "u64"
    }
    /// # Safety
    ///
    /// None: a test stub that touches nothing.
    unsafe fn nop(_: *mut u8, _: *mut u8) {}

    const fn e(name: &'static str, variant: &'static str, req: &'static [&'static str]) -> Entry {
        Entry::new(name, variant, req, a, an, a, an, nop, "x.rs", 1)
    }

    static GOOD: [Entry; 4] = [
        e("dot", "generic", &[]),
        e("dot", "avx2", &["avx2"]),
        e("dot", "avx512f", &["avx512f"]),
        e("fft", "avx512f", &["avx512f"]),
    ];

    fn set(n: &[&str]) -> FeatureSet {
        FeatureSet::parse(n).unwrap().closure()
    }

    #[test]
    fn choices_per_type() {
        let idx = Index::build(&GOOD);
        assert_eq!(idx.all_names(), ["dot", "fft"]);
        let types = [
            ("big".to_string(), set(&["avx512f"])),
            ("lite".to_string(), set(&["avx2"])),
        ];
        let c = validate_index(&idx, &types).unwrap();
        let dot = idx.find("dot").unwrap();
        let v = |ty| idx.names[dot].variants[c.get(dot, ty).unwrap()].variant;
        assert_eq!((v(0), v(1)), ("avx512f", "avx2"));
        let fft = idx.find("fft").unwrap();
        assert_eq!(c.get(fft, 1), None);
        assert!(idx.find("nope").is_none());
    }

    static BAD: [Entry; 6] = [
        e("dot", "generic", &[]),
        e("dot", "generic", &[]),
        e("fft", "avx512f", &["avx512f"]),
        e("fft", "x", &["warp-drive"]),
        Entry::new("mix", "generic", &[], a, an, b, bn, nop, "y.rs", 2),
        e("mix", "avx2", &["avx2"]),
    ];

    #[test]
    fn every_offender_is_listed() {
        let idx = Index::build(&BAD);
        let types = [("lite".to_string(), set(&["avx2"]))];
        let Err(err) = validate_index(&idx, &types) else {
            panic!("bad table accepted");
        };
        assert_eq!(err.duplicates.len(), 1);
        assert_eq!(err.duplicates[0].2.len(), 2);
        assert_eq!(err.unknown_features[0].2, "warp-drive");
        assert_eq!(err.mismatched_types.len(), 1);
        assert_eq!(err.unrunnable.len(), 1);
        assert_eq!(err.unrunnable[0].0, "fft");
        let msg = err.to_string();
        for needle in [
            "defined 2 times",
            "warp-drive",
            "signature",
            "'fft'",
            "generic",
        ] {
            assert!(msg.contains(needle), "{needle} missing from {msg}");
        }
    }
}
