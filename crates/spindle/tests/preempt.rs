//! Time slices and asynchronous preemption: threads that never yield share one core,
//! a preempted thread resumes with every register intact, and threads that did not
//! opt in are never interrupted asynchronously.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use spindle::{Builder, ConfigError, Runtime, SpawnError};

/// Sets `r12`–`r15` (and `rdx`, `rsi`, `rdi`, `r8`–`r11`), every vector register and
/// the 128-byte red zone below the stack pointer to values derived from `seed`, spins
/// `iters` rounds touching only a counter, and checks every value. Returns true if
/// all held.
fn spin_and_check(seed: u64, iters: u64) -> bool {
    if std::arch::is_x86_feature_detected!("avx2") {
        spin_and_check_avx(seed, iters)
    } else {
        spin_and_check_sse(seed, iters)
    }
}

// Per vector register `i` (0-15): every 64-bit lane holds seed + 0x100 + i.
macro_rules! set_vec_avx {
    ($i:literal) => {
        concat!(
            // r11 = the value for this register.
            "lea r11, [rax + 0x100 + ",
            $i,
            "]\n",
            // Into the low lane of the xmm register.
            "movq xmm",
            $i,
            ", r11\n",
            // And into all four lanes of the ymm register.
            "vpbroadcastq ymm",
            $i,
            ", xmm",
            $i,
            "\n"
        )
    };
}

macro_rules! set_vec_sse {
    ($i:literal) => {
        concat!(
            // r11 = the value for this register.
            "lea r11, [rax + 0x100 + ",
            $i,
            "]\n",
            // Into the low lane.
            "movq xmm",
            $i,
            ", r11\n",
            // And into both lanes.
            "punpcklqdq xmm",
            $i,
            ", xmm",
            $i,
            "\n"
        )
    };
}

// Checks the two lanes of xmm register `i` against rcx = seed + 0x100 + i.
macro_rules! check_xmm {
    ($i:literal) => {
        concat!(
            // rcx = what every lane must hold.
            "lea rcx, [rax + 0x100 + ",
            $i,
            "]\n",
            // Lane 0.
            "movq r11, xmm",
            $i,
            "\n",
            // Compare.
            "cmp r11, rcx\n",
            // Mismatch: fail.
            "jne 9f\n",
            // Lane 1.
            "pextrq r11, xmm",
            $i,
            ", 1\n",
            // Compare.
            "cmp r11, rcx\n",
            // Mismatch: fail.
            "jne 9f\n"
        )
    };
}

// Checks all four lanes of ymm register `i` (destroys it).
macro_rules! check_ymm {
    ($i:literal) => {
        concat!(
            check_xmm!($i),
            // The upper half of the ymm register into its xmm half.
            "vextracti128 xmm",
            $i,
            ", ymm",
            $i,
            ", 1\n",
            // Lane 2.
            "movq r11, xmm",
            $i,
            "\n",
            // Compare.
            "cmp r11, rcx\n",
            // Mismatch: fail.
            "jne 9f\n",
            // Lane 3.
            "pextrq r11, xmm",
            $i,
            ", 1\n",
            // Compare.
            "cmp r11, rcx\n",
            // Mismatch: fail.
            "jne 9f\n"
        )
    };
}

// Red-zone word `j` (0-15), at rsp - 128 + 8 j, holds seed + 0x200 + j.
macro_rules! set_red {
    ($j:literal) => {
        concat!(
            // r11 = the value for this word.
            "lea r11, [rax + 0x200 + ",
            $j,
            "]\n",
            // Store it in the red zone below rsp.
            "mov qword ptr [rsp - 128 + 8 * ",
            $j,
            "], r11\n"
        )
    };
}

macro_rules! check_red {
    ($j:literal) => {
        concat!(
            // rcx = what the word must hold.
            "lea rcx, [rax + 0x200 + ",
            $j,
            "]\n",
            // Compare.
            "cmp qword ptr [rsp - 128 + 8 * ",
            $j,
            "], rcx\n",
            // Mismatch: fail.
            "jne 9f\n"
        )
    };
}

// General register `r` holds seed + k.
macro_rules! set_gpr {
    ($r:literal, $k:literal) => {
        concat!(
            // The register = seed + k.
            "lea ",
            $r,
            ", [rax + ",
            $k,
            "]\n"
        )
    };
}

