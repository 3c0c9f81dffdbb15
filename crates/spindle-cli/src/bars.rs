//! `spindle bench --plot FILE.svg` (without `--scaling`): the peer comparison as bars,
//! one chart per bench, one bar per runtime: its time per operation as a multiple of
//! spindle's (1 = as fast as spindle; above 1, slower).

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use crate::bench::Record;

/// The ratios to spindle per bench: `(bench, [(runtime, ratio)])`, for the benches
/// that have a spindle figure and at least one peer.
pub fn ratios(records: &[Record]) -> Vec<(String, Vec<(String, f64)>)> {
    let mut by_bench: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.ns_per_op.is_finite() && r.ns_per_op > 0.0)
    {
        by_bench.entry(r.bench.as_str()).or_default().push(r);
    }
    by_bench
        .into_iter()
        .filter_map(|(bench, rs)| {
            let spindle = rs.iter().find(|r| r.runtime == "spindle")?.ns_per_op;
            let bars: Vec<(String, f64)> = rs
                .iter()
                .map(|r| (r.runtime.clone(), r.ns_per_op / spindle))
                .collect();
            (bars.len() > 1).then(|| (bench.to_owned(), bars))
        })
        .collect()
}

/// Draws the ratios of `records` into the SVG file `path`.
///
/// # Errors
///
/// A message if there is nothing to draw or the file cannot be written.
pub fn draw(records: &[Record], path: &Path) -> Result<(), String> {
    let charts = ratios(records);
    if charts.is_empty() {
        return Err("nothing to plot: no bench with spindle and a peer".into());
    }
    let cols = 2;
    let rows = charts.len().div_ceil(cols);
    let root = SVGBackend::new(path, (1000, 300 * rows as u32)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    for (area, (bench, bars)) in root.split_evenly((rows, cols)).iter().zip(&charts) {
        let top = bars.iter().map(|b| b.1).fold(1.0, f64::max) * 1.15;
        let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{bench}: time per op / spindle's"),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d((0..bars.len()).into_segmented(), 0f64..top)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (name, ratio))| {
                let c = if name == "spindle" {
                    RGBColor(200, 40, 40)
                } else {
                    RGBColor(90, 110, 170)
                };
                Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), *ratio),
                    ],
                    c.filled(),
                )
            }))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(bench: &str, runtime: &str, ns: f64) -> Record {
        Record {
            bench: bench.into(),
            runtime: runtime.into(),
            ns_per_op: ns,
            ops: 1,
            extra: Default::default(),
        }
    }

    #[test]
    fn ratios_are_against_spindle_and_need_a_peer() {
        let rs = [
            rec("switch", "spindle", 20.0),
            rec("switch", "may", 50.0),
            rec("alone", "spindle", 5.0),
            rec("nospindle", "tokio", 5.0),
        ];
        let r = ratios(&rs);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, "switch");
        assert_eq!(r[0].1, [("spindle".into(), 1.0), ("may".into(), 2.5)]);
        let path = std::env::temp_dir().join(format!("spindle-bars-{}.svg", std::process::id()));
        draw(&rs, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.contains("<svg") && svg.contains("switch"), "{svg}");
    }
}
