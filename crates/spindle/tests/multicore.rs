//! Many cores: configuration errors, remote spawn and unpark, migration, placement,
//! priority preemption across cores, injection from OS threads, and sync types across
//! cores. Runtimes here use more cores than this machine may have CPUs (4 on 2): the
//! cores then run unpinned, as the OS schedules them.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use spindle::{Builder, ConfigError, CoreError, CoreType, Runtime, SpawnError};

mod common;
use common::watchdog;

fn cpus() -> Vec<usize> {
    spindle::topology::allowed_cpus()
}

#[test]
fn bad_configurations_are_typed_errors_that_say_what_to_do() {
    let err = |b: spindle::RuntimeBuilder| b.build().err().expect("configuration accepted");
    assert_eq!(err(Runtime::builder().cores(0)), ConfigError::ZeroCores);
    let e = err(Runtime::builder().core_type(CoreType::new("a").cpus([100_000])));
    assert!(
        matches!(e, ConfigError::NoSuchCpu { cpu: 100_000, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("pick from"), "{e}");
    let e = err(Runtime::builder().core_type(CoreType::new("a").cpus([])));
    assert_eq!(e, ConfigError::EmptyType { name: "a".into() });
    let e = err(Runtime::builder()
        .core_type(CoreType::new("a"))
        .core_type(CoreType::new("a")));
    assert_eq!(e, ConfigError::DuplicateType { name: "a".into() });
    let e = err(Runtime::builder().core_type(CoreType::new("")));
    assert_eq!(e, ConfigError::EmptyName);
    let e = err(Runtime::builder().core_type(CoreType::new("a").features(["warp-drive"])));
    assert!(matches!(e, ConfigError::UnknownFeature { .. }), "{e:?}");
    let e = err(Runtime::builder().cores(2).core_type(CoreType::new("a")));
    assert_eq!(e, ConfigError::CoresWithTypes);
    let e = err(Runtime::builder().stack_size(1000));
    assert!(e.to_string().contains("power of two"), "{e}");
    let e = err(Runtime::builder().cores(1000));
    assert!(matches!(e, ConfigError::TooManyCores { .. }), "{e:?}");
    let e = err(Runtime::builder().core_type(CoreType::new("a").cores(0)));
    assert_eq!(e, ConfigError::ZeroCores);
}

#[test]
fn default_runtime_keeps_one_cpu_for_the_service_core() {
    let rt = Runtime::new().unwrap();
    let cores = rt.handle().cores();
    // `SPINDLE_CORES` (how CI runs the suite as if on a bigger machine) overrides it.
    let expected = std::env::var(spindle::CORES_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cpus().len().saturating_sub(1).max(1));
    assert_eq!(cores.len(), expected);
    assert!(cores.iter().all(|c| c.core_type == spindle::DEFAULT_TYPE));
}

#[test]
fn pinned_cores_run_on_their_cpus() {
    let cpus = cpus();
    if cpus.len() < 2 {
        return;
    }
    let rt = Runtime::builder()
        .core_type(CoreType::new("pair").cpus(cpus[..2].to_vec()).cores(2))
        .build()
        .unwrap();
    let infos = rt.handle().cores();
    let pinned: Vec<_> = infos.iter().map(|c| c.cpu).collect();
    assert_eq!(pinned, [Some(cpus[0]), Some(cpus[1])]);
    rt.block_on(|| {
        for (c, &cpu) in pinned.iter().enumerate() {
            let on = spindle::spawn_on(c, || {
                (spindle::current_core(), spindle::topology::current_cpu())
            })
            .join()
            .unwrap();
            assert_eq!(on, (Some(c), cpu));
        }
    });
}

#[test]
fn oversubscribed_cores_are_unpinned_and_all_run_threads() {
    let rt = Runtime::builder().cores(4).build().unwrap();
    let infos = rt.handle().cores();
    assert_eq!(infos.len(), 4);
    if cpus().len() < 4 {
        assert!(infos.iter().all(|c| c.cpu.is_none()), "{infos:?}");
    }
    let seen = rt.block_on(|| {
        let hs: Vec<_> = (0..4)
            .map(|c| spindle::spawn_on(c, spindle::current_core))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(seen, [Some(0), Some(1), Some(2), Some(3)]);
}

#[test]
fn spawn_on_a_core_that_does_not_run_is_an_error() {
    let rt = Runtime::builder().cores(2).build().unwrap();
    rt.block_on(|| {
        let e = Builder::new().core(7).spawn(|| ()).unwrap_err();
        assert_eq!(e, SpawnError::NoSuchCore { core: 7 });
        let e = Builder::new().core_type("gpu").spawn(|| ()).unwrap_err();
        assert_eq!(e, SpawnError::NoSuchType { name: "gpu".into() });
        assert!(e.to_string().contains("core_type"), "{e}");
    });
}

#[test]
fn migrate_to_moves_the_running_thread_with_its_stack() {
    let _w = watchdog("migrate", 60);
    let rt = Runtime::builder().cores(4).build().unwrap();
    rt.block_on(|| {
        let h = spindle::spawn(|| {
            let mut trail = Vec::new();
            let local = [7u64; 64]; // lives on the stack across every move
            for i in 0..2000 {
                let to = i % 4;
                spindle::migrate_to(to).unwrap();
                assert_eq!(spindle::current_core(), Some(to));
                trail.push(to);
            }
            (trail.len(), local.iter().sum::<u64>())
        });
        assert_eq!(h.join().unwrap(), (2000, 7 * 64));
        assert_eq!(
            spindle::migrate_to(42),
            Err(CoreError::NoSuchCore { core: 42 })
        );
    });
    _w.store(true, Ordering::Relaxed);
}

#[test]
fn remote_unpark_ping_pong_across_cores() {
    let _w = watchdog("remote unpark", 60);
    let rt = Runtime::builder().cores(4).build().unwrap();
    const ROUNDS: u64 = 20_000;
    let moved = rt.block_on(|| {
        spindle::spawn_on(1, || {
            let turn = Arc::new(AtomicU64::new(0));
            let a = spindle::current();
            let t = turn.clone();
            let b = spindle::spawn_on(3, move || {
                for i in 0..ROUNDS {
                    while t.load(Ordering::Acquire) != 2 * i + 1 {
                        spindle::park();
                    }
                    assert_eq!(spindle::current_core(), Some(3));
                    t.store(2 * i + 2, Ordering::Release);
                    a.unpark(); // a thread of core 1, from core 3
                }
            });
            for i in 0..ROUNDS {
                turn.store(2 * i + 1, Ordering::Release);
                b.thread().unpark();
                while turn.load(Ordering::Acquire) != 2 * i + 2 {
                    spindle::park();
                }
                assert_eq!(spindle::current_core(), Some(1));
            }
            b.join().unwrap();
            turn.load(Ordering::Relaxed)
        })
        .join()
        .unwrap()
    });
    assert_eq!(moved, 2 * ROUNDS);
    _w.store(true, Ordering::Relaxed);
}

/// Two cores that both run (one per CPU where there are two), handing a turn back
/// and forth with park/unpark, so unparks often find the token of an earlier unpark
/// still set. Such an unpark must still publish the turn it stored (regression: it
/// returned on a plain load, and the parker took the old token, read the old turn and
/// slept for good; `loom_unpark_with_token_set_publishes` models it).
#[test]
fn unparks_that_find_a_token_still_publish_the_turn() {
    let _w = watchdog("token coalescing", 120);
    let rt = Runtime::builder().cores(2).build().unwrap();
    const ROUNDS: u64 = 300_000;
    let turns = rt.block_on(|| {
        spindle::spawn_on(0, || {
            let turn = Arc::new(AtomicU64::new(0));
            let a = spindle::current();
            let t = turn.clone();
            let b = spindle::spawn_on(1, move || {
                for i in 0..ROUNDS {
                    while t.load(Ordering::Acquire) != 2 * i + 1 {
                        spindle::park();
                    }
                    t.store(2 * i + 2, Ordering::Release);
                    a.unpark();
                }
            });
            for i in 0..ROUNDS {
                turn.store(2 * i + 1, Ordering::Release);
                b.thread().unpark();
                while turn.load(Ordering::Acquire) != 2 * i + 2 {
                    spindle::park();
                }
            }
            b.join().unwrap();
            turn.load(Ordering::Relaxed)
        })
        .join()
        .unwrap()
    });
    assert_eq!(turns, 2 * ROUNDS);
    _w.store(true, Ordering::Relaxed);
}

#[test]
fn os_threads_spawn_and_unpark_through_the_injection_queues() {
    let _w = watchdog("injection", 60);
    let rt = Runtime::builder().cores(3).build().unwrap();
    let handle = rt.handle().clone();
    let parked = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for i in 0..30usize {
        let p = parked.clone();
        let h = Builder::new()
            .core(i % 3)
            .spawn_in(&handle, move || {
                p.fetch_add(1, Ordering::SeqCst);
                // Park until the OS thread's unpark arrives (spurious returns allowed).
                while p.load(Ordering::SeqCst) < 1000 {
                    spindle::park();
                }
                (i, spindle::current_core().unwrap())
            })
            .unwrap();
        threads.push(h);
    }
    while parked.load(Ordering::SeqCst) < 30 {
        std::thread::yield_now();
    }
    parked.store(1000, Ordering::SeqCst);
    // Unpark from several foreign OS threads at once.
    let handles: Vec<_> = threads.iter().map(|h| h.thread().clone()).collect();
    std::thread::scope(|s| {
        for chunk in handles.chunks(10) {
            s.spawn(move || chunk.iter().for_each(spindle::Thread::unpark));
        }
    });
    for (i, h) in threads.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), (i, i % 3));
    }
    _w.store(true, Ordering::Relaxed);
}

#[test]
fn core_types_place_threads_on_their_own_cores() {
    let rt = Runtime::builder()
        .core_type(CoreType::new("big").cores(2))
        .core_type(CoreType::new("little").cores(1))
        .pin(false)
        .build()
        .unwrap();
    let little: Vec<usize> = rt
        .handle()
        .cores()
        .iter()
        .filter(|c| c.core_type == "little")
        .map(|c| c.id)
        .collect();
    assert_eq!(little, [2]);
    rt.block_on(|| {
        // main runs on a `big` core (the first type); its children stay on that type.
        assert!(spindle::current_core().unwrap() < 2);
        for _ in 0..20 {
            let c = spindle::spawn(|| spindle::current_core().unwrap())
                .join()
                .unwrap();
            assert!(c < 2, "default placement left the creator's type: core {c}");
        }
        let h = Builder::new()
            .core_type("little")
            .spawn(|| {
                // Its own children inherit `little`.
                let inner = spindle::spawn(|| spindle::current_core().unwrap());
                (spindle::current_core().unwrap(), inner.join().unwrap())
            })
            .unwrap();
        assert_eq!(h.join().unwrap(), (2, 2));
    });
}

/// Plain spawns stay on the spawner's core; busy threads still spread over the
/// cores, because idle cores ask the busy one for work (and the balancer helps).
#[test]
fn busy_threads_spread_over_the_cores() {
    let _w = watchdog("placement", 60);
    let rt = Runtime::builder().cores(4).build().unwrap();
    let cores = rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let on: Arc<Vec<AtomicUsize>> =
            Arc::new((0..4).map(|_| AtomicUsize::new(usize::MAX)).collect());
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let (on, st) = (on.clone(), stop.clone());
                spindle::spawn(move || {
                    // Stay runnable, and say where this thread runs now.
                    while !st.load(Ordering::Acquire) {
                        on[i].store(spindle::current_core().unwrap(), Ordering::Release);
                        spindle::yield_now();
                    }
                })
            })
            .collect();
        // Main parks in short sleeps, so that its core runs the spinners.
        let cores = loop {
            let now: HashSet<usize> = on.iter().map(|c| c.load(Ordering::Acquire)).collect();
            if now.len() == 4 && !now.contains(&usize::MAX) {
                break now;
            }
            spindle::sleep(Duration::from_millis(1));
        };
        stop.store(true, Ordering::Release);
        hs.into_iter().for_each(|h| h.join().unwrap());
        cores
    });
    assert_eq!(cores.len(), 4, "busy threads on cores {cores:?}");
    _w.store(true, Ordering::Relaxed);
}

