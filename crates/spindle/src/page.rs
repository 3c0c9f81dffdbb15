//! The live stats page: a small shared-memory file per runtime
//! (`/dev/shm/spindle-<pid>.stats`, then `-2`, `-3`, ... for more runtimes of the
//! process) that `spindle top PID` reads while the program runs.
//!
//! - **Writer**: a maintenance thread on the first service core (`spindle-page`),
//!   every [`PAGE_EVERY`]: it copies what the cores already publish (their counters,
//!   their running thread, their doorbell) and what the ticker sampled (which thread
//!   ran on each core at each tick), so worker cores do nothing for it. Enabled with
//!   `SPINDLE_STATS=1` or [`RuntimeBuilder::stats`](crate::RuntimeBuilder::stats).
//! - **Layout**: 64-bit words. A header, then one row per started core, then the ten
//!   threads sampled running most often in the last interval. Counters are
//!   cumulative: a reader makes rates from two snapshots.
//! - **Protocol**: a seqlock. The writer makes the sequence word odd, writes, makes
//!   it even (release); a reader copies the page between two reads of an equal, even
//!   sequence word (acquire, then an acquire fence before the second read).
//! - The file is removed when the runtime shuts down.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::limits::MAX_CORES;
use crate::offload::Service;
use crate::sched::{CoreSet, CoreState};

/// How often the page is written.
pub const PAGE_EVERY: Duration = Duration::from_millis(250);

/// The environment variable that turns the stats page on (`1`) or off (`0`) for
/// runtimes whose builder does not say.
pub const STATS_ENV: &str = "SPINDLE_STATS";

const MAGIC: u64 = u64::from_le_bytes(*b"SPNDLST1");
/// Threads listed below the cores.
pub const TOP_THREADS: usize = 10;
const HEADER: usize = 8;
const CORE_WORDS: usize = 16;
const THREAD_WORDS: usize = 6;
const WORDS: usize = HEADER + MAX_CORES * CORE_WORDS + TOP_THREADS * THREAD_WORDS;
const BYTES: usize = WORDS * 8;

/// What a core was doing when the page was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoreActivity {
    /// Running a thread.
    Running,
    /// Idle, looking for work.
    Spinning,
    /// Idle, asleep in the kernel.
    Sleeping,
    /// Running the same thread with no schedule point since the last page.
    Stuck,
}

/// One core of a [`PageSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreRow {
    /// The core's id.
    pub id: usize,
    /// Its core type's name (cut to 16 bytes).
    pub core_type: String,
    /// Whether it is a service core.
    pub service: bool,
    /// What it was doing.
    pub activity: CoreActivity,
    /// Its runnable threads, plus one if a thread runs (its published load).
    pub threads: u64,
    /// Counters since the core started: switches, spawns, threads stolen in and out.
    pub switches: u64,
    /// Threads spawned on this core.
    pub spawns: u64,
    /// Threads it took from other cores' answers to its work requests.
    pub stolen_in: u64,
    /// Threads it gave away.
    pub stolen_out: u64,
    /// A worker: its system calls served by its service core. A service core: the
    /// calls it served.
    pub offloaded: u64,
    /// A service core: requests posted to it and not taken yet. A worker: the
    /// index of its service core.
    pub service_queue: u64,
    /// The smoothed load (threads, × 256).
    pub load_avg_x256: u64,
}

/// A thread that ran often in the last interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopThread {
    /// Its id ([`ThreadId::as_u64`](crate::ThreadId::as_u64)).
    pub id: u64,
    /// Its name (cut to 32 bytes), if any.
    pub name: Option<String>,
    /// Ticks at which it was running, in the last interval (about its run time in
    /// ticks).
    pub ticks: u64,
}

/// A copy of a stats page ([`StatsPage::read`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageSnapshot {
    /// The writer's process.
    pub pid: u32,
    /// Pages written so far (each [`PAGE_EVERY`]).
    pub writes: u64,
    /// The tick period, in nanoseconds.
    pub tick_ns: u64,
    /// Its cores.
    pub cores: Vec<CoreRow>,
    /// The threads that ran most in the last interval, most first.
    pub top: Vec<TopThread>,
}

