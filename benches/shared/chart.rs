//! A horizontal bar chart as SVG (median bar, min-max line), log scale; the left
//! margin fits the longest label and the right margin the longest value, so that
//! nothing is cut off at either edge.
#![allow(dead_code)] // shared by several benches; each uses part

use std::path::Path;

/// One bar: a label, the median and the range, in the chart's unit.
pub struct Bar {
    pub label: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Drawn in the peer's colour (another VMM or a container runtime).
    pub peer: bool,
}

/// Rough width of `text` at 12 px sans-serif.
fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * 7.0
}

/// Writes `bars` under `title` to `path`, values in `unit` (milliseconds for `write`).
pub fn write(path: &Path, title: &str, bars: &[Bar]) -> Result<(), String> {
    write_in(path, title, "ms", bars)
}

/// Writes `bars` under `title` to `path`, values in `unit`.
pub fn write_in(path: &Path, title: &str, unit: &str, bars: &[Bar]) -> Result<(), String> {
    let left = bars
        .iter()
        .map(|b| text_width(&b.label))
        .fold(80.0, f64::max)
        + 20.0;
    let (plot, row, gap) = (560.0, 22.0, 12.0);
    let value = |v: f64| format!("{v:.2} {unit}");
    let right = bars
        .iter()
        .map(|b| text_width(&value(b.median)))
        .fold(60.0, f64::max)
        + 20.0;
    let width = (left + plot + right).max(text_width(title) + 20.0);
    let height = 75.0 + bars.len() as f64 * (row + gap);
    let positive = |v: f64| v.max(0.01);
    let lo = bars
        .iter()
        .map(|b| positive(b.min))
        .fold(f64::MAX, f64::min)
        .log10()
        .floor();
    let hi = bars
        .iter()
        .map(|b| positive(b.max))
        .fold(0.01, f64::max)
        .log10()
        .ceil()
        .max(lo + 1.0);
    let x = |ms: f64| left + (positive(ms).log10() - lo) / (hi - lo) * plot;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">{}</text>\n",
        escape(title)
    );
    for decade in (lo as i32)..=(hi as i32) {
        let ms = 10f64.powi(decade);
        let gx = x(ms);
        svg += &format!(
            "<line x1=\"{gx:.1}\" y1=\"35\" x2=\"{gx:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{gx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{ms} {unit}</text>\n",
            height - 28.0,
            height - 12.0
        );
    }
    for (i, b) in bars.iter().enumerate() {
        let y = 42.0 + i as f64 * (row + gap);
        let colour = if b.peer { "#e07b39" } else { "#3a7bd5" };
        let mid = y + row / 2.0;
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n\
             <rect x=\"{left:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{row}\" fill=\"{colour}\"/>\n\
             <line x1=\"{:.1}\" y1=\"{mid:.1}\" x2=\"{:.1}\" y2=\"{mid:.1}\" stroke=\"#000\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            left - 8.0,
            y + row * 0.7,
            escape(&b.label),
            (x(b.median) - left).max(1.0),
            x(b.min),
            x(b.max),
            left + plot + 8.0,
            y + row * 0.7,
            value(b.median)
        );
    }
    svg += "</svg>\n";
    std::fs::write(path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
