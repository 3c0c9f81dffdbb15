//! The tour (`cargo run --release -p spindle-tour`, or `spindle` with no arguments):
//! a short story of the runtime on whatever machine it runs, each line a figure and
//! what it means. It takes well under two seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use spindle::{Builder, Runtime};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Work that takes a while and cannot be optimised away: a sum over primes below `n`.
fn primes_below(lo: u64, hi: u64) -> u64 {
    (lo.max(2)..hi)
        .filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u64
}

/// Runs the tour and prints it.
pub fn run() {
    let wall = Instant::now();
    let rt = Runtime::new().expect("the default runtime");
    let h = rt.handle().clone();
    let workers = h.cores().len();
    let service = spindle::sys::service_stats(&h).map_or(0, |s| s.service_cores);
    // A first thread makes the stack arena, which decides the guard pages.
    rt.spawn(|| ()).join().unwrap();
    println!(
        "spindle tour: the default runtime on this machine has {workers} worker core{} and \
         {service} service core{} ({} CPUs usable); stacks have guard pages by {}\n",
        if workers == 1 { "" } else { "s" },
        if service == 1 { "" } else { "s" },
        spindle::topology::allowed_cpus().len(),
        spindle::guard_mode().map_or("unknown", |g| g.as_str())
    );

    spread(&rt, workers);
    fork_join(&rt, workers);
    urgent(&rt);
    time_slices();
    offload(&rt);
    named();
    add_remove();
    dump(&rt);

    drop(rt);
    println!("\ntour done in {:.0} ms", ms(wall.elapsed()));
}

/// Spawn from outside across the cores, and where the threads ran.
fn spread(rt: &Runtime, workers: usize) {
    const N: usize = 64;
    let t0 = Instant::now();
    let hs: Vec<_> = (0..N)
        .map(|_| {
            rt.spawn(|| {
                spindle::sleep(Duration::from_millis(1));
                spindle::current_core().unwrap_or(usize::MAX)
            })
        })
        .collect();
    let mut per = vec![0usize; workers.max(1) + 8];
    for h in hs {
        let c = h.join().unwrap();
        if let Some(n) = per.get_mut(c) {
            *n += 1;
        }
    }
    let ran: Vec<String> = per
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| format!("core {c}: {n}"))
        .collect();
    println!(
        "spawn across the cores: {N} threads spawned from this OS thread, each sleeping 1 ms, \
         all joined in {:.1} ms; they ran on {} (placed on the least loaded core)",
        ms(t0.elapsed()),
        ran.join(", ")
    );
    rt.block_on(|| {
        const EACH: u64 = 20_000;
        let t0 = Instant::now();
        for i in 0..EACH {
            spindle::spawn(move || i).join().unwrap();
        }
        println!(
            "spawn + join from a spindle thread: {:.0} ns each (the child runs on the \
             spawner's core, from a pooled stack)",
            t0.elapsed().as_nanos() as f64 / EACH as f64
        );
    });
}

/// A fork-join sum on one core, then on all of them.
fn fork_join(rt: &Runtime, workers: usize) {
    const HI: u64 = 300_000;
    let chunks = (workers * 4) as u64;
    let go = |rt: &Runtime| {
        rt.block_on(move || {
            let t0 = Instant::now();
            let hs: Vec<_> = (0..chunks)
                .map(|i| {
                    let (lo, hi) = (HI * i / chunks, HI * (i + 1) / chunks);
                    spindle::spawn(move || primes_below(lo, hi))
                })
                .collect();
            let n: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
            (n, t0.elapsed())
        })
    };
    let one = Runtime::builder()
        .cores(1)
        .build()
        .expect("a one-core runtime");
    let (n1, d1) = go(&one);
    drop(one);
    let (n, d) = go(rt);
    assert_eq!(n, n1);
    println!(
        "fork-join: {n} primes below {HI} counted by {chunks} threads in {:.1} ms on \
         {workers} worker core{} against {:.1} ms on one: {:.2}x (idle cores ask busy ones \
         for work)",
        ms(d),
        if workers == 1 { "" } else { "s" },
        ms(d1),
        d1.as_secs_f64() / d.as_secs_f64()
    );
}

