//! Which code a preemption may interrupt.
//!
//! The standard library keeps locks that belong to the OS thread: stdout's and
//! stderr's reentrant locks, the environment's `RwLock`, a `Once` being run,
//! thread-locals being borrowed. A spindle thread preempted while it holds one would
//! hand it to the next thread of its core: a reentrant lock lets that thread in (two
//! threads write into one line, or "already borrowed"), a plain one blocks the core's
//! OS thread for good. So a preemptible thread is only preempted where it holds none:
//!
//! 1. the signal handler refuses when the interrupted instruction lies in a function
//!    of `std` ([`Kind::Std`]), found from the executable's symbol table once;
//! 2. the trampoline then walks the interrupted thread's frames (with the unwinder,
//!    from a normal context, the trampoline's CFI leading into the interrupted frame)
//!    up to where the thread's own closure starts, and gives up if any frame is a
//!    function of `std`: user code called back by std with a lock held — a `Display`
//!    that `println!` formats, a closure `Once` or a thread-local's `with` runs — is
//!    not interrupted either. `catch_unwind`'s frames ([`Kind::StdCatch`]) hold
//!    nothing.
//!
//! `core` and `alloc` keep no state of the OS thread (allocation locks live in libc,
//! whose code is never interrupted), and spindle's own critical sections raise the
//! preempt count; their generic functions are also where user code gets inlined
//! (iterator adapters, the closure a thread runs), so counting them would stop the
//! preemption of ordinary loops.
//!
//! A refused preemption leaves the reschedule flag set: the thread yields at its next
//! runtime call, or is preempted at a later tick. An executable without a symbol
//! table (stripped) has no map: its preemptible threads are then preempted at runtime
//! calls only, and stderr says so once.
//!
//! The map is built from the ELF section headers of `/proc/self/exe` (mapped, not
//! read), sorted, and leaked: the signal handler searches it without allocating or
//! locking.

use std::ffi::{c_int, c_void};
use std::sync::Once;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// What a function of the executable belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// Anything else (the program, `core`, `alloc`, spindle, other dependencies).
    Other,
    /// `std`: not interrupted, and a frame of it on the stack may hold a lock.
    Std,
    /// `std`'s `catch_unwind` machinery: holds nothing.
    StdCatch,
}

/// One run of functions of one kind: `[start, end)`, absolute addresses.
#[derive(Clone, Copy, Debug)]
struct Range {
    start: usize,
    end: usize,
    kind: Kind,
}

/// The sorted ranges, leaked once built (null until then).
static RANGES: AtomicPtr<Range> = AtomicPtr::new(std::ptr::null_mut());
static RANGES_LEN: AtomicUsize = AtomicUsize::new(0);
static BUILD: Once = Once::new();

/// Builds the map, once per process (before the first preemptible thread runs).
/// Returns whether there is one.
pub(crate) fn ensure() -> bool {
    BUILD.call_once(|| match build() {
        Some(ranges) if !ranges.is_empty() => {
            let len = ranges.len();
            let p = Box::leak(ranges.into_boxed_slice()).as_mut_ptr();
            RANGES_LEN.store(len, Ordering::Relaxed);
            // Release: the ranges are written before the handler may see the pointer.
            RANGES.store(p, Ordering::Release);
        }
        _ => eprintln!(
            "spindle: the executable has no symbol table (was it stripped?): preemptible \
             threads are preempted at their runtime calls only, never asynchronously"
        ),
    });
    available()
}

/// Whether the map exists. Async-signal-safe.
#[inline]
pub(crate) fn available() -> bool {
    !RANGES.load(Ordering::Acquire).is_null()
}

/// The kind of the function containing `ip`. Async-signal-safe: a binary search in
/// leaked, read-only memory.
pub(crate) fn kind_of(ip: usize) -> Kind {
    let p = RANGES.load(Ordering::Acquire);
    if p.is_null() {
        return Kind::Other;
    }
    // SAFETY: `p` and the length were leaked together by `ensure` and are never freed or written again.
    let ranges = unsafe { std::slice::from_raw_parts(p, RANGES_LEN.load(Ordering::Relaxed)) };
    let i = ranges.partition_point(|r| r.start <= ip);
    match i.checked_sub(1).map(|i| ranges[i]) {
        Some(r) if ip < r.end => r.kind,
        _ => Kind::Other,
    }
}

