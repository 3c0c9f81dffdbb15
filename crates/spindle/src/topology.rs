//! CPUs and CPU features: what the machine offers, and pinning an OS thread to a CPU.
//!
//! Core types name a CPU set and a CPU-feature set. Both are checked against this
//! machine when a runtime is built: a CPU the process may not run on, or a feature
//! the CPU lacks, is a configuration error rather than a surprise at run time.

/// Name of the core type of a runtime configured without types.
pub const DEFAULT_TYPE: &str = "default";

/// The name of the service core's type (the hypercore); reserved.
pub const SERVICE_TYPE: &str = "service";

use std::io;

/// The CPUs the calling OS thread may run on, ascending (its affinity mask). Falls
/// back to `0..available_parallelism` if the kernel does not say.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is a plain bit array, for which all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; `set` is a writable cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        return (0..n).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE, the number of bits in a `cpu_set_t`.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Pins the calling OS thread to `cpu`.
pub(crate) fn pin_current(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Confines the calling OS thread to the CPUs in `cpus` (an unpinned core of a type).
pub(crate) fn confine_current(cpus: &[usize]) -> io::Result<()> {
    confine(0, cpus)
}

/// Confines OS thread `tid` of this process (0: the calling one) to the CPUs in
/// `cpus`.
pub(crate) fn confine(tid: i32, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: `cpu` is below CPU_SETSIZE (filtered).
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `tid` names a thread (0: the calling one); `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The CPU the calling OS thread is running on right now, if the kernel says.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu has no preconditions.
    let c = unsafe { libc::sched_getcpu() };
    usize::try_from(c).ok()
}

/// Declares [`FEATURES`] and the detection of each entry from one list, so the two
/// cannot drift apart.
macro_rules! feature_list {
    ($($name:tt),* $(,)?) => {
        /// Every CPU-feature name a core type may have or a named thread may require,
        /// in bit order: feature `FEATURES[i]` is bit `i` of a [`FeatureSet`].
        pub const FEATURES: [&str; [$($name),*].len()] = [$($name),*];

        #[cfg(target_arch = "x86_64")]
        fn detect_features() -> FeatureSet {
            let mut set = FeatureSet::EMPTY;
            $(
                if std::arch::is_x86_feature_detected!($name) {
                    set.0 |= 1 << feature_bit($name).expect("listed feature");
                }
            )*
            set
        }
    };
}

feature_list!(
    "sse2",
    "sse3",
    "ssse3",
    "sse4.1",
    "sse4.2",
    "popcnt",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "bmi1",
    "bmi2",
    "lzcnt",
    "movbe",
    "aes",
    "pclmulqdq",
    "sha",
    "adx",
    "rdrand",
    "rdseed",
    "xsave",
    "avx512f",
    "avx512bw",
    "avx512cd",
    "avx512dq",
    "avx512vl",
    "avx512vnni",
    "vaes",
    "vpclmulqdq",
    "gfni",
);

/// Features that imply others (as `rustc`'s target features do): having the first
/// means having the second.
const IMPLIES: &[(&str, &str)] = &[
    ("sse3", "sse2"),
    ("ssse3", "sse3"),
    ("sse4.1", "ssse3"),
    ("sse4.2", "sse4.1"),
    ("avx", "sse4.2"),
    ("avx2", "avx"),
    ("fma", "avx"),
    ("f16c", "avx"),
    ("aes", "sse2"),
    ("pclmulqdq", "sse2"),
    ("sha", "sse2"),
    ("avx512f", "avx2"),
    ("avx512f", "fma"),
    ("avx512f", "f16c"),
    ("avx512bw", "avx512f"),
    ("avx512cd", "avx512f"),
    ("avx512dq", "avx512f"),
    ("avx512vl", "avx512f"),
    ("avx512vnni", "avx512f"),
    ("vaes", "avx2"),
    ("vaes", "aes"),
    ("vpclmulqdq", "avx"),
    ("vpclmulqdq", "pclmulqdq"),
    ("gfni", "sse2"),
];

/// A set of CPU features, one bit per entry of [`FEATURES`].
///
/// # Examples
///
/// ```
/// use spindle::topology::FeatureSet;
/// let avx512 = FeatureSet::parse(["avx512f"]).unwrap().closure();
/// assert!(avx512.contains(FeatureSet::parse(["avx2", "sse2"]).unwrap()));
/// assert_eq!(FeatureSet::parse(["warp-drive"]), Err("warp-drive".to_string()));
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FeatureSet(pub u64);

impl FeatureSet {
    /// The empty set.
    pub const EMPTY: FeatureSet = FeatureSet(0);

    /// The set of the named features.
    ///
    /// # Errors
    ///
    /// The first name that is not in [`FEATURES`].
    pub fn parse<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Result<FeatureSet, String> {
        let mut bits = 0;
        for n in names {
            let n = n.as_ref();
            let i = feature_bit(n).ok_or_else(|| n.to_string())?;
            bits |= 1 << i;
        }
        Ok(FeatureSet(bits))
    }

    /// The set plus every feature its members imply (`avx512f` brings `avx2`, `avx`,
    /// `fma`, ..., `sse2`).
    pub fn closure(self) -> FeatureSet {
        let mut bits = self.0;
        loop {
            let before = bits;
            for &(a, b) in IMPLIES {
                let (a, b) = (feature_bit(a).unwrap_or(0), feature_bit(b).unwrap_or(0));
                if bits & (1 << a) != 0 {
                    bits |= 1 << b;
                }
            }
            if bits == before {
                return FeatureSet(bits);
            }
        }
    }

    /// Whether every feature of `other` is in `self`.
    pub fn contains(self, other: FeatureSet) -> bool {
        other.0 & !self.0 == 0
    }

    /// Features of `other` missing from `self`.
    pub fn missing(self, other: FeatureSet) -> FeatureSet {
        FeatureSet(other.0 & !self.0)
    }

    /// Number of features in the set.
    pub fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the features in the set, in [`FEATURES`] order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        FEATURES
            .iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| *n)
    }
}

