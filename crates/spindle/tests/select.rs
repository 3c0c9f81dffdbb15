//! `select!` and `sync::Select` over every selectable channel, from spindle threads and
//! OS threads, and a stress run of selects against senders under a watchdog.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::with_watchdog;
use spindle::CancelToken;
use spindle::sync::{Select, broadcast, mpmc, mpsc, oneshot};

#[spindle::test(cores = 2)]
fn the_arm_of_the_channel_that_got_a_message_runs() {
    let (tx1, rx1) = mpsc::channel::<u32>();
    let (tx2, rx2) = mpsc::channel::<&str>();
    let h = spindle::spawn(move || {
        spindle::sleep(Duration::from_millis(5));
        tx2.send("two").unwrap();
        tx1
    });
    let got = spindle::select! {
        recv(rx1) -> _ => "one",
        recv(rx2) -> m => m.unwrap(),
    };
    assert_eq!(got, "two");
    // The body may use the channels it selected on.
    drop(rx2);
    let tx1 = h.join().unwrap();
    tx1.send(1).unwrap();
    let got = spindle::select! {
        recv(rx1) -> m => m.unwrap(),
        default(Duration::from_secs(5)) => 0,
    };
    assert_eq!(got, 1);
}

#[spindle::test(cores = 2)]
fn a_send_arm_waits_for_room_and_a_disconnection_completes_a_receive() {
    let (tx, rx) = mpmc::sync_channel::<u32>(1);
    tx.send(1).unwrap();
    let (_keep, idle) = mpsc::channel::<u32>();
    let reader = spindle::spawn(move || {
        spindle::sleep(Duration::from_millis(5));
        let a = rx.recv().unwrap();
        let b = rx.recv().unwrap();
        (a, b)
    });
    let res = spindle::select! {
        send(tx, 2) -> r => r,
        recv(idle) -> _ => unreachable!("nobody sends on idle"),
    };
    assert_eq!(res, Ok(()));
    assert_eq!(reader.join().unwrap(), (1, 2));
    // The receiver is gone: the send completes with the message back.
    let res = spindle::select! { send(tx, 3) -> r => r };
    assert_eq!(res.map_err(|e| e.into_inner()), Err(3));
    // Every sender gone: the receive completes with the error.
    let (tx, rx) = mpsc::channel::<u32>();
    drop(tx);
    let r = spindle::select! { recv(rx) -> m => m };
    assert!(r.is_err());
}

#[spindle::test(cores = 1)]
fn default_arms_do_not_wait_or_wait_for_their_timeout() {
    let (_tx, rx) = mpsc::channel::<u32>();
    let ran = spindle::select! {
        recv(rx) -> _ => false,
        default => true,
    };
    assert!(ran);
    let t = Instant::now();
    let timed_out = spindle::select! {
        recv(rx) -> _ => false,
        default(Duration::from_millis(30)) => true,
    };
    assert!(timed_out);
    assert!(t.elapsed() >= Duration::from_millis(30));
    // A default alone is allowed.
    let v = spindle::select! { default => 5 };
    assert_eq!(v, 5);
}

#[spindle::test(cores = 2)]
fn a_select_sends_to_a_waiting_rendezvous_receiver() {
    let (tx, rx) = mpmc::sync_channel::<u32>(0);
    let reader = spindle::spawn(move || rx.recv().unwrap());
    let (_keep, idle) = mpsc::channel::<u32>();
    let r = spindle::select! {
        send(tx, 9) -> r => r,
        recv(idle) -> _ => unreachable!(),
    };
    assert_eq!(r, Ok(()));
    assert_eq!(reader.join().unwrap(), 9);
}

#[spindle::test(cores = 2)]
fn oneshot_broadcast_and_cancel_tokens_are_selectable() {
    let (otx, orx) = oneshot::channel::<u32>();
    let (btx, brx) = broadcast::channel::<u32>(4);
    let token = CancelToken::new();
    let t2 = token.clone();
    let h = spindle::spawn(move || {
        spindle::sleep(Duration::from_millis(5));
        otx.send(1).unwrap();
        spindle::sleep(Duration::from_millis(5));
        btx.send(2).unwrap();
        spindle::sleep(Duration::from_millis(5));
        t2.cancel();
        btx
    });
    let (_keep, idle) = mpsc::channel::<u32>();
    // The oneshot's message first (nothing else is ready before it).
    let first = spindle::select! {
        recv(orx) -> m => m.unwrap(),
        recv(idle) -> _ => unreachable!(),
    };
    assert_eq!(first, 1);
    // Then the broadcast, then the token.
    let mut seen = Vec::new();
    loop {
        spindle::select! {
            recv(brx) -> m => seen.push(m.unwrap()),
            recv(token) -> () => break,
        }
    }
    assert_eq!(seen, [2]);
    assert!(token.is_cancelled());
    // A oneshot whose message was taken is disconnected.
    assert!(spindle::select! { recv(orx) -> m => m }.is_err());
    drop(h.join().unwrap());
}