/// The crate a mangled symbol's path starts in (legacy `_ZN` or v0 `_R` mangling), if
/// it can tell.
fn crate_of(sym: &[u8]) -> Option<&[u8]> {
    if let Some(rest) = sym.strip_prefix(b"_ZN") {
        let (first, _) = legacy_ident(rest)?;
        // `<T as Trait>::f`: the impl belongs where `T`'s path starts.
        let Some(inner) = first.strip_prefix(b"_$LT$") else {
            return Some(first);
        };
        let mut inner = inner;
        for prefix in [&b"$RF$"[..], b"$BP$", b"mut$u20$", b"dyn$u20$", b"$u5b$"] {
            while let Some(r) = inner.strip_prefix(prefix) {
                inner = r;
            }
        }
        // The crate is the path's first segment: up to `..` (or `$`, where a type
        // with no path, like a generic `T`, ends).
        let end = inner
            .iter()
            .position(|&b| b == b'.' || b == b'$')
            .unwrap_or(inner.len());
        return Some(&inner[..end]);
    }
    let rest = sym.strip_prefix(b"_R")?;
    v0_crate(rest)
}

/// The first identifier of a legacy path (`<len><ident>`), and what follows.
fn legacy_ident(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let len: usize = std::str::from_utf8(&s[..digits]).ok()?.parse().ok()?;
    let body = s.get(digits..digits + len)?;
    Some((body, &s[digits + len..]))
}

/// The crate root of a v0 path: follows nested, impl and instantiated paths to the
/// first `C` (crate root) and reads its name.
fn v0_crate(mut s: &[u8]) -> Option<&[u8]> {
    // An optional encoding version (decimal) precedes the path.
    while s.first().is_some_and(u8::is_ascii_digit) {
        s = &s[1..];
    }
    loop {
        match *s.first()? {
            // Nested path: `N <namespace> <path> <ident>`.
            b'N' => s = s.get(2..)?,
            // Inherent impl `M <impl-path> <type>`, trait impl `X <impl-path> ...`: an
            // impl-path is `[disambiguator] <path>`.
            b'M' | b'X' => {
                s = &s[1..];
                s = skip_disambiguator(s);
            }
            // Generic arguments `I <path> ...`.
            b'I' => s = &s[1..],
            // Crate root: `C [disambiguator] <ident>`.
            b'C' => {
                let rest = skip_disambiguator(&s[1..]);
                let (ident, _) = legacy_ident(rest)?;
                // v0 identifiers may carry a `_` separator before the bytes.
                return Some(ident.strip_prefix(b"_").unwrap_or(ident));
            }
            _ => return None,
        }
    }
}

/// Skips a v0 disambiguator `s <base62> _`.
fn skip_disambiguator(s: &[u8]) -> &[u8] {
    match s.strip_prefix(b"s") {
        Some(r) => match r.iter().position(|&b| b == b'_') {
            Some(i) => &r[i + 1..],
            None => s,
        },
        None => s,
    }
}