/// A stats page of a running program, opened read-only.
pub struct StatsPage {
    map: *const AtomicU64,
    path: PathBuf,
}

// SAFETY: the mapping is read-only and read through atomics; it is unmapped on drop.
unsafe impl Send for StatsPage {}

/// Why a stats page cannot be read.
#[derive(Debug)]
pub enum PageError {
    /// The process has no stats page (not a spindle program, stats off, or gone).
    NoPage {
        /// The process.
        pid: u32,
    },
    /// The file is not a stats page of this version.
    NotAPage {
        /// The file.
        path: PathBuf,
    },
    /// The writer kept writing while the page was read (retried 100 times).
    Busy,
    /// The file could not be opened or mapped.
    Os(std::io::Error),
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageError::NoPage { pid } => write!(
                f,
                "process {pid} has no spindle stats page: start it with SPINDLE_STATS=1 (or \
                 build its runtime with RuntimeBuilder::stats(true)), and check that the \
                 process still runs"
            ),
            PageError::NotAPage { path } => write!(
                f,
                "{} is not a spindle stats page of this version: use the spindle CLI built \
                 with the program's spindle",
                path.display()
            ),
            PageError::Busy => f.write_str("the stats page kept changing while read: try again"),
            PageError::Os(e) => write!(f, "cannot read the stats page: {e}"),
        }
    }
}

impl std::error::Error for PageError {}

/// The path of the `n`th stats page (from 1) of process `pid`.
fn path_of(pid: u32, n: usize) -> PathBuf {
    if n == 1 {
        PathBuf::from(format!("/dev/shm/spindle-{pid}.stats"))
    } else {
        PathBuf::from(format!("/dev/shm/spindle-{pid}-{n}.stats"))
    }
}

fn map(file: &std::fs::File, write: bool) -> std::io::Result<*mut AtomicU64> {
    use std::os::fd::AsRawFd;
    let prot = if write {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ
    };
    // SAFETY: a fresh shared mapping of a file of at least BYTES bytes; the kernel picks the address.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            BYTES,
            prot,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(p.cast())
}

impl StatsPage {
    /// Opens the first stats page of process `pid`.
    ///
    /// # Errors
    ///
    /// [`PageError::NoPage`] if the process has none, [`PageError::NotAPage`] for a
    /// file of another kind or version, [`PageError::Os`] if it cannot be mapped.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = spindle::Runtime::builder()
    ///     .cores(1)
    ///     .service_cores(1)
    ///     .stats(true)
    ///     .build()
    ///     .unwrap();
    /// std::thread::sleep(spindle::page::PAGE_EVERY * 2);
    /// let page = spindle::page::StatsPage::open(std::process::id()).unwrap();
    /// let snap = page.read().unwrap();
    /// assert_eq!(snap.cores.len(), 2); // the worker and the hypercore
    /// ```
    pub fn open(pid: u32) -> Result<StatsPage, PageError> {
        let path = path_of(pid, 1);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(PageError::NoPage { pid });
            }
            Err(e) => return Err(PageError::Os(e)),
        };
        let len = file.metadata().map_err(PageError::Os)?.len();
        if len < BYTES as u64 {
            return Err(PageError::NotAPage { path });
        }
        let map = map(&file, false).map_err(PageError::Os)?;
        let page = StatsPage { map, path };
        if page.word(0) != MAGIC {
            return Err(PageError::NotAPage {
                path: page.path.clone(),
            });
        }
        Ok(page)
    }

    fn word(&self, i: usize) -> u64 {
        // SAFETY: `i` < WORDS, inside the mapping, which lives as long as `self`.
        unsafe { (*self.map.add(i)).load(Ordering::Relaxed) }
    }

    /// Copies the page.
    ///
    /// # Errors
    ///
    /// [`PageError::Busy`] if the writer kept writing during 100 tries.
    pub fn read(&self) -> Result<PageSnapshot, PageError> {
        for _ in 0..100 {
            // SAFETY: word 2 is the sequence word, inside the mapping.
            let seq = unsafe { &*self.map.add(2) };
            let s1 = seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::thread::yield_now();
                continue;
            }
            let words: Vec<u64> = (0..WORDS).map(|i| self.word(i)).collect();
            std::sync::atomic::fence(Ordering::Acquire);
            if seq.load(Ordering::Relaxed) == s1 {
                return Ok(decode(&words));
            }
        }
        Err(PageError::Busy)
    }
}