#[spindle::test(cores = 1)]
fn a_lagging_broadcast_receiver_is_told_how_many_it_missed() {
    let (tx, rx) = broadcast::channel::<u32>(3);
    for i in 0..10 {
        tx.send(i).unwrap();
    }
    let r = spindle::select! { recv(rx) -> m => m };
    assert_eq!(r, Err(broadcast::RecvError::Lagged(7)));
    assert_eq!(rx.recv(), Ok(7));
    let late = tx.subscribe();
    tx.send(10).unwrap();
    assert_eq!(late.recv(), Ok(10));
    assert_eq!(rx.try_recv(), Ok(8));
}

#[spindle::test(cores = 2)]
fn the_select_builder_takes_a_set_made_at_run_time() {
    let chans: Vec<_> = (0..8).map(|_| mpsc::channel::<usize>()).collect();
    for (i, (tx, _)) in chans.iter().enumerate().filter(|(i, _)| i % 3 == 1) {
        let tx = tx.clone();
        spindle::spawn(move || tx.send(i * 10).unwrap());
    }
    let mut sel = Select::new();
    for (_, rx) in &chans {
        sel.recv(rx);
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        let op = sel.select();
        let i = op.index();
        got.push(op.recv(&chans[i].1).unwrap());
    }
    got.sort();
    assert_eq!(got, [10, 40, 70]);
    assert!(sel.try_select().is_err());
    assert!(sel.select_timeout(Duration::from_millis(5)).is_err());
}

#[spindle::test(cores = 1)]
fn a_reused_select_offers_each_send_once() {
    let (tx, rx) = mpsc::sync_channel::<u32>(4);
    let mut sel = Select::new();
    let i = sel.send(&tx, 5);
    let op = sel.select();
    assert_eq!(op.index(), i);
    assert!(op.send(&tx).is_ok());
    // The message went out: the operation never completes again.
    assert!(sel.try_select().is_err());
    assert!(sel.select_timeout(Duration::from_millis(2)).is_err());
    assert_eq!(rx.try_recv(), Ok(5));
    assert!(rx.try_recv().is_err());
}

#[test]
#[should_panic(expected = "is not a receive on this object")]
fn completing_with_another_object_panics() {
    let (tx, a) = mpsc::channel::<u32>();
    let (_tx2, b) = mpsc::channel::<u32>();
    tx.send(1).unwrap();
    let mut sel = Select::new();
    sel.recv(&a);
    let op = sel.select();
    let _ = op.recv(&b);
}

#[test]
fn selects_work_on_os_threads() {
    with_watchdog("os-thread select", 30, || {
        let (tx, rx) = mpsc::channel::<u32>();
        let (_keep, idle) = mpsc::channel::<u32>();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            tx.send(3).unwrap();
        });
        let v = spindle::select! {
            recv(idle) -> _ => 0,
            recv(rx) -> m => m.unwrap(),
        };
        assert_eq!(v, 3);
        t.join().unwrap();
    });
}

#[spindle::test(cores = 1)]
fn ready_operations_take_turns() {
    let (tx1, rx1) = mpsc::channel::<()>();
    let (tx2, rx2) = mpsc::channel::<()>();
    for _ in 0..200 {
        tx1.send(()).unwrap();
        tx2.send(()).unwrap();
    }
    let mut counts = [0u32; 2];
    for _ in 0..200 {
        spindle::select! {
            recv(rx1) -> _ => counts[0] += 1,
            recv(rx2) -> _ => counts[1] += 1,
        }
    }
    assert!(
        counts[0] >= 50 && counts[1] >= 50,
        "one arm starved: {counts:?}"
    );
}