/// An urgent thread sent to a core busy with a background loop runs at once.
fn urgent(rt: &Runtime) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let bg = rt.block_on(move || {
        Builder::new()
            .name("background")
            .priority(10)
            .core(0)
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    // A preemption point: a few loads unless a more urgent thread came.
                    spindle::preempt_point();
                }
            })
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(5));
    let t0 = Instant::now();
    let waited = rt.block_on(move || {
        Builder::new()
            .name("urgent")
            .priority(60)
            .core(0)
            .spawn(move || t0.elapsed())
            .unwrap()
            .join()
            .unwrap()
    });
    stop.store(true, Ordering::Relaxed);
    bg.join().unwrap();
    println!(
        "priorities: an urgent thread (60) sent to core 0, busy with a background loop (10), \
         started running after {:.1} µs",
        us(waited)
    );
}

/// Two compute loops that never yield share one core through time slices.
fn time_slices() {
    let rt = Runtime::builder()
        .cores(1)
        .preemptible(true)
        .time_slice(Duration::from_millis(2))
        .build()
        .expect("a preemptible runtime");
    let counts: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let stop = Arc::new(AtomicBool::new(false));
    let hs: Vec<_> = (0..2)
        .map(|i| {
            let (c, s) = (counts.clone(), stop.clone());
            rt.spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    c[i].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(60));
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    // The idle core publishes its counters.
    std::thread::sleep(Duration::from_millis(5));
    let preempted: u64 = rt
        .handle()
        .stats()
        .cores
        .iter()
        .map(|(_, s)| s.async_preemptions)
        .sum();
    let (a, b) = (
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
    );
    println!(
        "time slices: two loops that never yield shared one core for 60 ms ({:.0}% / {:.0}% \
         of the iterations); the tick preempted them {preempted} times (2 ms slices)",
        100.0 * a as f64 / (a + b).max(1) as f64,
        100.0 * b as f64 / (a + b).max(1) as f64
    );
}

/// System calls handed to the service core, and a TCP echo through it.
fn offload(rt: &Runtime) {
    use std::io::{Read, Write};
    let (d, served) = rt.block_on(|| {
        const CALLS: u64 = 20_000;
        let before =
            spindle::sys::service_stats(&spindle::Handle::current()).map_or(0, |s| s.served);
        let t0 = Instant::now();
        for _ in 0..CALLS {
            std::hint::black_box(spindle::sys::getpid());
        }
        let after =
            spindle::sys::service_stats(&spindle::Handle::current()).map_or(0, |s| s.served);
        (t0.elapsed() / CALLS as u32, after - before)
    });
    println!(
        "offloaded getpid: {:.0} ns per call, {served} of 20000 served by the service core (the \
         worker runs other threads while it waits)",
        d.as_nanos()
    );
    let rtt = rt.block_on(|| {
        let l = spindle::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = spindle::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 64];
            while let Ok(n) = s.read(&mut b) {
                if n == 0 || s.write_all(&b[..n]).is_err() {
                    break;
                }
            }
        });
        let mut c = spindle::net::TcpStream::connect(addr).unwrap();
        c.set_nodelay(true).unwrap();
        const TRIPS: u32 = 2_000;
        let mut b = [0u8; 64];
        let t0 = Instant::now();
        for _ in 0..TRIPS {
            c.write_all(&b).unwrap();
            c.read_exact(&mut b).unwrap();
        }
        let d = t0.elapsed() / TRIPS;
        drop(c);
        server.join().unwrap();
        d
    });
    println!(
        "TCP echo over loopback, client and server both spindle threads: {:.1} µs per 64-byte \
         round trip (sockets wait on the service core's poller, not on a worker)",
        us(rtt)
    );
}

