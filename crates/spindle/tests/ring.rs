//! The service core's io_uring backend (`RuntimeBuilder::io_uring(true)`): which
//! backend is reported, and the memory safety of operations in flight — a buffer lent
//! to the kernel is not written after its caller timed out, unwound or moved, and a
//! call that waits long holds no request slot.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::watchdog;
use spindle::Runtime;
use spindle::sys::Backend;

/// Whether this kernel lets the process make an io_uring (it may be missing, or
/// refused by a seccomp profile).
fn io_uring_allowed() -> bool {
    // SAFETY: all-zero parameters are valid for io_uring_setup.
    let mut params: [u8; 120] = [0; 120];
    // SAFETY: io_uring_setup writes at most the 120-byte parameter block it is given.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 2, params.as_mut_ptr()) };
    if fd < 0 {
        return false;
    }
    // SAFETY: the descriptor was just made here.
    unsafe { libc::close(fd as i32) };
    true
}

fn ring_runtime(cores: usize) -> Runtime {
    Runtime::builder()
        .cores(cores)
        .io_uring(true)
        .build()
        .unwrap()
}

/// A connected pair of loopback TCP streams: (spindle side, std side).
fn pair() -> (spindle::net::TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let ours = spindle::net::TcpStream::connect(addr).unwrap();
    let (theirs, _) = l.accept().unwrap();
    (ours, theirs)
}

#[test]
fn the_backend_in_use_is_reported() {
    let done = watchdog("backend", 60);
    let want = if io_uring_allowed() {
        Backend::IoUring
    } else {
        Backend::Epoll
    };
    let rt = ring_runtime(1);
    assert_eq!(spindle::sys::service_stats(&rt).unwrap().backend, want);
    let rt = Runtime::builder().cores(1).io_uring(false).build().unwrap();
    let s = spindle::sys::service_stats(&rt).unwrap();
    assert_eq!(s.backend, Backend::Epoll);
    done.store(true, Ordering::Relaxed);
}

#[test]
fn a_read_that_times_out_lends_its_buffer_no_longer() {
    let done = watchdog("read timeout", 60);
    let rt = ring_runtime(1);
    let (got, stale) = rt.block_on(|| {
        let (ours, mut theirs) = pair();
        ours.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut first = [0xaau8; 64];
        let e = (&ours).read(&mut first).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        // The cancelled read must not take the data sent now, nor write `first`.
        theirs.write_all(b"hello").unwrap();
        spindle::sleep(Duration::from_millis(20));
        let mut second = [0u8; 64];
        let n = (&ours).read(&mut second).unwrap();
        (second[..n].to_vec(), first)
    });
    assert_eq!(got, b"hello");
    assert!(
        stale.iter().all(|&b| b == 0xaa),
        "the timed-out read wrote its buffer"
    );
    let s = spindle::sys::service_stats(&rt).unwrap();
    if s.backend == Backend::IoUring {
        assert!(s.batched > 0, "nothing went through the ring: {s:?}");
    }
    done.store(true, Ordering::Relaxed);
}

#[test]
fn more_waiting_reads_than_slots_do_not_starve_a_ready_one() {
    let done = watchdog("idle connections", 60);
    let rt = ring_runtime(1);
    rt.block_on(|| {
        let idle = 4 * spindle::sys::SLOTS;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut peers = Vec::new();
        let mut readers = Vec::new();
        for _ in 0..idle {
            let s = spindle::net::TcpStream::connect(addr).unwrap();
            peers.push(l.accept().unwrap().0);
            readers.push(spindle::spawn(move || {
                let mut b = [0u8; 8];
                (&s).read(&mut b).unwrap()
            }));
        }
        // Every idle reader now waits; one more connection must still be served.
        spindle::sleep(Duration::from_millis(20));
        let (ours, mut theirs) = pair();
        theirs.write_all(b"ping").unwrap();
        let mut b = [0u8; 8];
        assert_eq!((&ours).read(&mut b).unwrap(), 4);
        for mut p in peers {
            p.write_all(b"x").unwrap();
        }
        for r in readers {
            assert_eq!(r.join().unwrap(), 1);
        }
    });
    done.store(true, Ordering::Relaxed);
}