macro_rules! check_gpr {
    ($r:literal, $k:literal) => {
        concat!(
            // rcx = what the register must hold.
            "lea rcx, [rax + ",
            $k,
            "]\n",
            // Compare.
            "cmp ",
            $r,
            ", rcx\n",
            // Mismatch: fail.
            "jne 9f\n"
        )
    };
}

macro_rules! spin_body {
    ($set_vec:ident, $check_vec:ident, $tail:literal) => {
        concat!(
            $set_vec!(0),
            $set_vec!(1),
            $set_vec!(2),
            $set_vec!(3),
            $set_vec!(4),
            $set_vec!(5),
            $set_vec!(6),
            $set_vec!(7),
            $set_vec!(8),
            $set_vec!(9),
            $set_vec!(10),
            $set_vec!(11),
            $set_vec!(12),
            $set_vec!(13),
            $set_vec!(14),
            $set_vec!(15),
            set_red!(0),
            set_red!(1),
            set_red!(2),
            set_red!(3),
            set_red!(4),
            set_red!(5),
            set_red!(6),
            set_red!(7),
            set_red!(8),
            set_red!(9),
            set_red!(10),
            set_red!(11),
            set_red!(12),
            set_red!(13),
            set_red!(14),
            set_red!(15),
            set_gpr!("rdx", 1),
            set_gpr!("rsi", 2),
            set_gpr!("rdi", 3),
            set_gpr!("r8", 4),
            set_gpr!("r9", 5),
            set_gpr!("r10", 6),
            set_gpr!("r11", 7),
            set_gpr!("r12", 8),
            set_gpr!("r13", 9),
            set_gpr!("r14", 10),
            set_gpr!("r15", 11),
            "2:\n",
            // Spin: count down (only rcx and the flags change).
            "dec rcx\n",
            // Until zero.
            "jnz 2b\n",
            check_gpr!("rdx", 1),
            check_gpr!("rsi", 2),
            check_gpr!("rdi", 3),
            check_gpr!("r8", 4),
            check_gpr!("r9", 5),
            check_gpr!("r10", 6),
            check_gpr!("r11", 7),
            check_gpr!("r12", 8),
            check_gpr!("r13", 9),
            check_gpr!("r14", 10),
            check_gpr!("r15", 11),
            check_red!(0),
            check_red!(1),
            check_red!(2),
            check_red!(3),
            check_red!(4),
            check_red!(5),
            check_red!(6),
            check_red!(7),
            check_red!(8),
            check_red!(9),
            check_red!(10),
            check_red!(11),
            check_red!(12),
            check_red!(13),
            check_red!(14),
            check_red!(15),
            $check_vec!(0),
            $check_vec!(1),
            $check_vec!(2),
            $check_vec!(3),
            $check_vec!(4),
            $check_vec!(5),
            $check_vec!(6),
            $check_vec!(7),
            $check_vec!(8),
            $check_vec!(9),
            $check_vec!(10),
            $check_vec!(11),
            $check_vec!(12),
            $check_vec!(13),
            $check_vec!(14),
            $check_vec!(15),
            // Every value held: result 0.
            "xor eax, eax\n",
            // Done.
            "jmp 8f\n",
            "9:\n",
            // A value was lost: result 1.
            "mov eax, 1\n",
            "8:\n",
            $tail
        )
    };
}

fn spin_and_check_avx(seed: u64, iters: u64) -> bool {
    let bad: u64;
    // SAFETY: the asm writes only the registers declared (the C ABI's caller-saved set, plus r12-r15) and the 128-byte red zone below rsp, which is free (no `nostack`); the machine has AVX2 (checked by the caller).
    unsafe {
        std::arch::asm!(
            // In: rax = seed, rcx = rounds. Out: rax = 0 if every value held.
            spin_body!(set_vec_avx, check_ymm, "vzeroupper\n"),
            inout("rax") seed => bad,
            inout("rcx") iters => _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
            clobber_abi("C"),
        );
    }
    bad == 0
}

fn spin_and_check_sse(seed: u64, iters: u64) -> bool {
    let bad: u64;
    // SAFETY: as for `spin_and_check_avx`, with SSE4.1 only (pextrq; every x86_64 CPU spindle supports has it).
    unsafe {
        std::arch::asm!(
            // In: rax = seed, rcx = rounds. Out: rax = 0 if every value held.
            spin_body!(set_vec_sse, check_xmm, ""),
            inout("rax") seed => bad,
            inout("rcx") iters => _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
            clobber_abi("C"),
        );
    }
    bad == 0
}