impl Drop for StatsPage {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping this value made.
        unsafe { libc::munmap(self.map.cast_mut().cast(), BYTES) };
    }
}

fn text(words: &[u64]) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..len]).into_owned()
}

fn put_text(out: &mut [u64], s: &str) {
    let mut bytes = vec![0u8; out.len() * 8];
    let mut cut = s.len().min(bytes.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    bytes[..cut].copy_from_slice(&s.as_bytes()[..cut]);
    for (w, c) in out.iter_mut().zip(bytes.chunks(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        *w = u64::from_le_bytes(b);
    }
}

fn decode(w: &[u64]) -> PageSnapshot {
    let ncores = (w[5] as usize).min(MAX_CORES);
    let ntop = (w[6] as usize).min(TOP_THREADS);
    let cores = (0..ncores)
        .map(|i| {
            let r = &w[HEADER + i * CORE_WORDS..][..CORE_WORDS];
            CoreRow {
                id: r[0] as usize,
                service: r[1] & 1 != 0,
                activity: match r[1] >> 8 {
                    0 => CoreActivity::Running,
                    1 => CoreActivity::Spinning,
                    2 => CoreActivity::Sleeping,
                    _ => CoreActivity::Stuck,
                },
                threads: r[2],
                switches: r[3],
                spawns: r[4],
                stolen_in: r[5],
                stolen_out: r[6],
                offloaded: r[7],
                service_queue: r[8],
                load_avg_x256: r[9],
                core_type: text(&r[10..12]),
            }
        })
        .collect();
    let top = (0..ntop)
        .map(|i| {
            let r = &w[HEADER + MAX_CORES * CORE_WORDS + i * THREAD_WORDS..][..THREAD_WORDS];
            let name = text(&r[2..6]);
            TopThread {
                id: r[0],
                ticks: r[1],
                name: (!name.is_empty()).then_some(name),
            }
        })
        .collect();
    PageSnapshot {
        pid: w[3] as u32,
        writes: w[4],
        tick_ns: w[7],
        cores,
        top,
    }
}

/// The writer side of a runtime's page.
pub(crate) struct PageWriter {
    map: *mut AtomicU64,
    path: PathBuf,
    /// Ticks at which each thread id was seen running, since the last page.
    samples: Mutex<HashMap<u64, u64>>,
    /// Per core: schedule points at the last page (for "stuck").
    last_points: Mutex<Vec<u64>>,
    writes: AtomicU64,
}

// SAFETY: the mapping is written through atomics, by one maintenance thread at a time; the sample maps are behind locks.
unsafe impl Send for PageWriter {}
// SAFETY: as above.
unsafe impl Sync for PageWriter {}

impl PageWriter {
    /// Creates this process's next free stats page.
    pub(crate) fn create() -> std::io::Result<PageWriter> {
        use std::os::unix::fs::OpenOptionsExt;
        let pid = std::process::id();
        let (file, path) = (1..=64)
            .find_map(|n| {
                let path = path_of(pid, n);
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&path)
                    .ok()
                    .map(|f| (f, path))
            })
            .ok_or_else(|| std::io::Error::other("no free stats page name in /dev/shm"))?;
        file.set_len(BYTES as u64)?;
        let map = map(&file, true)?;
        let w = PageWriter {
            map,
            path,
            samples: Mutex::new(HashMap::new()),
            last_points: Mutex::new(vec![0; MAX_CORES]),
            writes: AtomicU64::new(0),
        };
        w.store(0, MAGIC);
        w.store(1, 1);
        w.store(3, u64::from(pid));
        Ok(w)
    }

    fn store(&self, i: usize, v: u64) {
        // SAFETY: `i` < WORDS, inside the mapping, which lives as long as `self`.
        unsafe { (*self.map.add(i)).store(v, Ordering::Relaxed) };
    }

    /// The ticker's sample: which thread each core of `set` runs now.
    pub(crate) fn sample(&self, set: &CoreSet) {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        for c in set.started() {
            if c.clock.run.load(Ordering::Relaxed) != 0 && !set.is_service(c.id) {
                *s.entry(c.clock.id.load(Ordering::Relaxed)).or_default() += 1;
            }
        }
    }

    /// Writes the page from the cores of `set`, their system-call service `svc` and
    /// the samples since the last page; `tick_ns` is the runtime's tick period.
    pub(crate) fn write(&self, set: &CoreSet, svc: &Service, tick_ns: u64) {
        let mut words = vec![0u64; WORDS];
        let started = set.started();
        let mut last = self.last_points.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for c in started {
            if c.state() != CoreState::Active {
                continue;
            }
            let st = c.published_stats();
            let running = c.clock.run.load(Ordering::Relaxed) != 0;
            let points = c.clock.points.load(Ordering::Relaxed);
            let activity = if running && points == last[c.id] {
                3
            } else if running {
                0
            } else if c.doorbell.word().load(Ordering::Relaxed) != 0 {
                2
            } else {
                1
            };
            last[c.id] = points;
            let service = set.is_service(c.id);
            let (offloaded, queue) = match set.hyper {
                Some(h) if service => {
                    let k = c.id - h;
                    (svc.server_stats(k).served, svc.posted(set, k) as u64)
                }
                _ => (svc.served_for(c.id), svc.route(c.id) as u64),
            };
            let r = &mut words[HEADER + n * CORE_WORDS..][..CORE_WORDS];
            r[0] = c.id as u64;
            r[1] = u64::from(service) | activity << 8;
            r[2] = u64::from(c.published.load.load(Ordering::Relaxed));
            r[3] = st.switches;
            r[4] = st.spawned;
            r[5] = st.stolen_in;
            r[6] = st.stolen_out;
            r[7] = offloaded;
            r[8] = queue;
            r[9] = u64::from(c.load_avg.load(Ordering::Relaxed));
            put_text(
                &mut r[10..12],
                &set.types[c.ty.load(Ordering::Relaxed)].name,
            );
            n += 1;
        }
        drop(last);
        let samples = std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()));
        let mut top: Vec<(u64, u64)> = samples.into_iter().collect();
        top.sort_by_key(|&(id, ticks)| (std::cmp::Reverse(ticks), id));
        top.truncate(TOP_THREADS);
        for (i, &(id, ticks)) in top.iter().enumerate() {
            let r =
                &mut words[HEADER + MAX_CORES * CORE_WORDS + i * THREAD_WORDS..][..THREAD_WORDS];
            r[0] = id;
            r[1] = ticks;
            if let Some(name) = crate::task::slot::name_of(id) {
                put_text(&mut r[2..6], &name);
            }
        }
        let writes = self.writes.load(Ordering::Relaxed) + 1;
        self.writes.store(writes, Ordering::Relaxed);
        words[4] = writes;
        words[5] = n as u64;
        words[6] = top.len() as u64;
        words[7] = tick_ns;
        // The seqlock (module docs): odd, the data, even.
        // SAFETY: word 2 is inside the mapping.
        let seq = unsafe { &*self.map.add(2) };
        let s = seq.load(Ordering::Relaxed);
        seq.store(s + 1, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        for (i, &v) in words.iter().enumerate().skip(4) {
            self.store(i, v);
        }
        seq.store(s + 2, Ordering::Release);
    }
}

impl Drop for PageWriter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        // SAFETY: unmapping the mapping this value made.
        unsafe { libc::munmap(self.map.cast(), BYTES) };
    }
}