/// The kind of a function from its mangled name.
fn classify(sym: &[u8]) -> Kind {
    let Some(krate) = crate_of(sym) else {
        return Kind::Other;
    };
    match krate {
        b"std" => {
            // std::panicking::catch_unwind (and its do_call), std::panic::catch_unwind.
            let catch = contains(sym, b"catch_unwind") || contains(sym, b"9panicking3try");
            if catch { Kind::StdCatch } else { Kind::Std }
        }
        _ => Kind::Other,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// ELF constants (not all in `libc`).
const SHT_SYMTAB: u32 = 2;
const STT_FUNC: u8 = 2;

/// Reads the function symbols of the running executable into sorted, merged ranges.
fn build() -> Option<Vec<Range>> {
    let base = load_base();
    let file = std::fs::File::open("/proc/self/exe").ok()?;
    let len = file.metadata().ok()?.len() as usize;
    let map = Mapped::new(&file, len)?;
    let data = map.bytes();
    let ehdr: libc::Elf64_Ehdr = read(data, 0)?;
    let sections: Vec<libc::Elf64_Shdr> = (0..ehdr.e_shnum as usize)
        .map(|i| read(data, ehdr.e_shoff as usize + i * ehdr.e_shentsize as usize))
        .collect::<Option<_>>()?;
    let symtab = sections.iter().find(|s| s.sh_type == SHT_SYMTAB)?;
    let strtab = sections.get(symtab.sh_link as usize)?;
    let strs = data.get(strtab.sh_offset as usize..(strtab.sh_offset + strtab.sh_size) as usize)?;
    let count = symtab.sh_size as usize / std::mem::size_of::<libc::Elf64_Sym>();
    let mut ranges = Vec::new();
    for i in 0..count {
        let sym: libc::Elf64_Sym = read(
            data,
            symtab.sh_offset as usize + i * std::mem::size_of::<libc::Elf64_Sym>(),
        )?;
        if sym.st_info & 0xf != STT_FUNC || sym.st_size == 0 || sym.st_value == 0 {
            continue;
        }
        let name = strs.get(sym.st_name as usize..)?;
        let name = &name[..name.iter().position(|&b| b == 0)?];
        let kind = classify(name);
        if kind == Kind::Other {
            continue;
        }
        let start = base + sym.st_value as usize;
        ranges.push(Range {
            start,
            end: start + sym.st_size as usize,
            kind,
        });
    }
    ranges.sort_unstable_by_key(|r| r.start);
    // Merge touching runs of one kind; the search needs disjoint ranges.
    let mut merged: Vec<Range> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(m) if m.kind == r.kind && r.start <= m.end => m.end = m.end.max(r.end),
            Some(m) if r.start < m.end => {
                // Overlapping functions of different kinds (aliases): keep the first.
                if r.end > m.end {
                    let start = m.end;
                    merged.push(Range { start, ..r });
                }
            }
            _ => merged.push(r),
        }
    }
    Some(merged)
}