/// A few microseconds of computation between two preemption points: longer than a
/// cache line takes to cross cores, so "within two preemption points" measures the
/// protocol, not the coherence latency of this machine.
fn work() {
    for _ in 0..256 {
        std::hint::spin_loop();
    }
}

/// A more urgent thread spawned while every core runs a low-priority spinner that
/// calls `preempt_point()` starts within two of that spinner's preemption points.
#[test]
fn urgent_spawn_preempts_a_spinner_at_its_next_preempt_point() {
    let _w = watchdog("priority preemption", 60);
    let rt = Runtime::builder().cores(2).build().unwrap();
    const SPIN: u64 = 1 << 40;
    let counts: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..2)
        .map(|c| {
            let (counts, stop) = (counts.clone(), stop.clone());
            Builder::new()
                .core(c)
                .priority(1)
                .spawn_in(rt.handle(), move || {
                    let mine = &counts[c];
                    for _ in 0..SPIN {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        mine.store(mine.load(Ordering::Relaxed) + 1, Ordering::Release);
                        work();
                        spindle::preempt_point();
                    }
                })
                .unwrap()
        })
        .collect();
    // Both spinners are running.
    while counts.iter().any(|c| c.load(Ordering::Acquire) < 1000) {
        std::thread::yield_now();
    }
    for round in 0..20 {
        let seen = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let s = seen.clone();
        let cs = counts.clone();
        let urgent = Builder::new()
            .priority(60)
            .spawn_in(rt.handle(), move || {
                let c = spindle::current_core().unwrap();
                s[c].store(cs[c].load(Ordering::Acquire) + 1, Ordering::Release);
                c
            })
            .unwrap();
        // Read after the spawn returned: the request is visible from here on.
        let before: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Acquire)).collect();
        let core = urgent.join().unwrap();
        let at_start = seen[core].load(Ordering::Acquire) - 1;
        assert!(
            at_start <= before[core] + 2,
            "round {round}: the spinner on core {core} passed {} preemption points before              the urgent thread ran",
            at_start - before[core]
        );
    }
    stop.store(true, Ordering::Relaxed);
    spinners.into_iter().for_each(|h| h.join().unwrap());
    _w.store(true, Ordering::Relaxed);
}

