//! Errors that say what went wrong and what to do: the service core counted in the
//! core limit, named threads aimed at the service core, joining oneself, a handle
//! after shutdown, the stack arena under an address-space limit, a forked child, and
//! watchdog reports with no `tracing` subscriber. The cases that need a fresh process
//! (the arena is reserved once per process; fork; the process-wide subscriber) run in
//! a child: this test binary re-run with an environment variable.

use std::time::Duration;

use spindle::{ConfigError, CoreError, Runtime, SpawnError};

mod common;

#[spindle::thread(name = "errors-square")]
fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn the_service_core_counts_in_the_core_limit() {
    let e = Runtime::builder()
        .cores(64)
        .service_cores(1)
        .build()
        .err()
        .unwrap();
    assert!(
        matches!(e, ConfigError::TooManyCores { requested: 65, .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("service core"), "{msg}");
    assert!(msg.contains("64 worker cores"), "{msg}");
    assert!(msg.contains("at most 63"), "{msg}");
    // Without a hypercore, 64 workers fit; 65 do not, and the message has no service
    // core in it.
    let e = Runtime::builder()
        .cores(65)
        .hypercore(false)
        .build()
        .err()
        .unwrap();
    assert!(!e.to_string().contains("service core"), "{e}");
}

#[test]
fn a_named_thread_aimed_at_the_service_core_is_a_service_core_error() {
    let rt = Runtime::builder().cores(1).build().unwrap();
    let hyper = rt.hypercore().unwrap().id;
    let e = spindle::Builder::new()
        .core(hyper)
        .spawn_named_in::<u64, u64>(rt.handle(), "errors-square", 3)
        .unwrap_err();
    assert_eq!(e, SpawnError::ServiceCore { core: hyper });
    let e = spindle::Builder::new()
        .core_type(spindle::SERVICE_TYPE)
        .spawn_named_in::<u64, u64>(rt.handle(), "errors-square", 3)
        .unwrap_err();
    assert_eq!(e, SpawnError::ServiceCore { core: hyper });
    // Aimed at a worker it runs.
    let h = spindle::Builder::new()
        .core(0)
        .spawn_named_in::<u64, u64>(rt.handle(), "errors-square", 3)
        .unwrap();
    assert_eq!(h.join().unwrap(), 9);
}

#[test]
fn joining_oneself_panics_with_a_clear_message() {
    let msg = common::with_watchdog("join self", 30, || {
        spindle::run(|| {
            use spindle::sync::mpsc::channel;
            let (tx, rx) = channel::<spindle::JoinHandle<()>>();
            let (back_tx, back_rx) = channel::<String>();
            let h = spindle::spawn(move || {
                let me = rx.recv().unwrap();
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    let _ = me.join();
                }));
                let msg = r
                    .err()
                    .and_then(|p| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "join returned".into());
                back_tx.send(msg).unwrap();
            });
            // The thread gets its own handle.
            tx.send(h).unwrap();
            back_rx.recv().unwrap()
        })
    });
    assert!(msg.contains("join itself"), "{msg}");
}

#[test]
fn a_handle_lists_no_cores_after_shutdown() {
    let rt = Runtime::builder().cores(2).build().unwrap();
    let handle = rt.handle().clone();
    assert_eq!(handle.cores().len(), 2);
    drop(rt);
    assert!(handle.cores().is_empty(), "{:?}", handle.cores());
    assert!(handle.hypercore().is_none());
    assert_eq!(
        handle.add_core(spindle::DEFAULT_TYPE),
        Err(CoreError::ShutDown)
    );
}

/// Runs this binary's `child_entry` with `case`, under `limit_as` bytes of address
/// space if given.
fn run_child(case: &str, limit_as: Option<u64>) -> common::ChildOutput {
    use std::os::unix::process::CommandExt;
    common::run_child("child_entry", case, |cmd| {
        if let Some(limit) = limit_as {
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                cmd.pre_exec(move || {
                    let r = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_AS, &r) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
    })
}

/// The child side: does nothing unless the environment variable names a case.
#[test]
fn child_entry() {
    match common::child_case().as_deref() {
        Some("arena") => {
            // Under `ulimit -v` 8 GB: the arena takes what it can get, threads run.
            let n = spindle::run(|| {
                let hs: Vec<_> = (0..1000u64).map(|i| spindle::spawn(move || i)).collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
            });
            println!("sum {n}, arena span {:?}", spindle::stack::arena_span());
        }
        Some("arena-tiny") => {
            // Under a limit the arena cannot fit in: `build` says why and what to do.
            match Runtime::new() {
                Ok(_) => println!("built"),
                Err(e) => println!("error: {e}"),
            }
        }
        Some("fork") => {
            let out = spindle::run(|| {
                let h = spindle::spawn(|| 1);
                // SAFETY: the child only calls the runtime (which must refuse) and `_exit`.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    let spawn = spindle::Builder::new().spawn(|| 2).map(|_| ());
                    let spawn_in = spindle::Handle::try_current().is_none();
                    let migrate = spindle::migrate_to(0);
                    let code = match (spawn, migrate) {
                        (Err(SpawnError::Forked), Err(CoreError::Forked)) if spawn_in => 42,
                        other => {
                            eprintln!("child saw {other:?}, try_current none: {spawn_in}");
                            1
                        }
                    };
                    // SAFETY: leave the child at once.
                    unsafe { libc::_exit(code) };
                }
                let mut status = 0;
                // SAFETY: waits for the child just forked.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                (h.join().unwrap(), libc::WEXITSTATUS(status))
            });
            println!("fork {} {}", out.0, out.1);
        }
        Some("watchdog") => {
            let rt = Runtime::builder()
                .cores(1)
                .time_slice(Duration::from_millis(2))
                .watchdog_slices(5)
                .build()
                .unwrap();
            rt.block_on(|| {
                let h = spindle::Builder::new()
                    .name("hog")
                    .spawn(|| {
                        let t = std::time::Instant::now();
                        while t.elapsed() < Duration::from_millis(400) {
                            std::hint::spin_loop();
                        }
                    })
                    .unwrap();
                h.join().unwrap();
            });
        }
        _ => {}
    }
}

#[test]
fn the_stack_arena_fits_an_address_space_limit() {
    let c = run_child("arena", Some(8_000_000 * 1024));
    assert_eq!(c.code, Some(0), "{c:?}");
    assert!(c.stdout.contains("sum 499500"), "{c:?}");
}

#[test]
fn an_arena_that_cannot_fit_is_a_config_error_that_names_the_limit() {
    let c = run_child("arena-tiny", Some(150 << 20));
    assert_eq!(c.code, Some(0), "{c:?}");
    assert!(c.stdout.contains("error: "), "{c:?}");
    assert!(c.stdout.contains("address space"), "{c:?}");
    assert!(c.stdout.contains("ulimit -v"), "{c:?}");
}

#[test]
fn a_forked_child_gets_typed_errors() {
    let c = run_child("fork", None);
    assert_eq!(c.code, Some(0), "{c:?}");
    assert!(c.stdout.contains("fork 1 42"), "{c:?}");
}

#[test]
fn watchdog_reports_go_to_stderr_without_a_subscriber() {
    let c = run_child("watchdog", None);
    assert_eq!(c.code, Some(0), "{c:?}");
    assert!(c.stderr.contains("'hog'"), "{c:?}");
    assert!(c.stderr.contains("core 0"), "{c:?}");
    assert!(c.stderr.contains("preemptible"), "{c:?}");
}