/// Reads a `T` at byte `off` of `data`, if it fits.
fn read<T: Copy>(data: &[u8], off: usize) -> Option<T> {
    let bytes = data.get(off..off.checked_add(std::mem::size_of::<T>())?)?;
    // SAFETY: `bytes` holds size_of::<T>() bytes; the ELF structs are plain integers, valid for any bit pattern; read_unaligned copes with any alignment.
    Some(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

/// The load address of the main executable (its symbols' values are relative to it).
fn load_base() -> usize {
    /// The `dl_iterate_phdr` callback: records the first object's base and stops.
    ///
    /// # Safety
    ///
    /// Called by the loader with a valid `dl_phdr_info` and our `usize` as `data`.
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: per the contract.
        unsafe { *data.cast::<usize>() = (*info).dlpi_addr as usize };
        1
    }
    let mut base = 0usize;
    // SAFETY: `first` matches the callback type and writes only our local.
    unsafe { libc::dl_iterate_phdr(Some(first), (&raw mut base).cast()) };
    base
}

/// A read-only mapping of a file.
struct Mapped {
    p: *mut c_void,
    len: usize,
}

impl Mapped {
    fn new(file: &std::fs::File, len: usize) -> Option<Mapped> {
        use std::os::fd::AsRawFd;
        if len == 0 {
            return None;
        }
        // SAFETY: a private read-only mapping of a file we hold open; nothing else maps it for writing through us.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        (p != libc::MAP_FAILED).then_some(Mapped { p, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping covers `len` readable bytes and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.p.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once.
        unsafe { libc::munmap(self.p, self.len) };
    }
}

// ---------------------------------------------------------------------------------
// The frame walk.

type UnwindContext = c_void;
/// `_URC_NO_REASON`: go on with the next frame.
const URC_NO_REASON: c_int = 0;
/// `_URC_NORMAL_STOP`: stop the walk.
const URC_NORMAL_STOP: c_int = 4;

unsafe extern "C" {
    fn _Unwind_Backtrace(
        trace: extern "C" fn(*mut UnwindContext, *mut c_void) -> c_int,
        arg: *mut c_void,
    ) -> c_int;
    fn _Unwind_GetIPInfo(ctx: *mut UnwindContext, ip_before_insn: *mut c_int) -> usize;
    fn _Unwind_GetCFA(ctx: *mut UnwindContext) -> usize;
}

/// The walk's state.
struct Walk {
    /// `[start, end)` of the trampoline: frames up to and including it are the
    /// runtime's own.
    trampoline: (usize, usize),
    /// Where the thread's closure starts: frames whose CFA is above belong to the
    /// runtime's entry.
    user_base: usize,
    past_trampoline: bool,
    /// A frame of `std` was found.
    std_frame: bool,
}

extern "C" fn visit(ctx: *mut UnwindContext, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Walk` that `frames_hold_no_std` passed.
    let w = unsafe { &mut *arg.cast::<Walk>() };
    let mut before = 0;
    // SAFETY: `ctx` is the unwinder's context for this frame, valid during the call.
    let (ip, cfa) = unsafe { (_Unwind_GetIPInfo(ctx, &mut before), _Unwind_GetCFA(ctx)) };
    // A return address points after its call: look up the call itself.
    let ip = if before == 0 {
        ip.saturating_sub(1)
    } else {
        ip
    };
    if !w.past_trampoline {
        w.past_trampoline = ip >= w.trampoline.0 && ip < w.trampoline.1;
        return URC_NO_REASON;
    }
    if cfa > w.user_base || ip == 0 {
        return URC_NORMAL_STOP;
    }
    if kind_of(ip) == Kind::Std {
        w.std_frame = true;
        return URC_NORMAL_STOP;
    }
    URC_NO_REASON
}

/// Whether no frame of `std` lies between the preempted instruction and the thread's
/// closure (`user_base`). Called by the trampoline's `preempted`, in a normal context
/// on the thread's stack; `trampoline` is its code range.
pub(crate) fn frames_hold_no_std(trampoline: (usize, usize), user_base: usize) -> bool {
    let mut w = Walk {
        trampoline,
        user_base,
        past_trampoline: false,
        std_frame: false,
    };
    // SAFETY: `visit` matches the callback type and reads only `w`, which outlives the call.
    unsafe { _Unwind_Backtrace(visit, (&raw mut w).cast()) };
    // A walk that never got past the trampoline learned nothing: refuse.
    w.past_trampoline && !w.std_frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crates_of_mangled_names() {
        let cases: [(&[u8], Option<&[u8]>); 8] = [
            (b"_ZN3std2io5stdio6_print17h0123456789abcdefE", Some(b"std")),
            (b"_ZN4core3fmt5write17h0123456789abcdefE", Some(b"core")),
            (
                b"_ZN60_$LT$std..io..stdio..StdoutLock$u20$as$u20$std..io..Write$GT$9write_all17h0E",
                Some(b"std"),
            ),
            (
                b"_ZN55_$LT$myapp..Slow$u20$as$u20$core..fmt..Display$GT$3fmt17h0E",
                Some(b"myapp"),
            ),
            (
                b"_ZN44_$LT$$RF$T$u20$as$u20$core..fmt..Display$GT$3fmt17h0E",
                Some(b"T"),
            ),
            (b"_RNvNtCs1234_3std2io6_print", Some(b"std")),
            (b"_RNvMs_NtCsabc_5myapp3fooNtB4_3Bar3new", Some(b"myapp")),
            (b"main", None),
        ];
        for (sym, want) in cases {
            assert_eq!(crate_of(sym), want, "{}", String::from_utf8_lossy(sym));
        }
    }

    #[test]
    fn kinds_of_mangled_names() {
        assert_eq!(classify(b"_ZN3std2io5stdio6_print17h0E"), Kind::Std);
        assert_eq!(
            classify(b"_ZN3std9panicking12catch_unwind7do_call17h0E"),
            Kind::StdCatch
        );
        assert_eq!(
            classify(b"_ZN5alloc3vec16Vec$LT$T$GT$4push17h0E"),
            Kind::Other
        );
        assert_eq!(classify(b"_ZN7spindle6thread5spawn17h0E"), Kind::Other);
        assert_eq!(classify(b"_ZN5myapp4main17h0E"), Kind::Other);
    }

    /// This test binary's functions are found: std's `stdout` is std's, spindle's own
    /// is not.
    #[test]
    fn the_map_finds_std() {
        assert!(ensure(), "the test binary has a symbol table");
        let stdout = std::io::stdout as *const () as usize;
        assert_eq!(kind_of(stdout), Kind::Std);
        let ours = crate::task::current::current_tcb as *const () as usize;
        assert_eq!(kind_of(ours), Kind::Other);
    }
}