/// Selecting threads on several cores against senders on several cores: every
/// message is received exactly once (none lost to a select that left, none twice),
/// and every select returns (no lost wakeup), under a watchdog.
#[test]
fn selects_and_senders_lose_and_duplicate_nothing() {
    with_watchdog("select stress", 120, || {
        let rt = spindle::Runtime::builder().cores(4).build().unwrap();
        rt.block_on(|| {
            const SENDERS: usize = 4;
            const PER: usize = 2000;
            let (a_tx, a_rx) = mpmc::sync_channel::<usize>(2);
            let (b_tx, b_rx) = mpmc::channel::<usize>();
            let (c_tx, c_rx) = mpmc::sync_channel::<usize>(0);
            let sum = Arc::new(AtomicUsize::new(0));
            let count = Arc::new(AtomicUsize::new(0));
            let token = CancelToken::new();
            let selectors: Vec<_> = (0..6)
                .map(|_| {
                    let (a, b, c) = (a_rx.clone(), b_rx.clone(), c_rx.clone());
                    let (sum, count, token) = (sum.clone(), count.clone(), token.clone());
                    spindle::spawn(move || {
                        let take = |v: usize| {
                            sum.fetch_add(v, Ordering::Relaxed);
                            count.fetch_add(1, Ordering::Relaxed);
                        };
                        loop {
                            spindle::select! {
                                recv(a) -> m => take(m.unwrap()),
                                recv(b) -> m => take(m.unwrap()),
                                recv(c) -> m => take(m.unwrap()),
                                recv(token) -> _ => break,
                            }
                        }
                    })
                })
                .collect();
            drop((a_rx, b_rx, c_rx));
            let senders: Vec<_> = (0..SENDERS)
                .map(|s| {
                    let (a, b, c) = (a_tx.clone(), b_tx.clone(), c_tx.clone());
                    spindle::spawn(move || {
                        for i in 0..PER {
                            let v = s * PER + i + 1;
                            match i % 3 {
                                0 => a.send(v).unwrap(),
                                1 => b.send(v).unwrap(),
                                _ => c.send(v).unwrap(),
                            }
                        }
                    })
                })
                .collect();
            for s in senders {
                s.join().unwrap();
            }
            let n = SENDERS * PER;
            while count.load(Ordering::Relaxed) < n {
                spindle::sleep(Duration::from_millis(1));
            }
            token.cancel();
            for s in selectors {
                s.join().unwrap();
            }
            assert_eq!(count.load(Ordering::Relaxed), n);
            assert_eq!(sum.load(Ordering::Relaxed), n * (n + 1) / 2);
        });
    });
}

/// `Select` over 64 channels from 4 threads on 4 cores while 4 senders spread 8,000
/// messages over them: every message is received once, and the lists the selects
/// leave entries in stay usable (no lost wakeup under the watchdog).
#[test]
fn a_select_over_many_channels_loses_nothing() {
    with_watchdog("wide select", 120, || {
        let rt = spindle::Runtime::builder().cores(4).build().unwrap();
        rt.block_on(|| {
            const CHANS: usize = 64;
            const PER: usize = 2000;
            let chans: Arc<Vec<_>> =
                Arc::new((0..CHANS).map(|_| mpmc::channel::<usize>()).collect());
            let token = CancelToken::new();
            let got = Arc::new(AtomicUsize::new(0));
            let sum = Arc::new(AtomicUsize::new(0));
            let selectors: Vec<_> = (0..4)
                .map(|_| {
                    let (chans, token, got, sum) =
                        (chans.clone(), token.clone(), got.clone(), sum.clone());
                    spindle::spawn(move || {
                        let mut sel = Select::new();
                        for (_, rx) in chans.iter() {
                            sel.recv(rx);
                        }
                        let stop = sel.recv(&token);
                        loop {
                            let op = sel.select();
                            let i = op.index();
                            if i == stop {
                                op.recv(&token);
                                return;
                            }
                            let v = op.recv(&chans[i].1).unwrap();
                            sum.fetch_add(v, Ordering::Relaxed);
                            got.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            let senders: Vec<_> = (0..4)
                .map(|s| {
                    let chans = chans.clone();
                    spindle::spawn(move || {
                        for i in 0..PER {
                            let v = s * PER + i + 1;
                            chans[(v * 7) % CHANS].0.send(v).unwrap();
                        }
                    })
                })
                .collect();
            for s in senders {
                s.join().unwrap();
            }
            let n = 4 * PER;
            while got.load(Ordering::Relaxed) < n {
                spindle::sleep(Duration::from_millis(1));
            }
            token.cancel();
            for s in selectors {
                s.join().unwrap();
            }
            assert_eq!(got.load(Ordering::Relaxed), n);
            assert_eq!(sum.load(Ordering::Relaxed), n * (n + 1) / 2);
        });
    });
}

#[test]
#[should_panic(expected = "no operation that can complete")]
fn an_empty_select_panics_instead_of_waiting_forever() {
    let mut sel = Select::new();
    let _ = sel.select();
}