impl std::fmt::Debug for FeatureSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

impl std::fmt::Display for FeatureSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let names: Vec<_> = self.names().collect();
        f.write_str(&names.join("+"))
    }
}

/// The bit of a feature name in a [`FeatureSet`].
pub fn feature_bit(name: &str) -> Option<u32> {
    FEATURES.iter().position(|&f| f == name).map(|i| i as u32)
}

/// The features this CPU has (as `is_x86_feature_detected!` reports them).
pub fn machine_features() -> FeatureSet {
    static SET: std::sync::OnceLock<FeatureSet> = std::sync::OnceLock::new();
    *SET.get_or_init(detect_features)
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_features() -> FeatureSet {
    FeatureSet::EMPTY
}

#[cfg(not(target_arch = "x86_64"))]
fn hybrid_from_cpuid(_allowed: &[usize]) -> Option<Vec<(String, Vec<usize>)>> {
    None
}

/// Whether this CPU has `feature`: `Some(true/false)` for a known name, `None` for a
/// name spindle does not know.
///
/// # Examples
///
/// ```
/// assert_eq!(spindle::topology::has_feature("sse2"), Some(true));
/// assert_eq!(spindle::topology::has_feature("warp-drive"), None);
/// ```
pub fn has_feature(feature: &str) -> Option<bool> {
    let bit = feature_bit(feature)?;
    Some(machine_features().0 & (1 << bit) != 0)
}

/// The CPU-feature names spindle knows (valid in a core type's feature set).
pub fn known_features() -> impl Iterator<Item = &'static str> {
    FEATURES.iter().copied()
}

/// A class of CPUs found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedType {
    /// `"performance"` / `"efficiency"` on a hybrid machine, [`crate::DEFAULT_TYPE`]
    /// on a homogeneous one.
    pub name: String,
    /// Its CPUs, ascending.
    pub cpus: Vec<usize>,
    /// The CPU features its CPUs have.
    pub features: FeatureSet,
}

