//! `--plot FILE.png`: the handoff and crash-failover distributions as cumulative curves on a log
//! time axis. Text is drawn with a font embedded in the binary (DejaVu Sans through `ab_glyph`), so
//! the PNG renders on a machine without system fonts.

use std::path::Path;
use std::sync::OnceLock;

use leader::{Error, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::Report;

type PlotResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const GREY: RGBColor = RGBColor(110, 110, 110);
const COLORS: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];

/// Draws `report`'s handoff and crash-failover samples into a PNG at `path`.
///
/// # Errors
/// [`Backend`](leader::ErrorKind::Backend) if the file cannot be written.
pub fn plot(report: &Report, path: &Path) -> Result<()> {
    fonts()?;
    draw(report, path).map_err(|e| Error::backend(format!("could not draw {}: {e}", path.display())))
}

fn fonts() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok =
        *REGISTERED.get_or_init(|| register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::backend("the embedded DejaVu Sans font could not be loaded"))
    }
}

/// (x = sample in ms, y = fraction of samples <= x), sorted.
fn cdf(samples: &[f64]) -> Vec<(f64, f64)> {
    let mut s: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    s.into_iter().enumerate().map(|(i, v)| (v.max(1e-4), (i + 1) as f64 / n)).collect()
}

/// The smallest and largest positive finite value (`None` if there is none).
fn extent(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold(None, |acc, v| Some(acc.map_or((v, v), |(lo, hi): (f64, f64)| (lo.min(v), hi.max(v)))))
}

impl Panel {
    /// Log axis (whole decades, so that every decade is labelled) when the values span more than
    /// a decade; a linear axis from 0 otherwise.
    fn draw_auto(
        &self,
        area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
        series: &[Series],
    ) -> PlotResult<()> {
        let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).chain(self.lease_ms);
        let (lo, hi) = extent(values).unwrap_or((1.0, 10.0));
        if hi / lo > 10.0 {
            let lo = 10f64.powf(lo.log10().floor()).max(1e-4);
            let hi = 10f64.powf((hi * 1.2).log10().ceil());
            self.draw(area, (lo..hi).log_scale(), series, "ms (log scale)")
        } else {
            self.draw(area, 0f64..hi * 1.25, series, "ms")
        }
    }
}

fn draw(report: &Report, path: &Path) -> PlotResult<()> {
    let root = BitMapBackend::new(path, (1280, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(40);
    title.draw(&Text::new(
        format!("leader-bench  {}  (provider {}, lease {:.0} ms)", report.store, report.provider, report.lease_ms),
        (20, 10),
        ("sans-serif", 20).into_font().color(&BLACK),
    ))?;
    let (left, right) = body.split_horizontally(640);

    // Handoff times span microseconds (push) to a lease (polling): the axis goes log then.
    let series: Vec<Series> = report
        .handoff
        .iter()
        .map(|h| Series {
            label: format!("{} (n={}, p50 {} ms)", h.mode, h.summary.n, short(h.summary.p50_ms)),
            points: cdf(&h.samples_ms),
        })
        .collect();
    let panel = Panel {
        caption: "Graceful handoff: stop() -> follower Acquired",
        y_desc: "fraction of handoffs",
        lease_ms: None,
    };
    panel.draw_auto(&left, &series)?;

    // Crash failover ranges from milliseconds (a store that notices the dead process) to about a
    // lease (one that waits for expiry); the lease is marked.
    let c = &report.crash_failover;
    let how = if c.mode.starts_with("process") { "SIGKILL" } else { "in-process drop" };
    let crash = vec![Series {
        label: format!("{how} (n={}, p50 {} ms)", c.summary.n, short(c.summary.p50_ms)),
        points: cdf(&c.samples_ms),
    }];
    let panel = Panel {
        caption: "Crash failover: holder killed -> new leader",
        y_desc: "fraction of runs",
        lease_ms: Some(c.lease_ms),
    };
    panel.draw_auto(&right, &crash)?;
    root.present()?;
    Ok(())
}

fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// An axis tick: at most three decimals, no trailing zeros.
fn tick(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

struct Series {
    label: String,
    points: Vec<(f64, f64)>,
}

struct Panel {
    caption: &'static str,
    y_desc: &'static str,
    lease_ms: Option<f64>,
}

impl Panel {
    fn draw<X>(
        &self,
        area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
        x: X,
        series: &[Series],
        x_desc: &str,
    ) -> PlotResult<()>
    where
        X: AsRangedCoord<Value = f64>,
        X::CoordDescType: ValueFormatter<f64>,
    {
        // The legend goes in a strip under the chart, where it cannot hide a curve.
        let mut entries: Vec<(String, RGBColor)> =
            series.iter().enumerate().map(|(i, s)| (s.label.clone(), COLORS[i % COLORS.len()])).collect();
        if let Some(lease) = self.lease_ms {
            entries.push((format!("lease duration ({lease:.0} ms)"), GREY));
        }
        let strip = 22 * entries.len() as u32 + 8;
        let (chart_area, legend_area) = area.split_vertically(area.dim_in_pixel().1.saturating_sub(strip));
        let mut chart = ChartBuilder::on(&chart_area)
            .caption(self.caption, ("sans-serif", 18))
            .margin(15)
            .margin_right(35)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(x, 0f64..1.05f64)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(self.y_desc)
            .x_labels(8)
            .x_label_formatter(&|v| tick(*v))
            .label_style(("sans-serif", 13))
            .draw()?;
        for (s, (_, color)) in series.iter().zip(&entries) {
            // A step curve: each sample raises the fraction at its own x.
            let mut steps = Vec::with_capacity(s.points.len() * 2);
            let mut prev = 0.0;
            for &(x, y) in &s.points {
                steps.push((x, prev));
                steps.push((x, y));
                prev = y;
            }
            chart.draw_series(LineSeries::new(steps, color.stroke_width(2)))?;
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        if let Some(lease) = self.lease_ms {
            chart.draw_series(LineSeries::new(vec![(lease, 0.0), (lease, 1.05)], GREY.stroke_width(2)))?;
        }
        for (i, (label, color)) in entries.iter().enumerate() {
            let y = 12 + 22 * i as i32;
            legend_area.draw(&PathElement::new(vec![(75, y), (105, y)], color.stroke_width(3)))?;
            legend_area.draw(&Text::new(label.clone(), (115, y - 8), ("sans-serif", 14).into_font().color(&BLACK)))?;
        }
        Ok(())
    }
}