/// The same through the exchange slots: the spawner is a spindle thread on core 0,
/// the only spinner runs on core 1.
#[test]
fn urgent_remote_spawn_raises_a_reschedule_request() {
    let _w = watchdog("reschedule request", 60);
    let rt = Runtime::builder().cores(2).build().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (c2, s2) = (count.clone(), stop.clone());
    let spinner = Builder::new()
        .core(1)
        .priority(1)
        .spawn_in(rt.handle(), move || {
            while !s2.load(Ordering::Relaxed) {
                c2.store(c2.load(Ordering::Relaxed) + 1, Ordering::Release);
                work();
                spindle::preempt_point();
            }
        })
        .unwrap();
    while count.load(Ordering::Acquire) < 1000 {
        std::thread::yield_now();
    }
    let cnt = count.clone();
    let spawner = Builder::new()
        .core(0)
        .priority(2)
        .spawn_in(rt.handle(), move || {
            let mut worst = 0;
            for _ in 0..20 {
                // Wait until the spinner runs again (the previous urgent thread has
                // left core 1 and the core published the spinner's level).
                let seen = cnt.load(Ordering::Acquire);
                while cnt.load(Ordering::Acquire) < seen + 2 {
                    spindle::yield_now();
                }
                let cs = cnt.clone();
                // Outranks the spinner on core 1: sent there through the exchange
                // slot, with a reschedule request.
                let h = Builder::new()
                    .priority(60)
                    .core(1)
                    .spawn(move || (spindle::current_core().unwrap(), cs.load(Ordering::Acquire)))
                    .unwrap();
                let before = cnt.load(Ordering::Acquire);
                let (core, at_start) = h.join().unwrap();
                assert_eq!(core, 1, "runs on the core it was sent to");
                worst = worst.max(at_start.saturating_sub(before));
            }
            worst
        })
        .unwrap();
    let worst = spawner.join().unwrap();
    assert!(worst <= 2, "spinner passed {worst} preemption points first");
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    _w.store(true, Ordering::Relaxed);
}