/// The core types of this machine, detected once: Intel hybrid CPUs from
/// `/sys/devices/cpu_core/cpus` and `/sys/devices/cpu_atom/cpus` (else from CPUID leaf
/// 0x1A read on each CPU), Arm big.LITTLE from `cpu_capacity`; otherwise one type with
/// every CPU. Only CPUs this process may use are listed.
///
/// # Examples
///
/// ```
/// let types = spindle::topology::detected_types();
/// assert!(!types.is_empty());
/// assert!(types.iter().all(|t| !t.cpus.is_empty()));
/// ```
pub fn detected_types() -> &'static [DetectedType] {
    static TYPES: std::sync::OnceLock<Vec<DetectedType>> = std::sync::OnceLock::new();
    TYPES.get_or_init(detect_types)
}

fn read_sys(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn detect_types() -> Vec<DetectedType> {
    let allowed = allowed_cpus();
    let features = machine_features();
    let classes = hybrid_from_sysfs(
        read_sys("/sys/devices/cpu_core/cpus").as_deref(),
        read_sys("/sys/devices/cpu_atom/cpus").as_deref(),
    )
    .or_else(|| hybrid_from_cpuid(&allowed))
    .or_else(|| {
        let caps: Vec<(usize, u32)> = allowed
            .iter()
            .filter_map(|&c| {
                let s = read_sys(&format!("/sys/devices/system/cpu/cpu{c}/cpu_capacity"))?;
                Some((c, s.trim().parse().ok()?))
            })
            .collect();
        classes_by_capacity(&caps)
    });
    let mut out: Vec<DetectedType> = classes
        .unwrap_or_default()
        .into_iter()
        .map(|(name, cpus)| DetectedType {
            name,
            cpus: cpus.into_iter().filter(|c| allowed.contains(c)).collect(),
            features,
        })
        .filter(|t| !t.cpus.is_empty())
        .collect();
    if out.len() < 2 {
        out = vec![DetectedType {
            name: DEFAULT_TYPE.to_string(),
            cpus: allowed,
            features,
        }];
    }
    out
}

/// `cpus` grouped by the last-level cache they share (L3, from
/// `/sys/devices/system/cpu/cpuN/cache/index3/shared_cpu_list`), in the order of
/// their first CPU. CPUs whose cache is not described form one group.
pub fn llc_groups(cpus: &[usize]) -> Vec<Vec<usize>> {
    group_by_cache(cpus, |c| {
        read_sys(&format!(
            "/sys/devices/system/cpu/cpu{c}/cache/index3/shared_cpu_list"
        ))
        .and_then(|s| parse_cpu_list(&s).ok())
    })
}

/// `cpus` grouped by `shares(cpu)`, the CPUs that share a cache with `cpu` (`None`
/// if unknown: those CPUs form one group together).
///
/// # Examples
///
/// ```
/// use spindle::topology::group_by_cache;
/// let l3 = |c: usize| Some(if c < 4 { vec![0, 1, 2, 3] } else { vec![4, 5, 6, 7] });
/// assert_eq!(group_by_cache(&[1, 2, 5, 6], l3), [vec![1, 2], vec![5, 6]]);
/// assert_eq!(group_by_cache(&[0, 1], |_| None), [vec![0, 1]]);
/// ```
pub fn group_by_cache(
    cpus: &[usize],
    shares: impl Fn(usize) -> Option<Vec<usize>>,
) -> Vec<Vec<usize>> {
    let mut groups: Vec<(Option<Vec<usize>>, Vec<usize>)> = Vec::new();
    for &c in cpus {
        let key = shares(c);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(c),
            None => groups.push((key, vec![c])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// Parses a Linux CPU list such as `"0-3,8,10-11\n"`.
///
/// # Errors
///
/// The part that is not a number or a range.
///
/// # Examples
///
/// ```
/// assert_eq!(spindle::topology::parse_cpu_list("0-2,8\n"), Ok(vec![0, 1, 2, 8]));
/// assert!(spindle::topology::parse_cpu_list("0-x").is_err());
/// ```
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("'{part}' is not a CPU number or range");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if b < a {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// The classes of an Intel hybrid CPU from the contents of
/// `/sys/devices/cpu_core/cpus` and `/sys/devices/cpu_atom/cpus`: `None` unless both
/// exist, parse and are non-empty.
pub fn hybrid_from_sysfs(
    core: Option<&str>,
    atom: Option<&str>,
) -> Option<Vec<(String, Vec<usize>)>> {
    let p = parse_cpu_list(core?).ok()?;
    let e = parse_cpu_list(atom?).ok()?;
    if p.is_empty() || e.is_empty() {
        return None;
    }
    Some(vec![
        ("performance".to_string(), p),
        ("efficiency".to_string(), e),
    ])
}

/// The class a CPU reports in CPUID leaf 0x1A (EAX bits 31–24): `0x40` Intel Core
/// (performance), `0x20` Intel Atom (efficiency).
pub fn class_from_leaf_1a(eax: u32) -> Option<&'static str> {
    match eax >> 24 {
        0x40 => Some("performance"),
        0x20 => Some("efficiency"),
        _ => None,
    }
}

/// Groups CPUs by the class each reports; `None` unless at least two classes appear.
pub fn group_classes(per_cpu: &[(usize, &'static str)]) -> Option<Vec<(String, Vec<usize>)>> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for &(cpu, class) in per_cpu {
        match out.iter_mut().find(|(n, _)| n == class) {
            Some((_, cpus)) => cpus.push(cpu),
            None => out.push((class.to_string(), vec![cpu])),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0).reverse());
    (out.len() > 1).then_some(out)
}

#[cfg(target_arch = "x86_64")]
fn hybrid_from_cpuid(allowed: &[usize]) -> Option<Vec<(String, Vec<usize>)>> {
    let max = std::arch::x86_64::__cpuid(0).eax;
    if max < 0x1A {
        return None;
    }
    // Leaf 7 exists (max >= 0x1A); EDX bit 15 is "hybrid".
    let hybrid = std::arch::x86_64::__cpuid_count(7, 0).edx & (1 << 15) != 0;
    if !hybrid {
        return None;
    }
    // Leaf 0x1A describes the CPU that executes it: read it pinned to each CPU.
    let allowed = allowed.to_vec();
    let per_cpu = std::thread::spawn(move || {
        allowed
            .iter()
            .filter_map(|&cpu| {
                pin_current(cpu).ok()?;
                // Leaf 0x1A exists (checked above).
                let eax = std::arch::x86_64::__cpuid_count(0x1A, 0).eax;
                Some((cpu, class_from_leaf_1a(eax)?))
            })
            .collect::<Vec<_>>()
    })
    .join()
    .ok()?;
    group_classes(&per_cpu)
}

/// The classes of an Arm big.LITTLE machine from each CPU's `cpu_capacity`: the
/// highest capacity is `performance`, the lowest `efficiency`, any others `mid-<capacity>`.
/// `None` unless at least two capacities appear.
pub fn classes_by_capacity(caps: &[(usize, u32)]) -> Option<Vec<(String, Vec<usize>)>> {
    let mut levels: Vec<u32> = caps.iter().map(|&(_, c)| c).collect();
    levels.sort_unstable_by(|a, b| b.cmp(a));
    levels.dedup();
    if levels.len() < 2 {
        return None;
    }
    let last = levels.len() - 1;
    Some(
        levels
            .iter()
            .enumerate()
            .map(|(i, &cap)| {
                let name = match i {
                    0 => "performance".to_string(),
                    i if i == last => "efficiency".to_string(),
                    _ => format!("mid-{cap}"),
                };
                let cpus = caps
                    .iter()
                    .filter(|&&(_, c)| c == cap)
                    .map(|&(cpu, _)| cpu)
                    .collect();
                (name, cpus)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_cpus_are_sorted_and_include_the_current_one() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        assert!(cpus.is_sorted());
        if let Some(c) = current_cpu() {
            assert!(cpus.contains(&c), "running on {c}, allowed {cpus:?}");
        }
    }

    #[test]
    fn pinning_moves_the_thread() {
        let cpus = allowed_cpus();
        let last = *cpus.last().unwrap();
        std::thread::spawn(move || {
            pin_current(last).unwrap();
            assert_eq!(current_cpu(), Some(last));
            assert!(pin_current(usize::MAX).is_err());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn features() {
        assert!(known_features().any(|f| f == "avx2"));
        assert_eq!(has_feature("nope"), None);
        assert!(FEATURES.len() <= 64);
        for (a, b) in IMPLIES {
            assert!(
                feature_bit(a).is_some() && feature_bit(b).is_some(),
                "{a} {b}"
            );
        }
        // The machine's set is closed under implication (a real CPU has what it implies).
        let m = machine_features();
        assert_eq!(m.closure(), m);
    }

    #[test]
    fn closure_follows_implications() {
        let s = FeatureSet::parse(["avx512f"]).unwrap().closure();
        for f in ["avx2", "avx", "fma", "sse4.2", "sse2"] {
            assert!(s.names().any(|n| n == f), "{f} missing from {s}");
        }
        assert!(!s.names().any(|n| n == "avx512bw"));
        assert_eq!(FeatureSet::EMPTY.closure(), FeatureSet::EMPTY);
        assert_eq!(FeatureSet::EMPTY.to_string(), "-");
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n"),
            Ok(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list(""), Ok(vec![]));
        assert_eq!(parse_cpu_list("5"), Ok(vec![5]));
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
    }

    #[test]
    fn intel_hybrid_from_sysfs_fixtures() {
        // An i7-12700: 8 P-cores with hyperthreads (0-15), 4 E-cores (16-19).
        let t = hybrid_from_sysfs(Some("0-15\n"), Some("16-19\n")).unwrap();
        assert_eq!(t[0], ("performance".to_string(), (0..16).collect()));
        assert_eq!(t[1], ("efficiency".to_string(), (16..20).collect()));
        // A homogeneous machine has neither file.
        assert_eq!(hybrid_from_sysfs(None, None), None);
        assert_eq!(hybrid_from_sysfs(Some("0-3"), None), None);
        assert_eq!(hybrid_from_sysfs(Some("0-3"), Some("")), None);
    }

    #[test]
    fn intel_leaf_1a_classes() {
        assert_eq!(class_from_leaf_1a(0x4000_0001), Some("performance"));
        assert_eq!(class_from_leaf_1a(0x2000_0001), Some("efficiency"));
        assert_eq!(class_from_leaf_1a(0), None);
        let per_cpu = [(0, "performance"), (1, "performance"), (2, "efficiency")];
        let g = group_classes(&per_cpu).unwrap();
        assert_eq!(g[0], ("performance".to_string(), vec![0, 1]));
        assert_eq!(g[1], ("efficiency".to_string(), vec![2]));
        assert_eq!(
            group_classes(&[(0, "performance"), (1, "performance")]),
            None
        );
    }

    #[test]
    fn arm_capacity_fixtures() {
        // A Snapdragon-like 1 + 3 + 4 layout.
        let caps = [
            (0, 325),
            (1, 325),
            (2, 325),
            (3, 325),
            (4, 829),
            (5, 829),
            (6, 829),
            (7, 1024),
        ];
        let t = classes_by_capacity(&caps).unwrap();
        assert_eq!(t[0], ("performance".to_string(), vec![7]));
        assert_eq!(t[1], ("mid-829".to_string(), vec![4, 5, 6]));
        assert_eq!(t[2], ("efficiency".to_string(), vec![0, 1, 2, 3]));
        assert_eq!(classes_by_capacity(&[(0, 1024), (1, 1024)]), None);
        assert_eq!(classes_by_capacity(&[]), None);
    }

    #[test]
    fn this_machine_has_types() {
        let types = detected_types();
        assert!(!types.is_empty());
        let all: Vec<usize> = types.iter().flat_map(|t| t.cpus.clone()).collect();
        assert!(all.iter().all(|c| allowed_cpus().contains(c)));
    }
}