#[test]
fn a_reader_abandoned_at_shutdown_unwinds_after_its_cancellation() {
    let done = watchdog("abandoned reader", 60);
    let rt = ring_runtime(1);
    let unwound = Arc::new(AtomicBool::new(false));
    let (ours, mut theirs) = rt.block_on(pair);
    {
        let unwound = unwound.clone();
        rt.spawn(move || {
            struct Mark(Arc<AtomicBool>);
            impl Drop for Mark {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let _mark = Mark(unwound);
            let mut b = [0u8; 64];
            let _ = (&ours).read(&mut b);
        });
    }
    std::thread::sleep(Duration::from_millis(50));
    drop(rt);
    assert!(unwound.load(Ordering::Relaxed), "the reader did not unwind");
    // Its stack is gone: data sent now must land nowhere.
    let _ = theirs.write_all(b"late");
    std::thread::sleep(Duration::from_millis(20));
    done.store(true, Ordering::Relaxed);
}

/// A reader whose request waits in the ring is cancelled (`JoinHandle::cancel`): it
/// unwinds once the service core cancelled the read, so the buffer it lent is never
/// written after its stack frame is gone, and the stream still works.
#[test]
fn a_cancelled_reader_unwinds_after_its_read_is_cancelled_in_the_ring() {
    let done = watchdog("cancelled reader", 60);
    let rt = ring_runtime(1);
    let (got, cancels) = rt.block_on(|| {
        let (ours, mut theirs) = pair();
        let ours = Arc::new(ours);
        let reader = {
            let ours = ours.clone();
            spindle::spawn(move || {
                let mut b = [0u8; 64];
                let _ = (&*ours).read(&mut b);
                unreachable!("the read returned without data");
            })
        };
        spindle::sleep(Duration::from_millis(20));
        reader.cancel();
        let p = reader.join().unwrap_err();
        assert!(p.is::<spindle::Cancelled>());
        // The cancelled read must not take the data sent now.
        theirs.write_all(b"after").unwrap();
        let mut b = [0u8; 64];
        let n = (&*ours).read(&mut b).unwrap();
        let s = spindle::sys::service_stats(&spindle::Handle::current()).unwrap();
        (b[..n].to_vec(), s)
    });
    assert_eq!(got, b"after");
    if cancels.backend == Backend::IoUring {
        assert!(
            cancels.batched > 0,
            "nothing went through the ring: {cancels:?}"
        );
    }
    done.store(true, Ordering::Relaxed);
}

#[test]
fn a_reader_whose_core_is_removed_gets_its_data() {
    let done = watchdog("core removed", 60);
    let rt = ring_runtime(2);
    let (ours, mut theirs) = rt.block_on(pair);
    let reader = rt.block_on(move || {
        spindle::spawn_on(1, move || {
            let mut b = [0u8; 64];
            let n = (&ours).read(&mut b).unwrap();
            b[..n].to_vec()
        })
    });
    std::thread::sleep(Duration::from_millis(30));
    rt.handle().remove_core(1).unwrap();
    theirs.write_all(b"moved").unwrap();
    assert_eq!(reader.join().unwrap(), b"moved");
    done.store(true, Ordering::Relaxed);
}

#[test]
fn a_dead_service_finishes_the_reads_in_its_ring() {
    let done = watchdog("service death", 60);
    let rt = ring_runtime(1);
    let (ours, mut theirs) = rt.block_on(pair);
    let reader = rt.spawn(move || {
        let mut b = [0u8; 64];
        let n = (&ours).read(&mut b).unwrap();
        b[..n].to_vec()
    });
    std::thread::sleep(Duration::from_millis(30));
    spindle::sys::__stop_service(&rt, false);
    while !spindle::sys::service_stats(&rt).unwrap().failed {
        std::thread::yield_now();
    }
    theirs.write_all(b"after").unwrap();
    assert_eq!(rt.block_on(move || reader.join().unwrap()), b"after");
    done.store(true, Ordering::Relaxed);
}

#[test]
fn a_reader_that_moved_cancels_at_the_service_core_that_took_its_read() {
    let done = watchdog("moved reader's timeout", 60);
    // Worker 0 is served by the first service core, worker 1 by the second.
    let rt = Runtime::builder()
        .cores(2)
        .service_cores(2)
        .io_uring(true)
        .build()
        .unwrap();
    let (ours, mut theirs) = rt.block_on(pair);
    let reader = rt.block_on(move || {
        spindle::spawn_on(1, move || {
            ours.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut first = [0xaau8; 64];
            let e = (&ours).read(&mut first).unwrap_err();
            let moved = spindle::current_core() == Some(0);
            (e.kind(), moved, first, ours)
        })
    });
    std::thread::sleep(Duration::from_millis(50));
    // The reader waits in the second service core's ring; its timeout now fires on
    // worker 0, whose requests go to the first.
    rt.handle().remove_core(1).unwrap();
    let (kind, moved, first, ours) = reader.join().unwrap();
    assert_eq!(kind, std::io::ErrorKind::TimedOut);
    assert!(moved, "the reader did not move to core 0");
    assert!(
        first.iter().all(|&b| b == 0xaa),
        "the cancelled read wrote its buffer"
    );
    theirs.write_all(b"next").unwrap();
    let got = rt.block_on(move || {
        let mut b = [0u8; 64];
        let n = (&ours).read(&mut b).unwrap();
        b[..n].to_vec()
    });
    assert_eq!(got, b"next");
    done.store(true, Ordering::Relaxed);
}