/// The named thread of the tour: a sum, in a variant for any CPU and one for CPUs
/// with AVX2 (the same code here: the point is which one spindle picks).
#[spindle::thread(name = "tour_sum", variant = "generic")]
fn tour_sum_generic(n: u64) -> u64 {
    (0..n).sum()
}

#[spindle::thread(name = "tour_sum", variant = "avx2")]
fn tour_sum_avx2(n: u64) -> u64 {
    (0..n).sum()
}

/// `spawn_named` picks a variant per core type.
fn named() {
    let Ok(rt) = Runtime::builder()
        .core_type(spindle::CoreType::new("big").cores(1))
        .core_type(
            spindle::CoreType::new("plain")
                .cores(1)
                .features(Vec::<String>::new()),
        )
        .pin(false)
        .build()
    else {
        println!("named threads: skipped (no runtime with two core types here)");
        return;
    };
    let picked = |ty: &'static str| {
        rt.block_on(move || {
            let h =
                spindle::spawn_named::<u64, u64>("tour_sum", 1000, Builder::new().core_type(ty))
                    .ok()?;
            let v = h.variant();
            (h.join().ok()? == 499_500).then_some(v).flatten()
        })
    };
    match (picked("big"), picked("plain")) {
        (Some(big), Some(plain)) => println!(
            "named threads: spawn_named(\"tour_sum\") ran variant {big} on core type big (every \
             CPU feature) and {plain} on plain (none)"
        ),
        _ => println!("named threads: skipped (the variants could not run here)"),
    }
}

/// A core joins and leaves while threads run.
fn add_remove() {
    let rt = Runtime::builder()
        .cores(1)
        .build()
        .expect("a one-core runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let new_core = Arc::new(AtomicU64::new(u64::MAX));
    let on_new = Arc::new(AtomicU64::new(0));
    let hs: Vec<_> = (0..8)
        .map(|_| {
            let (s, new_core, on_new) = (stop.clone(), new_core.clone(), on_new.clone());
            rt.spawn(move || {
                let mut n = 0u64;
                while !s.load(Ordering::Relaxed) {
                    spindle::sleep(Duration::from_micros(200));
                    // Spread the work: a new core asks for some of it.
                    let t0 = Instant::now();
                    while t0.elapsed() < Duration::from_micros(50) {
                        std::hint::spin_loop();
                    }
                    if spindle::current_core().map(|c| c as u64)
                        == Some(new_core.load(Ordering::Relaxed))
                    {
                        on_new.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let h = rt.handle();
    let t0 = Instant::now();
    let id = h.add_core("default").expect("a core added");
    let added = t0.elapsed();
    new_core.store(id as u64, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(20));
    let moved = on_new.load(Ordering::Relaxed);
    let t1 = Instant::now();
    h.remove_core(id).expect("the core removed");
    let removed = t1.elapsed();
    stop.store(true, Ordering::Relaxed);
    let total: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    println!(
        "cores come and go: core {id} added in {:.0} µs ({moved} of the wake-ups in the next 20 \
         ms ran there), removed in {:.0} µs while 8 threads slept and worked ({total} \
         wake-ups, none lost)",
        us(added),
        us(removed)
    );
}

/// Locality counters and the live thread dump.
fn dump(rt: &Runtime) {
    let stats = rt.handle().stats();
    let mut total = spindle::CoreStats::default();
    for (_, s) in &stats.cores {
        total += *s;
    }
    println!(
        "locality: {} of {} spawns stayed on the spawner's core; {} threads moved on work \
         requests",
        total.spawned_local, total.spawned, total.stolen_in
    );
    let parked = rt.block_on(|| Builder::new().name("napper").spawn(spindle::park).unwrap());
    std::thread::sleep(Duration::from_millis(5));
    let d = rt.handle().dump();
    let text = d.to_string();
    let line = text
        .lines()
        .find(|l| l.contains("\"napper\""))
        .unwrap_or("")
        .trim();
    println!(
        "thread dump (Handle::dump, or kill -QUIT): {} threads; one of them: {line}",
        d.threads().count()
    );
    parked.thread().unpark();
    parked.join().unwrap();
}
