//! The trace export (`SPINDLE_TRACE=out.json`, `RuntimeBuilder::trace`): the cores'
//! event rings (`sched::trace`) drained into one Chrome trace-event JSON file, which
//! Perfetto's UI and `chrome://tracing` load.
//!
//! - One track per core (`tid` = core id, named `core N`); a slice per run of a thread
//!   (`B` at its switch-in, `E` at its switch-out, with why it stopped: `yield`,
//!   `wait: <reason>`, `exit`, `migrate`). A slice still open when the trace ends is
//!   closed at the last event's time, so every `B` has its `E`.
//! - Instant events on the core where they happened: `spawn` (with the spawner),
//!   `wake` (with the waker), `syscall begin` and `syscall end` (with the number),
//!   `preempt`, and `migrate` (a run that begins on another core than the thread's
//!   last one, with that core).
//! - A maintenance thread drains the rings every [`DRAIN_EVERY`]; the shutdown drains
//!   them a last time and closes the file. Events that found a ring full are dropped
//!   and counted in the file's `spindleDropped`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::sched::trace::{Event, Kind, OUT_EXIT, OUT_MIGRATE, OUT_WAIT, OUT_YIELD, Ring};
use crate::sched::{Core, CoreSet, MAX_CORES};

/// How often the rings are drained.
pub(crate) const DRAIN_EVERY: Duration = Duration::from_millis(10);

/// The environment variable that names the trace file of runtimes whose builder
/// names none.
pub const TRACE_ENV: &str = "SPINDLE_TRACE";

/// Events a core's ring holds between two drains (32 bytes each).
const RING_EVENTS: usize = 1 << 16;

/// A runtime's trace: the rings of its cores and the file they go to.
pub(crate) struct Trace {
    rings: Box<[OnceLock<Ring>]>,
    epoch: Instant,
    out: Mutex<Out>,
}

struct Out {
    file: Option<BufWriter<File>>,
    /// The thread whose slice is open on each core.
    open: HashMap<usize, u64>,
    /// The core each thread last ran on.
    last_core: HashMap<u64, usize>,
    /// Slice names of threads seen.
    names: HashMap<u64, String>,
    last_t: u64,
    error: Option<std::io::Error>,
}

impl Trace {
    /// Creates the trace file at `path` and writes its head.
    pub(crate) fn create(path: &std::path::Path) -> std::io::Result<Trace> {
        let mut file = BufWriter::new(File::create(path)?);
        file.write_all(b"{\"traceEvents\":[\n")?;
        write!(
            file,
            "{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,\"args\":{{\"name\":\"spindle pid {}\"}}}}",
            std::process::id()
        )?;
        Ok(Trace {
            rings: (0..MAX_CORES).map(|_| OnceLock::new()).collect(),
            epoch: Instant::now(),
            out: Mutex::new(Out {
                file: Some(file),
                open: HashMap::new(),
                last_core: HashMap::new(),
                names: HashMap::new(),
                last_t: 0,
                error: None,
            }),
        })
    }

    /// Gives core `core` its ring, before it first starts.
    pub(crate) fn attach(&self, core: &Core) {
        let ring = self.rings[core.id].get_or_init(|| Ring::new(RING_EVENTS, self.epoch));
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let id = core.id;
        out.emit(format_args!(
            "{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":{id},\"args\":{{\"name\":\"core {id}\"}}}}"
        ));
        drop(out);
        // SAFETY: the ring lives in this trace, which the runtime owns and keeps until its cores are gone.
        unsafe { core.set_trace(ring) };
    }

    /// Writes what the rings hold.
    pub(crate) fn drain(&self, set: &CoreSet) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let mut events = Vec::new();
        for c in set.started() {
            let Some(ring) = self.rings[c.id].get() else {
                continue;
            };
            events.clear();
            ring.drain(&mut events);
            for e in &events {
                out.event(c.id, e);
            }
        }
    }

    /// The last drain: closes the open slices and the file. Returns an error met
    /// while writing, if any.
    pub(crate) fn finish(&self, set: &CoreSet) -> Option<std::io::Error> {
        self.drain(set);
        let dropped: u64 = self
            .rings
            .iter()
            .filter_map(OnceLock::get)
            .map(|r| r.dropped.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let open: Vec<(usize, u64)> = out.open.drain().collect();
        let t = out.last_t;
        for (core, thread) in open {
            out.slice_end(core, thread, t, "end of trace");
        }
        if let Some(mut f) = out.file.take() {
            let r = write!(f, "\n],\"spindleDropped\":{dropped}}}\n").and_then(|()| f.flush());
            if let Err(e) = r {
                out.error.get_or_insert(e);
            }
        }
        out.error.take()
    }
}