/// The tests that keep a core busy run one at a time: on a small machine, several
/// busy cores would share CPUs and the OS, not spindle, would decide the shares.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The most time-stamp-counter cycles 1,024 rounds of a tight loop take (a debug
/// build, a slow CPU): a longer gap between two looks means the thread did not run
/// in between (switched out, or its OS thread or the whole vCPU was).
const SAME_RUN_CYCLES: u64 = 1_000_000;

/// The time-stamp counter: read in user space, so the loop stays plain user code
/// that the preemption signal may interrupt (a system call would not be).
fn cycles() -> u64 {
    // SAFETY: `rdtsc` reads a counter every x86_64 CPU has; it has no preconditions.
    unsafe { std::arch::x86_64::_rdtsc() }
}

/// Rounds of `spin_and_check` in about a few milliseconds.
const ROUNDS: u64 = 4_000_000;

#[test]
fn tight_loops_on_one_core_share_it_within_2x() {
    let _serial = serial();
    let done = common::watchdog("tight_loops_on_one_core_share_it_within_2x", 60);
    let rt = Runtime::builder()
        .cores(1)
        .pin(false)
        .time_slice(Duration::from_millis(2))
        .preemptible(true)
        .build()
        .unwrap();
    let counts = rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let counters: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let hs: Vec<_> = counters
            .iter()
            .map(|c| {
                let (c, stop) = (c.clone(), stop.clone());
                Builder::new()
                    .core(0)
                    .spawn(move || {
                        // No yield, no runtime call: only the signal gets us off.
                        // Every 1,024 rounds, the cycles since the last look are
                        // ours, unless there are more than a look's worth: then we
                        // did not run in between. So the shares measure the time
                        // spindle gave each thread, not the time the host gave the
                        // core's OS thread.
                        let mut n = 0u64;
                        let mut last = cycles();
                        let mut mine = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            n = std::hint::black_box(n + 1);
                            if n.is_multiple_of(1024) {
                                let now = cycles();
                                if let Some(d) = now.checked_sub(last)
                                    && d < SAME_RUN_CYCLES
                                {
                                    mine += d;
                                    c.store(mine, Ordering::Relaxed);
                                }
                                last = now;
                            }
                        }
                    })
                    .unwrap()
            })
            .collect();
        spindle::sleep(Duration::from_millis(100));
        let before: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        spindle::sleep(Duration::from_secs(1));
        let after: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        stop.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().unwrap();
        }
        let stats = spindle::core_stats().unwrap();
        assert!(
            stats.async_preemptions > 0,
            "nothing was preempted: {stats:?}"
        );
        after
            .iter()
            .zip(&before)
            .map(|(a, b)| a - b)
            .collect::<Vec<u64>>()
    });
    let min = *counts.iter().min().unwrap();
    let max = *counts.iter().max().unwrap();
    assert!(min > 0, "a thread did not run in 1 s: {counts:?} cycles");
    assert!(
        max <= 2 * min,
        "run-time shares differ by more than 2x over 1 s: {counts:?} cycles"
    );
    done.store(true, Ordering::Relaxed);
}

#[test]
fn preempted_threads_resume_with_every_register_intact() {
    let _serial = serial();
    let done = common::watchdog("preempted_threads_resume_with_every_register_intact", 120);
    let rt = Runtime::builder()
        .cores(1)
        .tick(Duration::from_micros(250))
        .time_slice(Duration::from_micros(250))
        .build()
        .unwrap();
    let (preemptions, ok) = rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let hs: Vec<_> = (0..3u64)
            .map(|t| {
                let stop = stop.clone();
                Builder::new()
                    .core(0)
                    .preemptible(true)
                    .spawn(move || {
                        let mut rounds = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            // A distinct seed per thread and round: a register
                            // restored from another thread or round shows.
                            let seed = (t << 40) | (rounds << 12);
                            if !spin_and_check(seed, ROUNDS) {
                                return Err(format!(
                                    "thread {t} lost a register in round {rounds}"
                                ));
                            }
                            rounds += 1;
                        }
                        Ok(rounds)
                    })
                    .unwrap()
            })
            .collect();
        let start = std::time::Instant::now();
        let mut preemptions = 0;
        while start.elapsed() < Duration::from_secs(30) {
            spindle::sleep(Duration::from_millis(100));
            preemptions = spindle::core_stats().unwrap().async_preemptions;
            if preemptions >= 3000 {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let ok: Vec<Result<u64, String>> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        (preemptions, ok)
    });
    for r in &ok {
        assert!(r.is_ok(), "{r:?}");
    }
    assert!(
        preemptions >= 1000,
        "only {preemptions} preemptions in 30 s"
    );
    done.store(true, Ordering::Relaxed);
}

