//! Stack overflow is reported by name, id and size; other faults keep their normal
//! behaviour. Each case runs in a child process (this test binary re-run with an
//! environment variable), since both end the process.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

const CHILD: &str = "SPINDLE_FAULT_CHILD";

fn run_child(case: &str) -> (Option<i32>, String) {
    run_child_with(case, &[])
}

fn run_child_with(case: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD, case)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.signal(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Recurses until the stack runs out (on purpose).
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    let buf = [n; 64];
    std::hint::black_box(&buf);
    recurse(n + 1) + buf[3]
}

/// The child side: does nothing unless the environment variable names a case.
#[test]
fn child_entry() {
    match std::env::var(CHILD).as_deref() {
        Ok("overflow") => spindle::run(|| {
            let h = spindle::Builder::new()
                .name("deep")
                .spawn(|| recurse(0))
                .unwrap();
            let _ = h.join();
        }),
        Ok("overflow-mprotect") => spindle::run(|| {
            // Known since the main thread's stack was made; printed before `deep`
            // exists, which may run on another core at once.
            eprintln!("guard mode: {}", spindle::guard_mode().unwrap());
            let h = spindle::Builder::new()
                .name("deep")
                .stack_size(32 << 10)
                .spawn(|| recurse(0))
                .unwrap();
            let _ = h.join();
        }),
        Ok("null") => spindle::run(|| {
            let h = spindle::spawn(|| {
                // SAFETY: deliberately invalid: this child process must die of SIGSEGV.
                unsafe { std::ptr::write_volatile(std::ptr::null_mut::<u64>(), 1) };
            });
            let _ = h.join();
        }),
        _ => {}
    }
}

#[test]
fn stack_overflow_names_the_thread_and_aborts() {
    let (sig, stderr) = run_child("overflow");
    assert_eq!(sig, Some(libc_sigabrt()), "stderr: {stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("overflowed"))
        .unwrap_or_else(|| panic!("no report: {stderr}"));
    assert!(line.starts_with("thread 'deep' (id "), "{line}");
    assert!(
        line.ends_with(") overflowed its 65536-byte stack"),
        "{line}"
    );
    let id: &str = line
        .trim_start_matches("thread 'deep' (id ")
        .split(')')
        .next()
        .unwrap();
    assert!(id.parse::<u64>().is_ok(), "id is a number: {line}");
}

#[test]
fn the_mprotect_fallback_catches_overflow_too() {
    let (sig, stderr) = run_child_with(
        "overflow-mprotect",
        &[(spindle::stack::GUARD_ENV, "mprotect")],
    );
    assert_eq!(sig, Some(libc_sigabrt()), "stderr: {stderr}");
    assert!(stderr.contains("guard mode: mprotect"), "{stderr}");
    assert!(
        stderr.contains(") overflowed its 32768-byte stack"),
        "{stderr}"
    );
}

#[test]
fn other_faults_keep_the_default_behaviour() {
    let (sig, stderr) = run_child("null");
    assert_eq!(sig, Some(11), "expected SIGSEGV; stderr: {stderr}");
    assert!(!stderr.contains("overflowed"), "{stderr}");
}

fn libc_sigabrt() -> i32 {
    6
}
