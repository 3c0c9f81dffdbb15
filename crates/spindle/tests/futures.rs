//! Futures interop: `block_on` with wakers from another runtime (tokio), a spindle
//! `JoinHandle` awaited inside tokio, `spawn_future`, and `block_on` on an OS thread.

mod common;

use std::time::Duration;

use common::with_watchdog;

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn a_spindle_thread_awaits_a_tokio_channel() {
    with_watchdog("tokio channel", 60, || {
        let tokio = tokio_rt();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(4);
        // A tokio task sends, later, from tokio's threads.
        tokio.spawn(async move {
            for i in 1..=10 {
                tokio::time::sleep(Duration::from_millis(1)).await;
                tx.send(i).await.unwrap();
            }
        });
        let sum = spindle::Runtime::builder()
            .cores(2)
            .build()
            .unwrap()
            .block_on(|| {
                let h = spindle::spawn(move || {
                    spindle::block_on(async move {
                        let mut sum = 0;
                        while let Some(v) = rx.recv().await {
                            sum += v;
                        }
                        sum
                    })
                });
                h.join().unwrap()
            });
        assert_eq!(sum, 55);
    });
}

#[test]
fn a_spindle_join_handle_is_awaited_inside_tokio() {
    with_watchdog("await join handle", 60, || {
        let rt = spindle::Runtime::builder().cores(2).build().unwrap();
        let handles: Vec<_> = (0..50u64)
            .map(|i| {
                rt.spawn(move || {
                    spindle::sleep(Duration::from_millis(i % 7));
                    i * 2
                })
            })
            .collect();
        let tokio = tokio_rt();
        let total = tokio.block_on(async move {
            let tasks: Vec<_> = handles
                .into_iter()
                .map(|h| tokio::spawn(async move { h.await.unwrap() }))
                .collect();
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            total
        });
        assert_eq!(total, (0..50u64).map(|i| i * 2).sum::<u64>());
        // A panic comes back as join's Err.
        let h = rt.spawn(|| -> u32 { panic!("expected in this test") });
        let r = tokio.block_on(h.into_future_checked());
        assert!(r.is_err());
    });
}

/// `IntoFuture` is what `.await` uses; this names it for a call outside `async`.
trait IntoFutureChecked: std::future::IntoFuture + Sized {
    fn into_future_checked(self) -> Self::IntoFuture {
        std::future::IntoFuture::into_future(self)
    }
}

impl<T> IntoFutureChecked for spindle::JoinHandle<T> {}

#[spindle::test(cores = 2)]
fn spawn_future_runs_a_future_on_its_own_thread() {
    let (tx, rx) = spindle::sync::oneshot::channel::<u32>();
    let h = spindle::spawn_future(async move {
        // A spindle join awaited inside a spindle future.
        let inner = spindle::spawn(move || rx.recv().unwrap());
        inner.await.unwrap() + 1
    });
    spindle::sleep(Duration::from_millis(5));
    tx.send(41).unwrap();
    assert_eq!(h.join().unwrap(), 42);
}

#[test]
fn block_on_works_on_a_plain_os_thread() {
    with_watchdog("block_on os thread", 30, || {
        let rt = spindle::Runtime::builder().cores(1).build().unwrap();
        let h = rt.spawn(|| {
            spindle::sleep(Duration::from_millis(10));
            7
        });
        // This test's thread is no spindle thread.
        assert_eq!(spindle::block_on(h).unwrap(), 7);
        assert_eq!(spindle::block_on(async { 3 }), 3);
    });
}