#[test]
fn threads_that_did_not_opt_in_are_never_interrupted_asynchronously() {
    let _serial = serial();
    let done = common::watchdog("threads_that_did_not_opt_in", 60);
    let rt = Runtime::builder()
        .cores(1)
        .time_slice(Duration::from_millis(1))
        .watchdog_slices(1000)
        .build()
        .unwrap();
    rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        // A preemptible spinner keeps the core contended, so the tick flags whoever
        // runs, and shows preemption works here.
        let s = stop.clone();
        let spinner = Builder::new()
            .core(0)
            .preemptible(true)
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
            .unwrap();
        let plain = Builder::new()
            .core(0)
            .spawn(|| {
                let before = spindle::core_stats().unwrap();
                // 300 ms without a runtime call: far over the 1 ms slice.
                let start = std::time::Instant::now();
                let mut ok = true;
                let mut round = 0;
                while start.elapsed() < Duration::from_millis(300) {
                    ok &= spin_and_check(round << 12, ROUNDS / 4);
                    round += 1;
                }
                let after = spindle::core_stats().unwrap();
                (before, after, ok)
            })
            .unwrap();
        let (before, after, ok) = plain.join().unwrap();
        spindle::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::Relaxed);
        spinner.join().unwrap();
        let total = spindle::core_stats().unwrap();
        assert!(ok, "a register changed in a thread that was not preempted");
        assert_eq!(
            after.async_preemptions, before.async_preemptions,
            "a thread that did not opt in was preempted asynchronously"
        );
        assert!(
            total.async_preemptions > after.async_preemptions || total.async_preemptions > 0,
            "the preemptible spinner was never preempted: {total:?}"
        );
    });
    done.store(true, Ordering::Relaxed);
}

#[test]
fn cooperative_threads_honour_the_slice_at_runtime_calls() {
    let _serial = serial();
    let done = common::watchdog("cooperative_threads_honour_the_slice", 60);
    // Not preemptible: the reschedule flag set at slice expiry is honoured by the
    // next runtime call (here an uncontended spindle Mutex lock).
    let rt = Runtime::builder()
        .cores(1)
        .time_slice(Duration::from_millis(2))
        .build()
        .unwrap();
    rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let m = Arc::new(spindle::sync::Mutex::new(0u64));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (stop, m) = (stop.clone(), m.clone());
                Builder::new()
                    .core(0)
                    .spawn(move || {
                        let mut mine = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            *m.lock().unwrap() += 1;
                            mine += 1;
                        }
                        mine
                    })
                    .unwrap()
            })
            .collect();
        spindle::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let counts: Vec<u64> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(
            counts.iter().all(|&c| c > 0),
            "a thread never ran: {counts:?}"
        );
        let stats = spindle::core_stats().unwrap();
        assert_eq!(stats.async_preemptions, 0);
    });
    done.store(true, Ordering::Relaxed);
}

#[test]
fn zero_slices_and_ticks_are_typed_errors() {
    let e = Runtime::builder()
        .tick(Duration::ZERO)
        .build()
        .err()
        .unwrap();
    assert_eq!(e, ConfigError::Tick);
    assert!(e.to_string().contains("RuntimeBuilder::tick"));
    let e = Runtime::builder()
        .time_slice(Duration::ZERO)
        .build()
        .err()
        .unwrap();
    assert_eq!(e, ConfigError::TimeSlice);
    let e = Runtime::builder().watchdog_slices(0).build().err().unwrap();
    assert_eq!(e, ConfigError::WatchdogSlices);
    let rt = Runtime::builder().cores(1).ticker(false).build().unwrap();
    let e = Builder::new()
        .time_slice(Duration::ZERO)
        .spawn_in(rt.handle(), || ())
        .unwrap_err();
    assert_eq!(e, SpawnError::TimeSlice);
    assert!(e.to_string().contains("Builder::time_slice"));
}
