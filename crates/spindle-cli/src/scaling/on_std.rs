//! The scaling workloads that fit OS threads (`std::thread`, `std::sync::mpsc`): fanin
//! and pairs. The others need thousands of threads at once, or cost OS threads tens of
//! seconds at these sizes (the single-core benches have their spawn and park figures).
//! The process is restricted to the run's CPUs; the threads are not pinned further.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::work::{Size, Work, warm_then_time};

/// Whether OS threads run `work` (the rest would need thousands of them at once).
pub fn fits(work: Work) -> bool {
    matches!(work, Work::Fanin | Work::Pairs)
}

/// Runs `work` of `size` once to warm up, then once timed.
pub fn run(work: Work, size: Size) -> Duration {
    warm_then_time(|| one(work, size))
}

fn one(work: Work, s: Size) {
    match work {
        Work::Fanin => {
            let (tx, rx) = mpsc::channel::<u64>();
            let hs: Vec<_> = (0..s.m)
                .map(|p| {
                    let tx = tx.clone();
                    thread::spawn(move || {
                        for i in 0..s.n {
                            tx.send(p * s.n + i).unwrap();
                        }
                    })
                })
                .collect();
            drop(tx);
            assert_eq!(rx.iter().count() as u64, s.m * s.n);
            hs.into_iter().for_each(|h| h.join().unwrap());
        }
        Work::Pairs => {
            let hs: Vec<_> = (0..s.m)
                .flat_map(|_| {
                    let (a_tx, a_rx) = mpsc::channel::<u64>();
                    let (b_tx, b_rx) = mpsc::channel::<u64>();
                    let rounds = s.n;
                    [
                        thread::spawn(move || {
                            for i in 0..rounds {
                                a_tx.send(i).unwrap();
                                assert_eq!(b_rx.recv().unwrap(), i);
                            }
                        }),
                        thread::spawn(move || {
                            for _ in 0..rounds {
                                b_tx.send(a_rx.recv().unwrap()).unwrap();
                            }
                        }),
                    ]
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
        }
        _ => unreachable!("{} does not fit OS threads", work.name()),
    }
}
