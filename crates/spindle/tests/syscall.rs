//! Exception-less system calls: offloaded calls give the same results as direct ones,
//! are really served by the hypercore, fall back to direct execution without a runtime,
//! without a hypercore, with full slots and after the service fails; `blocking` runs
//! work on a pool while the core goes on.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::watchdog;
use spindle::Runtime;

const THREADS: u64 = 48;
const CALLS: u64 = 200;

#[test]
fn offloaded_calls_are_served_by_the_hypercore() {
    let done = watchdog("offloaded getpid", 120);
    let rt = Runtime::builder().cores(2).build().unwrap();
    let before = spindle::sys::service_stats(&rt).expect("a hypercore by default");
    assert!(!before.failed);
    let pid = std::process::id();
    rt.block_on(move || {
        let hs: Vec<_> = (0..THREADS)
            .map(|_| {
                spindle::spawn(move || {
                    for _ in 0..CALLS {
                        assert_eq!(spindle::sys::getpid(), pid);
                        spindle::yield_now();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    let after = spindle::sys::service_stats(&rt).unwrap();
    let served = after.served - before.served;
    // Every call was served by the hypercore: one that found its core's slots full
    // waited for one.
    assert_eq!(served, THREADS * CALLS, "{after:?}");
    assert_eq!(after.direct_failed, 0);
    assert!(!after.failed);
    done.store(true, Ordering::Relaxed);
}

/// More threads than request slots on one worker, all calling at once: every call is
/// still served by the service core (before, a call that found the slots full ran
/// directly, so under load almost none was offloaded).
#[test]
fn calls_that_find_the_slots_full_wait_for_one() {
    let done = watchdog("full slots", 120);
    let rt = Runtime::builder().cores(1).build().unwrap();
    let threads = 4 * spindle::sys::SLOTS as u64;
    let pid = std::process::id();
    rt.block_on(move || {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                spindle::spawn(move || {
                    for _ in 0..CALLS {
                        assert_eq!(spindle::sys::getpid(), pid);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    let s = spindle::sys::service_stats(&rt).unwrap();
    assert_eq!(s.served, threads * CALLS, "{s:?}");
    assert!(s.slot_waits > 0, "the slots were never full: {s:?}");
    // A caller that found the slots full slept until one was free: it did not spin
    // through the core's run queue (each try counts once).
    assert!(
        s.slot_waits <= threads * CALLS,
        "callers spun on the full slots: {s:?}"
    );
    assert_eq!(s.direct_failed, 0, "{s:?}");
    done.store(true, Ordering::Relaxed);
}

#[test]
fn each_service_core_serves_its_share_of_the_workers() {
    let done = watchdog("two service cores", 120);
    // Unpinned, the four workers are shared out two and two.
    let rt = Runtime::builder()
        .cores(4)
        .service_cores(2)
        .pin(false)
        .build()
        .unwrap();
    let pid = std::process::id();
    rt.block_on(move || {
        let hs: Vec<_> = (0..4)
            .map(|core| {
                spindle::spawn_on(core, move || {
                    for _ in 0..CALLS {
                        assert_eq!(spindle::sys::getpid(), pid);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    let each = spindle::sys::service_core_stats(&rt);
    assert_eq!(each.len(), 2);
    for s in &each {
        assert_eq!(s.served, 2 * CALLS, "{each:?}");
    }
    let all = spindle::sys::service_stats(&rt).unwrap();
    assert_eq!((all.service_cores, all.served), (2, 4 * CALLS));
    // Both are service cores: no thread of the program's may go there, and the
    // maintenance threads run on the first (the hypercore).
    let hyper = rt.handle().hypercore().unwrap().id;
    assert_eq!(hyper, 4);
    let e = rt.block_on(|| {
        spindle::Builder::new()
            .core(5)
            .spawn(|| ())
            .map(|_| ())
            .unwrap_err()
    });
    assert!(
        matches!(e, spindle::SpawnError::ServiceCore { core: 5 }),
        "{e:?}"
    );
    done.store(true, Ordering::Relaxed);
}

#[test]
fn slot_waiters_of_a_removed_core_go_on_elsewhere() {
    let done = watchdog("slot waiters of a removed core", 120);
    let rt = Runtime::builder().cores(2).build().unwrap();
    let threads = 4 * spindle::sys::SLOTS as u64;
    let pid = std::process::id();
    let hs: Vec<_> = rt.block_on(move || {
        (0..threads)
            .map(|_| {
                spindle::spawn_on(1, move || {
                    for _ in 0..20 * CALLS {
                        assert_eq!(spindle::sys::getpid(), pid);
                    }
                })
            })
            .collect()
    });
    // Remove the core while most of its threads wait for one of its slots.
    while spindle::sys::service_stats(&rt).unwrap().slot_waits == 0 {
        std::thread::yield_now();
    }
    rt.handle().remove_core(1).unwrap();
    for h in hs {
        h.join().unwrap();
    }
    let s = spindle::sys::service_stats(&rt).unwrap();
    assert_eq!(s.served, threads * 20 * CALLS, "{s:?}");
    done.store(true, Ordering::Relaxed);
}

#[test]
fn a_lone_thread_on_an_idle_core_gets_its_results() {
    // One worker whose only thread waits on the service: the core goes idle and the
    // completion must wake it.
    let done = watchdog("idle worker completion", 60);
    let rt = Runtime::builder().cores(1).build().unwrap();
    let n = rt.block_on(|| {
        let mut n = 0u64;
        for i in 0..2000u64 {
            if spindle::sys::getpid() == std::process::id() {
                n += 1;
            }
            if i % 100 == 0 {
                spindle::sleep(std::time::Duration::from_micros(200));
            }
        }
        n
    });
    assert_eq!(n, 2000);
    let s = spindle::sys::service_stats(&rt).unwrap();
    assert_eq!(s.served, 2000);
    done.store(true, Ordering::Relaxed);
}

#[test]
fn calls_run_directly_without_runtime_or_hypercore() {
    let done = watchdog("direct calls", 60);
    // A plain OS thread.
    assert_eq!(spindle::sys::getpid(), std::process::id());
    // SAFETY: getpid takes no arguments.
    let pid = unsafe { spindle::sys::syscall(libc::SYS_getpid, [0; 6]) }.unwrap();
    assert_eq!(pid as u32, std::process::id());
    // A runtime without a hypercore: no service at all.
    let rt = Runtime::builder()
        .cores(2)
        .hypercore(false)
        .build()
        .unwrap();
    assert!(spindle::sys::service_stats(&rt).is_none());
    let ok = rt.block_on(|| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                spindle::spawn(|| (0..100).all(|_| spindle::sys::getpid() == std::process::id()))
            })
            .collect();
        hs.into_iter().all(|h| h.join().unwrap())
    });
    assert!(ok);
    done.store(true, Ordering::Relaxed);
}

#[test]
fn errors_come_back_as_io_errors() {
    let done = watchdog("errno", 60);
    let check = || {
        // SAFETY: close takes no pointers; -1 is never a valid descriptor.
        let e = unsafe { spindle::sys::syscall(libc::SYS_close, [usize::MAX, 0, 0, 0, 0, 0]) }
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
        // SAFETY: no call is made (the number is refused).
        let e = unsafe { spindle::sys::syscall(-1, [0; 6]) }.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("libc::SYS_"), "{e}");
    };
    check();
    let rt = Runtime::builder().cores(1).build().unwrap();
    rt.block_on(check);
    done.store(true, Ordering::Relaxed);
}

/// Threads call in a loop while the service is stopped (or panics): every call still
/// returns the right result, nobody hangs, and the failure is reported.
fn service_failure(panic: bool) {
    let done = watchdog("service failure", 120);
    let rt = Runtime::builder().cores(2).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let workers = {
        let (stop, calls) = (stop.clone(), calls.clone());
        rt.block_on(move || {
            (0..16)
                .map(|_| {
                    let (stop, calls) = (stop.clone(), calls.clone());
                    spindle::spawn(move || {
                        let mut n = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            assert_eq!(spindle::sys::getpid(), std::process::id());
                            calls.fetch_add(1, Ordering::Relaxed);
                            n += 1;
                        }
                        n
                    })
                })
                .collect::<Vec<_>>()
        })
    };
    // Let some calls be offloaded first.
    while spindle::sys::service_stats(&rt).unwrap().served < 100 {
        std::thread::yield_now();
    }
    spindle::sys::__stop_service(&rt, panic);
    while !spindle::sys::service_stats(&rt).unwrap().failed {
        std::thread::yield_now();
    }
    // Calls go on after the failure, directly.
    let at_failure = calls.load(Ordering::Relaxed);
    while calls.load(Ordering::Relaxed) < at_failure + 1000 {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    let total: u64 = rt.block_on(move || workers.into_iter().map(|h| h.join().unwrap()).sum());
    let s = spindle::sys::service_stats(&rt).unwrap();
    assert!(s.failed);
    assert!(s.direct_failed > 0, "{s:?}");
    assert_eq!(s.served + s.direct_failed, total, "{s:?}");
    done.store(true, Ordering::Relaxed);
}

#[test]
fn a_stopped_service_falls_back_to_direct_calls() {
    service_failure(false);
}

#[test]
fn a_panicking_service_falls_back_to_direct_calls() {
    service_failure(true);
}

#[test]
fn wait_strategy_is_reported() {
    let rt = Runtime::builder().cores(1).build().unwrap();
    let s = spindle::sys::service_stats(&rt).unwrap();
    assert_eq!(s.strategy, spindle::sys::wait_strategy());
    // CPUID.(7,0):ECX bit 5 is WAITPKG.
    let waitpkg = std::arch::x86_64::__cpuid_count(7, 0).ecx & (1 << 5) != 0;
    assert_eq!(waitpkg, s.strategy.name() == "umwait");
}

#[test]
fn blocking_runs_on_the_pool_while_the_core_goes_on() {
    let done = watchdog("blocking", 60);
    // One worker core: if `blocking` blocked it, the sender below could never run and
    // the pool thread would wait forever.
    let rt = Runtime::builder().cores(1).build().unwrap();
    let got = rt.block_on(|| {
        let (tx, rx) = std::sync::mpsc::channel::<u32>();
        let sender = spindle::spawn(move || tx.send(7).unwrap());
        let got = spindle::blocking(move || rx.recv().unwrap() * 6);
        sender.join().unwrap();
        got
    });
    assert_eq!(got, 42);
    // A panic in the work comes back to the caller.
    let r = rt.block_on(|| {
        spindle::spawn(|| spindle::blocking(|| -> u32 { panic!("boom in the pool") })).join()
    });
    let msg = r.unwrap_err().downcast::<&str>().map(|b| *b).unwrap_or("");
    assert_eq!(msg, "boom in the pool");
    // Without a runtime it runs in place.
    assert_eq!(spindle::blocking(|| 5), 5);
    done.store(true, Ordering::Relaxed);
}

/// `sys::read` on an empty pipe and `sys::write` on a full one park the thread on the
/// poller instead of holding the hypercore: other offloaded calls go on meanwhile,
/// and the waiting calls finish once the other end acts. A descriptor made
/// non-blocking still gets `WouldBlock`.
#[test]
fn pipe_calls_do_not_hold_the_hypercore() {
    let done = watchdog("pipe calls", 60);
    let rt = Runtime::builder().cores(2).build().unwrap();
    let served_before = spindle::sys::service_stats(&rt).unwrap().served;
    rt.block_on(|| {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors are fresh and owned here from now on.
        let (r, w) = unsafe {
            use std::os::fd::{FromRawFd, OwnedFd};
            (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
        };
        let reading = Arc::new(AtomicBool::new(false));
        let reader = {
            let reading = reading.clone();
            spindle::spawn(move || {
                let mut buf = [0u8; 8];
                reading.store(true, Ordering::Release);
                let n = spindle::sys::read(&r, &mut buf).unwrap();
                (r, buf[..n].to_vec())
            })
        };
        while !reading.load(Ordering::Acquire) {
            spindle::yield_now();
        }
        spindle::sleep(std::time::Duration::from_millis(20));
        // The reader waits in its read; offloaded calls still go through.
        let pid = std::process::id();
        for _ in 0..100 {
            assert_eq!(spindle::sys::getpid(), pid);
        }
        assert!(
            !reader.is_finished(),
            "the read returned before anything was written"
        );
        assert_eq!(spindle::sys::write(&w, b"ping").unwrap(), 4);
        let (r, got) = reader.join().unwrap();
        assert_eq!(got, b"ping");

        // Fill the pipe, then a write waits until the reader drains it.
        // SAFETY: F_SETFL on our own descriptor.
        unsafe { libc::fcntl(fds[1], libc::F_SETFL, libc::O_NONBLOCK) };
        let chunk = [7u8; 4096];
        let mut filled = 0;
        loop {
            match spindle::sys::write(&w, &chunk) {
                Ok(n) => filled += n,
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
                    break;
                }
            }
        }
        // SAFETY: as above.
        unsafe { libc::fcntl(fds[1], libc::F_SETFL, 0) };
        let writer = spindle::spawn(move || spindle::sys::write(&w, b"tail").unwrap());
        spindle::sleep(std::time::Duration::from_millis(20));
        assert_eq!(spindle::sys::getpid(), pid);
        assert!(!writer.is_finished(), "the write went into a full pipe");
        let mut drained = 0;
        let mut buf = vec![0u8; 65536];
        while drained < filled + 4 {
            drained += spindle::sys::read(&r, &mut buf).unwrap();
        }
        assert_eq!(writer.join().unwrap(), 4);
        assert_eq!(drained, filled + 4);
    });
    let served = spindle::sys::service_stats(&rt).unwrap().served - served_before;
    assert!(served >= 100, "the getpids were offloaded: {served}");
    done.store(true, Ordering::Relaxed);
}

/// Calls that may wait on a disk or a filesystem run on the blocking pool, not on the
/// hypercore, whether made through `sys::open` or a raw `sys::syscall`. An `open` of a
/// FIFO for reading waits in the kernel until a writer opens it: meanwhile offloaded
/// calls still go through, and the writer is opened only after them (with the open on
/// the hypercore, this test hangs). A read of a file dropped from the page cache (the
/// pool's path) returns its bytes.
#[test]
fn disk_calls_do_not_hold_the_hypercore() {
    let done = watchdog("disk calls", 60);
    let dir = std::env::temp_dir().join(format!("spindle-disk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let file = dir.join("cold");
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::create(&file).unwrap();
        std::io::Write::write_all(&mut &f, &data).unwrap();
        f.sync_all().unwrap();
        // SAFETY: a valid descriptor; the call only advises the kernel.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    let rt = Runtime::builder().cores(2).build().unwrap();
    rt.block_on(move || {
        let opening = Arc::new(AtomicBool::new(false));
        let reader = {
            let (opening, fifo) = (opening.clone(), fifo.clone());
            spindle::spawn(move || {
                opening.store(true, Ordering::Release);
                spindle::sys::open(&fifo, libc::O_RDONLY, 0).unwrap()
            })
        };
        while !opening.load(Ordering::Acquire) {
            spindle::yield_now();
        }
        spindle::sleep(std::time::Duration::from_millis(20));
        let pid = std::process::id();
        for _ in 0..100 {
            assert_eq!(spindle::sys::getpid(), pid);
        }
        assert!(!reader.is_finished(), "the FIFO opened with no writer");
        let w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        drop(reader.join().unwrap());
        drop(w);

        // The same through a raw `sys::syscall`: `openat` is a call that waits.
        let opening = Arc::new(AtomicBool::new(false));
        let reader = {
            let (opening, fifo) = (opening.clone(), fifo.clone());
            spindle::spawn(move || {
                let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
                opening.store(true, Ordering::Release);
                // SAFETY: `c` is a live NUL-terminated path during the call.
                let fd = unsafe {
                    spindle::sys::syscall(
                        libc::SYS_openat,
                        [
                            libc::AT_FDCWD as usize,
                            c.as_ptr() as usize,
                            libc::O_RDONLY as usize,
                            0,
                            0,
                            0,
                        ],
                    )
                }
                .unwrap();
                // SAFETY: the kernel just gave us this descriptor.
                drop(unsafe {
                    <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32)
                });
            })
        };
        while !opening.load(Ordering::Acquire) {
            spindle::yield_now();
        }
        spindle::sleep(std::time::Duration::from_millis(20));
        for _ in 0..100 {
            assert_eq!(spindle::sys::getpid(), pid);
        }
        assert!(!reader.is_finished(), "the FIFO opened with no writer");
        let _w2 = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        reader.join().unwrap();

        let f = spindle::sys::open(&file, libc::O_RDONLY, 0).unwrap();
        let mut got = vec![0u8; data.len()];
        let mut at = 0;
        while at < got.len() {
            let n = spindle::sys::pread(&f, &mut got[at..], at as u64).unwrap();
            assert!(n > 0, "early end of file at {at}");
            at += n;
        }
        assert!(got == data, "the cold file read back differently");
        spindle::sys::fsync(&f).unwrap();
    });
    let _ = std::fs::remove_dir_all(&dir);
    done.store(true, Ordering::Relaxed);
}
