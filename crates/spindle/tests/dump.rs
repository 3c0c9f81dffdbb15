//! The thread dump (`Handle::dump`): a program with a thread in each wait state, a
//! running one and a runnable one; the dump names each state, core and thread.

mod common;

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::watchdog;
use spindle::sync::{Barrier, Condvar, Mutex, RwLock, Semaphore, WaitGroup};
use spindle::{Builder, Runtime, ThreadState, WaitReason};

/// Spawns `f` on core 0 under `name`.
fn on_core0<F: FnOnce() + Send + 'static>(name: &str, f: F) -> spindle::JoinHandle<()> {
    Builder::new().name(name).core(0).spawn(f).unwrap()
}

#[test]
fn the_dump_names_each_wait_state() {
    let done = watchdog("thread dump", 60);
    let rt = Runtime::builder()
        .cores(2)
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mutex = Arc::new(Mutex::new(()));
    let rw = Arc::new(RwLock::new(()));
    let cv = Arc::new((Mutex::new(false), Condvar::new()));
    let sem = Arc::new(Semaphore::new(0));
    let barrier = Arc::new(Barrier::new(2));
    let wg = Arc::new(WaitGroup::new());
    wg.add(1);
    let (tx, rx) = spindle::sync::mpsc::channel::<u8>();
    let (pool_go, pool_wait) = std::sync::mpsc::channel::<()>();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();

    let hs = rt.block_on(move || {
        let mut hs = Vec::new();
        // Holds the mutex and the write lock, parked: the lockers below wait.
        let (m, r) = (mutex.clone(), rw.clone());
        let holder = on_core0("holder", move || {
            let _a = m.lock().unwrap();
            let _b = r.write().unwrap();
            spindle::park();
        });
        spindle::sleep(Duration::from_millis(20));
        let m = mutex.clone();
        hs.push(on_core0("locker", move || drop(m.lock().unwrap())));
        let r = rw.clone();
        hs.push(on_core0("reader", move || drop(r.read().unwrap())));
        let holder_id = holder.thread().id();
        hs.push(on_core0("joiner", move || holder.join().unwrap()));
        let c = cv.clone();
        hs.push(on_core0("waiter", move || {
            let (m, cv) = &*c;
            let mut g = m.lock().unwrap();
            while !*g {
                g = cv.wait(g).unwrap();
            }
        }));
        hs.push(on_core0("receiver", move || {
            let _ = rx.recv();
        }));
        let s = sem.clone();
        hs.push(on_core0("acquirer", move || drop(s.acquire())));
        let b = barrier.clone();
        hs.push(on_core0("barrier", move || {
            let _ = b.wait();
        }));
        let w = wg.clone();
        hs.push(on_core0("grouped", move || w.wait()));
        hs.push(on_core0("sleeper", || {
            spindle::sleep(Duration::from_secs(30))
        }));
        hs.push(on_core0("reader-io", move || {
            let mut s = spindle::net::TcpStream::connect(addr).unwrap();
            let mut b = [0u8; 1];
            let _ = s.read(&mut b);
        }));
        hs.push(on_core0("pooled", move || {
            spindle::blocking(move || pool_wait.recv().ok());
        }));
        let token = spindle::CancelToken::new();
        let t = token.clone();
        hs.push(on_core0("selector", move || {
            let (_keep, idle) = spindle::sync::mpsc::channel::<u8>();
            spindle::select! {
                recv(idle) -> _ => {},
                recv(t) -> () => {},
            }
        }));
        hs.push(on_core0("token", move || token.wait()));
        hs.push(on_core0("future", || {
            spindle::block_on(std::future::pending::<()>());
        }));
        let st = stop.clone();
        hs.push(
            Builder::new()
                .name("spinner")
                .core(1)
                .spawn(move || {
                    while !st.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
                .unwrap(),
        );
        (hs, holder_id, stop, tx, mutex, rw, sem, barrier, wg, cv)
    });
    let (_conn, _) = listener.accept().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (hs, holder_id, stop, tx, _mutex, _rw, sem, barrier, wg, cv) = hs;
    let _ = &_mutex;

    let dump = rt.handle().dump();
    let text = dump.to_string();
    let by_name = |n: &str| {
        dump.threads()
            .find(|t| t.name.as_deref() == Some(n))
            .unwrap_or_else(|| panic!("no thread {n:?} in the dump:\n{text}"))
    };
    let want = [
        ("holder", ThreadState::Waiting(WaitReason::Park)),
        ("locker", ThreadState::Waiting(WaitReason::Mutex)),
        ("reader", ThreadState::Waiting(WaitReason::RwLock)),
        (
            "joiner",
            ThreadState::Waiting(WaitReason::Join { thread: holder_id }),
        ),
        ("waiter", ThreadState::Waiting(WaitReason::Condvar)),
        ("receiver", ThreadState::Waiting(WaitReason::Channel)),
        ("acquirer", ThreadState::Waiting(WaitReason::Semaphore)),
        ("barrier", ThreadState::Waiting(WaitReason::Barrier)),
        ("grouped", ThreadState::Waiting(WaitReason::WaitGroup)),
        ("pooled", ThreadState::Waiting(WaitReason::Blocking)),
        (
            "selector",
            ThreadState::Waiting(WaitReason::Select { ops: 2 }),
        ),
        ("token", ThreadState::Waiting(WaitReason::Signal)),
        ("future", ThreadState::Waiting(WaitReason::Future)),
        ("spinner", ThreadState::Running),
    ];
    for (name, state) in want {
        assert_eq!(by_name(name).state, state, "{name}:\n{text}");
    }
    assert!(
        matches!(
            by_name("sleeper").state,
            ThreadState::Waiting(WaitReason::Sleep { .. })
        ),
        "{text}"
    );
    assert!(
        // Readiness with plain calls; the read itself in the ring with io_uring.
        matches!(
            by_name("reader-io").state,
            ThreadState::Waiting(WaitReason::Io { .. })
        ) || by_name("reader-io").state
            == ThreadState::Waiting(WaitReason::Syscall {
                nr: libc::SYS_recvfrom as u32
            }),
        "{text}"
    );
    // Grouped by core: the waiters on core 0, the spinner on core 1.
    let core = |id: usize| dump.cores.iter().find(|c| c.id == id).unwrap();
    assert!(
        core(0)
            .threads
            .iter()
            .any(|t| t.name.as_deref() == Some("locker"))
    );
    assert_eq!(
        core(1).threads[0].name.as_deref(),
        Some("spinner"),
        "{text}"
    );
    // A waiter's wait is timed, and its stack is measured.
    let locker = by_name("locker");
    assert!(
        locker.waited.unwrap() >= Duration::from_millis(50),
        "{text}"
    );
    assert!(locker.stack_size > 0 && locker.stack_used > 0, "{text}");
    assert!(locker.stack_used <= locker.stack_size);
    assert!(text.contains("waiting on mutex"), "{text}");
    assert!(text.contains("core 1 (type default): 1 thread\n"), "{text}");

    // The runtime's shutdown unwinds the waiters; the spinner and the pool job end.
    stop.store(true, Ordering::Relaxed);
    pool_go.send(()).unwrap();
    drop((hs, tx, sem, barrier, wg, cv));
    drop(rt);
    done.store(true, Ordering::Relaxed);
}

#[test]
fn sigquit_prints_the_dump_and_the_program_goes_on() {
    let done = watchdog("SIGQUIT dump", 60);
    let out = common::run_child("child_entry", "sigquit", |_| {});
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("spindle thread dump"), "{out:?}");
    assert!(
        out.stderr.contains("\"napper\" prio 32: waiting on park"),
        "{out:?}"
    );
    assert!(out.stdout.contains("still running"), "{out:?}");
    // Opted out: SIGQUIT keeps its default action (the child dies of it).
    let out = common::run_child("child_entry", "sigquit-off", |_| {});
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(!out.stderr.contains("spindle thread dump"), "{out:?}");
    done.store(true, Ordering::Relaxed);
}

/// The child side: does nothing unless the environment variable names a case.
#[test]
fn child_entry() {
    let on = match common::child_case().as_deref() {
        Some("sigquit") => true,
        Some("sigquit-off") => false,
        _ => return,
    };
    let rt = Runtime::builder()
        .cores(1)
        .dump_on_sigquit(on)
        .build()
        .unwrap();
    let napper = rt.block_on(|| Builder::new().name("napper").spawn(spindle::park).unwrap());
    std::thread::sleep(Duration::from_millis(20));
    // SAFETY: raising a signal in this process; its handler (or default action) runs.
    unsafe { libc::raise(libc::SIGQUIT) };
    std::thread::sleep(Duration::from_millis(200));
    println!("still running");
    napper.thread().unpark();
    napper.join().unwrap();
}
