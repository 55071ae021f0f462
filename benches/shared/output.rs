//! What a bench writes besides its printed lines: every figure it recorded as JSON, and
//! those in one unit as an SVG bar chart (`DIR/NAME.json`, `DIR/NAME.svg`).
#![allow(dead_code)] // shared by several benches; each uses part

use crate::chart::{self, Bar};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One figure: a name, its unit, and the median and range of its samples.
struct Figure {
    name: String,
    unit: String,
    median: f64,
    min: f64,
    max: f64,
    n: usize,
}

static FIGURES: Mutex<Vec<Figure>> = Mutex::new(Vec::new());

/// Records a figure for the JSON and chart written by [`write`].
pub fn record(name: &str, unit: &str, median: f64, min: f64, max: f64, n: usize) {
    FIGURES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Figure {
            name: name.trim().to_string(),
            unit: unit.trim().to_string(),
            median,
            min,
            max,
            n,
        });
}

/// Writes every recorded figure to `DIR/NAME.json` and those in `chart_unit` to
/// `DIR/NAME.svg` under `title`; prints where.
pub fn write(dir: &Path, name: &str, title: &str, chart_unit: &str) -> Result<(), String> {
    let figures = FIGURES.lock().unwrap_or_else(|p| p.into_inner());
    let json = serde_json::Value::Array(
        figures
            .iter()
            .map(|f| {
                serde_json::json!({"name": f.name, "unit": f.unit, "median": f.median,
                    "min": f.min, "max": f.max, "n": f.n})
            })
            .collect(),
    );
    let bars: Vec<Bar> = figures
        .iter()
        .filter(|f| f.unit == chart_unit)
        .map(|f| Bar {
            label: f.name.clone(),
            median: f.median,
            min: f.min,
            max: f.max,
            peer: false,
        })
        .collect();
    let (json_path, svg_path): (PathBuf, PathBuf) = (
        dir.join(format!("{name}.json")),
        dir.join(format!("{name}.svg")),
    );
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    std::fs::write(&json_path, text)
        .map_err(|e| format!("cannot write {}: {e}", json_path.display()))?;
    chart::write_in(&svg_path, title, chart_unit, &bars)?;
    println!("wrote {} and {}", json_path.display(), svg_path.display());
    Ok(())
}
