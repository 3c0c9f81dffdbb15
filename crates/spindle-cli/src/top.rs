//! `spindle top PID`: a live view of a running spindle program's cores, read from its
//! stats page (`spindle::page`), refreshed 4 times a second.

use std::time::{Duration, Instant};

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Paragraph, Row, Table};
use spindle::page::{CoreActivity, PAGE_EVERY, PageSnapshot, StatsPage};

/// How often the view is redrawn.
const REFRESH: Duration = Duration::from_millis(250);

/// Two snapshots of the page: what one frame shows (rates over the pages between).
struct View {
    pid: u32,
    now: PageSnapshot,
    before: Option<PageSnapshot>,
}

impl View {
    /// A per-second rate of a counter of core `id` (0 before the second snapshot).
    fn rate(&self, id: usize, f: impl Fn(&spindle::page::CoreRow) -> u64) -> f64 {
        let Some(before) = &self.before else {
            return 0.0;
        };
        let (Some(a), Some(b)) = (
            before.cores.iter().find(|c| c.id == id),
            self.now.cores.iter().find(|c| c.id == id),
        ) else {
            return 0.0;
        };
        let pages = self.now.writes.saturating_sub(before.writes).max(1);
        f(b).saturating_sub(f(a)) as f64 / (pages as f64 * PAGE_EVERY.as_secs_f64())
    }
}

fn activity(a: CoreActivity) -> &'static str {
    match a {
        CoreActivity::Running => "running",
        CoreActivity::Spinning => "spinning",
        CoreActivity::Sleeping => "sleeping",
        CoreActivity::Stuck => "STUCK",
    }
}

fn draw(f: &mut Frame<'_>, v: &View) {
    let n = v.now.cores.len() as u16;
    let [head, cores, threads, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(n + 3),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(
        Paragraph::new(format!(
            "spindle top — pid {} — page {} — {} cores",
            v.pid,
            v.now.writes,
            v.now.cores.len()
        )),
        head,
    );
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let rows = v.now.cores.iter().map(|c| {
        let kind = if c.service {
            "service".to_owned()
        } else {
            c.core_type.clone()
        };
        let service = if c.service {
            format!("queue {}", c.service_queue)
        } else {
            format!("by {}", c.service_queue)
        };
        Row::new(vec![
            c.id.to_string(),
            kind,
            activity(c.activity).to_owned(),
            c.threads.to_string(),
            format!("{:.0}", v.rate(c.id, |r| r.switches)),
            format!("{:.0}", v.rate(c.id, |r| r.spawns)),
            format!(
                "{:.0}/{:.0}",
                v.rate(c.id, |r| r.stolen_in),
                v.rate(c.id, |r| r.stolen_out)
            ),
            format!("{:.0}", v.rate(c.id, |r| r.offloaded)),
            service,
            format!("{:.2}", c.load_avg_x256 as f64 / 256.0),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(4),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(11),
            Constraint::Length(9),
            Constraint::Length(13),
            Constraint::Length(11),
            Constraint::Length(10),
            Constraint::Length(6),
        ],
    )
    .header(
        Row::new(vec![
            "core",
            "type",
            "state",
            "runnable",
            "switches/s",
            "spawns/s",
            "steal in/out",
            "syscalls/s",
            "service",
            "load",
        ])
        .style(bold),
    )
    .block(Block::bordered().title(" cores "));
    f.render_widget(table, cores);
    let tick_ms = v.now.tick_ns as f64 / 1e6;
    let top = v.now.top.iter().map(|t| {
        Row::new(vec![
            t.id.to_string(),
            t.name.clone().unwrap_or_else(|| "-".to_owned()),
            format!("{:.0} ms", t.ticks as f64 * tick_ms),
        ])
    });
    let table = Table::new(
        top,
        [
            Constraint::Length(14),
            Constraint::Length(34),
            Constraint::Length(12),
        ],
    )
    .header(Row::new(vec!["thread", "name", "ran"]).style(bold))
    .block(Block::bordered().title(format!(
        " threads that ran longest in the last {} ms ",
        PAGE_EVERY.as_millis()
    )));
    f.render_widget(table, threads);
    f.render_widget(Paragraph::new("q: quit"), help);
}

/// Whether process `pid` still exists.
fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Runs `spindle top PID`; with `once`, prints one frame (two snapshots a page
/// apart) as text instead of taking over the terminal.
///
/// # Errors
///
/// The page's error (the process has no stats page, ...), or the terminal's.
pub fn run(pid: u32, once: bool) -> Result<(), String> {
    let page = StatsPage::open(pid).map_err(|e| e.to_string())?;
    let first = page.read().map_err(|e| e.to_string())?;
    if once {
        let t0 = Instant::now();
        let mut now = page.read().map_err(|e| e.to_string())?;
        while now.writes == first.writes && t0.elapsed() < 4 * PAGE_EVERY {
            std::thread::sleep(Duration::from_millis(20));
            now = page.read().map_err(|e| e.to_string())?;
        }
        let v = View {
            pid,
            now,
            before: Some(first),
        };
        let backend = ratatui::backend::TestBackend::new(110, (v.now.cores.len() + 18) as u16);
        let mut term = ratatui::Terminal::new(backend).map_err(|e| e.to_string())?;
        term.draw(|f| draw(f, &v)).map_err(|e| e.to_string())?;
        let buf = term.backend().buffer();
        for y in 0..buf.area.height {
            let line: String = (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol().to_owned())
                .collect();
            println!("{}", line.trim_end());
        }
        return Ok(());
    }
    let mut term = ratatui::init();
    // The last two distinct pages: rates are taken between them.
    let mut last = first;
    let mut before: Option<PageSnapshot> = None;
    let result = (|| -> Result<(), String> {
        loop {
            let now = page.read().map_err(|e| e.to_string())?;
            if now.writes != last.writes {
                before = Some(std::mem::replace(&mut last, now));
            }
            let v = View {
                pid,
                now: last.clone(),
                before: before.clone(),
            };
            term.draw(|f| draw(f, &v)).map_err(|e| e.to_string())?;
            if !alive(pid) {
                return Err(format!("process {pid} has ended"));
            }
            use ratatui::crossterm::event::{self, Event, KeyCode};
            if event::poll(REFRESH).map_err(|e| e.to_string())?
                && let Event::Key(k) = event::read().map_err(|e| e.to_string())?
                && matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
            {
                return Ok(());
            }
        }
    })();
    ratatui::restore();
    result
}