/// The name of a wait kind (`task::dump`'s encoding) in a slice's end.
fn wait_name(kind: u64) -> &'static str {
    match kind {
        1 => "park",
        2 => "sleep",
        3 => "mutex",
        4 => "rwlock",
        5 => "condvar",
        6 => "channel",
        7 => "semaphore",
        8 => "barrier",
        9 => "wait group",
        10 => "join",
        11 => "syscall",
        12 => "request slot",
        13 => "io",
        14 => "blocking pool",
        _ => "other",
    }
}

impl Out {
    fn emit(&mut self, args: std::fmt::Arguments<'_>) {
        if let Some(f) = &mut self.file {
            let r = f.write_all(b",\n").and_then(|()| f.write_fmt(args));
            if let Err(e) = r {
                self.error.get_or_insert(e);
                self.file = None;
            }
        }
    }

    fn name(&mut self, thread: u64) -> String {
        self.names
            .entry(thread)
            .or_insert_with(|| match crate::task::slot::name_of(thread) {
                Some(n) => format!("{thread} {}", n.replace(['"', '\\'], "_")),
                None => format!("thread {thread}"),
            })
            .clone()
    }

    fn slice_end(&mut self, core: usize, thread: u64, t: u64, why: &str) {
        let name = self.name(thread);
        self.emit(format_args!(
            "{{\"name\":\"{name}\",\"ph\":\"E\",\"ts\":{},\"pid\":1,\"tid\":{core},\"args\":{{\"thread\":{thread},\"why\":\"{why}\"}}}}",
            us(t)
        ));
    }

    fn instant(&mut self, core: usize, t: u64, name: &str, args: std::fmt::Arguments<'_>) {
        self.emit(format_args!(
            "{{\"name\":\"{name}\",\"ph\":\"i\",\"s\":\"t\",\"ts\":{},\"pid\":1,\"tid\":{core},\"args\":{{{args}}}}}",
            us(t)
        ));
    }

    fn event(&mut self, core: usize, e: &Event) {
        self.last_t = self.last_t.max(e.t);
        let (t, thread) = (e.t, e.thread);
        match e.kind {
            Kind::In => {
                if let Some(prev) = self.open.remove(&core) {
                    // An out that was dropped: close the slice here.
                    self.slice_end(core, prev, t, "unknown");
                }
                if let Some(&from) = self.last_core.get(&thread)
                    && from != core
                {
                    self.instant(
                        core,
                        t,
                        "migrate",
                        format_args!("\"thread\":{thread},\"from\":{from}"),
                    );
                }
                self.last_core.insert(thread, core);
                self.open.insert(core, thread);
                let name = self.name(thread);
                self.emit(format_args!(
                    "{{\"name\":\"{name}\",\"ph\":\"B\",\"ts\":{},\"pid\":1,\"tid\":{core},\"args\":{{\"thread\":{thread}}}}}",
                    us(t)
                ));
            }
            Kind::Out => {
                if self.open.get(&core) == Some(&thread) {
                    self.open.remove(&core);
                    let why = match e.arg & 0xff {
                        OUT_YIELD => "yield".to_owned(),
                        OUT_WAIT => format!("wait: {}", wait_name(e.arg >> 8)),
                        OUT_EXIT => "exit".to_owned(),
                        OUT_MIGRATE => "migrate".to_owned(),
                        _ => "other".to_owned(),
                    };
                    self.slice_end(core, thread, t, &why);
                }
            }
            Kind::Spawn => self.instant(
                core,
                t,
                "spawn",
                format_args!("\"thread\":{thread},\"by\":{}", e.arg),
            ),
            Kind::Wake => self.instant(
                core,
                t,
                "wake",
                format_args!("\"thread\":{thread},\"by\":{}", e.arg),
            ),
            Kind::SyscallBegin | Kind::SyscallEnd => {
                let name = if e.kind == Kind::SyscallBegin {
                    "syscall begin"
                } else {
                    "syscall end"
                };
                self.instant(
                    core,
                    t,
                    name,
                    format_args!("\"thread\":{thread},\"nr\":{}", e.arg),
                );
            }
            Kind::Preempt => {
                self.instant(core, t, "preempt", format_args!("\"thread\":{thread}"));
            }
        }
    }
}

/// Nanoseconds as the microseconds of the format, with three decimals.
fn us(ns: u64) -> String {
    format!("{}.{:03}", ns / 1000, ns % 1000)
}
