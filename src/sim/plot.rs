//! `--plot FILE.svg`: earnings over time of the four strategies (top) and the allocation over
//! time per strategy of each resource a node earns with (one panel per node and resource:
//! Golem's cores and memory, Storj's disk and bandwidth, …), drawn with `plotters`' SVG
//! backend. Resources a node is not paid for (the cores a strategy takes from Storj) are left
//! out: they would crowd out the ones the earnings depend on.

use std::path::Path;

use plotters::prelude::*;

use crate::resources::Resource;
use crate::sim::driver::Report;
use crate::sim::scenario::Scenario;

#[derive(Debug, thiserror::Error)]
#[error("drawing the plot: {0}")]
pub struct PlotError(String);

const STRATEGIES: [(&str, RGBColor); 4] = [
    ("depin_orcha", RGBColor(31, 119, 180)),
    ("greedy", RGBColor(255, 127, 14)),
    ("static", RGBColor(127, 127, 127)),
    ("oracle", RGBColor(44, 160, 44)),
];

fn err(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

pub fn draw(report: &Report, scenario: &Scenario, path: &Path) -> Result<(), PlotError> {
    let panels: Vec<(String, Resource)> = scenario
        .nodes
        .iter()
        .flat_map(|n| {
            n.protocol
                .resources()
                .into_iter()
                .map(|r| (n.name.clone(), r))
        })
        .collect();
    let height = 320 + 220 * panels.len() as u32;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, rest) = root.split_vertically(320);
    let t0 = report
        .strategies
        .values()
        .filter_map(|s| s.earned_curve.first().map(|p| p.0))
        .min()
        .unwrap_or(0);
    let hours = |t: i64| (t - t0) as f64 / 3_600_000.0;
    let end_h = report.days * 24.0;
    let max_usd = report
        .strategies
        .values()
        .flat_map(|s| s.earned_curve.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!("{}: cumulative USD earned", report.scenario),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end_h, 0.0..max_usd * 1.05)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("hours")
        .y_desc("USD")
        .draw()
        .map_err(err)?;
    for (name, color) in STRATEGIES {
        if let Some(s) = report.strategies.get(name) {
            chart
                .draw_series(LineSeries::new(
                    s.earned_curve.iter().map(|&(t, v)| (hours(t), v)),
                    color.stroke_width(2),
                ))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    let areas = rest.split_evenly((panels.len().max(1), 1));
    for ((node, r), area) in panels.iter().zip(areas.iter()) {
        let r = *r;
        let step = |s: &crate::sim::driver::StrategyResult| -> Vec<(f64, f64)> {
            let mut pts = Vec::new();
            for (i, (t, a)) in s.path.iter().enumerate() {
                let v = a.get(node).map(|a| a.get(r)).unwrap_or(0.0);
                if i > 0 {
                    if let Some(prev) = pts.last().map(|p: &(f64, f64)| p.1) {
                        pts.push((hours(*t), prev));
                    }
                }
                pts.push((hours(*t), v));
            }
            if let Some(&(_, v)) = pts.last() {
                pts.push((end_h, v));
            }
            pts
        };
        let max_v = report
            .strategies
            .values()
            .flat_map(|s| step(s).into_iter().map(|p| p.1))
            .fold(0.0f64, f64::max)
            .max(1e-9);
        let mut c = ChartBuilder::on(area)
            .caption(format!("{node}: {}", r.key()), ("sans-serif", 14))
            .margin(10)
            .x_label_area_size(25)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..end_h, 0.0..max_v * 1.1)
            .map_err(err)?;
        // Amounts in the resource's own words (10GiB, 2.5MB/s), not raw bytes.
        c.configure_mesh()
            .y_label_formatter(&|v| crate::optimizer::fmt_amount(r, *v))
            .draw()
            .map_err(err)?;
        for (name, color) in STRATEGIES {
            if let Some(s) = report.strategies.get(name) {
                c.draw_series(LineSeries::new(step(s), color.stroke_width(1)))
                    .map_err(err)?;
            }
        }
    }
    root.present().map_err(err)?;
    Ok(())
}