#[test]
fn sync_types_across_cores_and_os_threads() {
    use spindle::sync::{Mutex, mpmc};
    let _w = watchdog("sync across cores", 60);
    let rt = Runtime::builder().cores(4).build().unwrap();
    let counter = Arc::new(Mutex::new(0u64));
    let (tx, rx) = mpmc::sync_channel::<u64>(8);
    let total = Arc::new(AtomicU64::new(0));
    let mut hs = Vec::new();
    for i in 0..16u64 {
        let (c, tx) = (counter.clone(), tx.clone());
        hs.push(
            Builder::new()
                .core((i % 4) as usize)
                .spawn_in(rt.handle(), move || {
                    for k in 0..500 {
                        *c.lock().unwrap() += 1;
                        tx.send(i * 1000 + k).unwrap();
                    }
                }),
        );
    }
    drop(tx);
    let consumers: Vec<_> = (0..4)
        .map(|c| {
            let (rx, total) = (rx.clone(), total.clone());
            Builder::new()
                .core(c)
                .spawn_in(rt.handle(), move || {
                    let mut n = 0u64;
                    while let Ok(v) = rx.recv() {
                        total.fetch_add(v, Ordering::Relaxed);
                        n += 1;
                    }
                    n
                })
                .unwrap()
        })
        .collect();
    // An OS thread contends on the same mutex meanwhile.
    for _ in 0..2000 {
        *counter.lock().unwrap() += 1;
    }
    hs.into_iter().for_each(|h| h.unwrap().join().unwrap());
    let received: u64 = consumers.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(received, 16 * 500);
    let want: u64 = (0..16u64)
        .map(|i| (0..500).map(|k| i * 1000 + k).sum::<u64>())
        .sum();
    assert_eq!(total.load(Ordering::Relaxed), want);
    assert_eq!(*counter.lock().unwrap(), 16 * 500 + 2000);
    _w.store(true, Ordering::Relaxed);
}
