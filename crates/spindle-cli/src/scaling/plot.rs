//! `spindle bench --scaling --plot FILE.svg`: speedup against cores, one chart per
//! workload, one line per runtime, the ideal speedup dashed.

use std::path::Path;

use plotters::prelude::*;

use super::{Outcome, Peer, Work};

/// A colour per runtime.
fn colour(p: Peer) -> RGBColor {
    match p {
        Peer::Spindle => RGBColor(200, 40, 40),
        Peer::Tokio => RGBColor(40, 90, 200),
        Peer::May => RGBColor(40, 150, 60),
        Peer::Std => RGBColor(120, 120, 120),
        Peer::Go => RGBColor(0, 160, 190),
    }
}

/// Draws `o` into the SVG file `path`.
///
/// # Errors
///
/// A message if the file cannot be written.
pub fn draw(o: &Outcome, path: &Path) -> Result<(), String> {
    let works: Vec<Work> = Work::ALL
        .into_iter()
        .filter(|w| o.rows.iter().any(|r| r.work == *w))
        .collect();
    if works.is_empty() {
        return Err("nothing to plot".into());
    }
    let cols = 2;
    let rows = works.len().div_ceil(cols);
    let root = SVGBackend::new(path, (1000, 360 * rows as u32)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let max_cores = o.rows.iter().map(|r| r.cores).max().unwrap_or(1) as f64;
    for (area, work) in root.split_evenly((rows, cols)).iter().zip(&works) {
        let mine: Vec<_> = o.rows.iter().filter(|r| r.work == *work).collect();
        let top = mine
            .iter()
            .filter_map(|r| o.speedup(r))
            .fold(max_cores, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(work.name(), ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(1f64..max_cores, 0f64..top)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("cores")
            .y_desc("speedup")
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(DashedLineSeries::new(
                [(1.0, 1.0), (max_cores, max_cores)],
                4,
                4,
                BLACK.stroke_width(1),
            ))
            .map_err(|e| err(&e))?;
        for peer in Peer::ALL {
            let mut pts: Vec<(f64, f64)> = mine
                .iter()
                .filter(|r| r.peer == peer)
                .filter_map(|r| Some((r.cores as f64, o.speedup(r)?)))
                .collect();
            if pts.is_empty() {
                continue;
            }
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let c = colour(peer);
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(peer.name())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2)));
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}
