//! Figures, their summary statistics and verdicts, and how they are printed (table) and saved (JSON).
//!
//! A verdict compares the *median* with the target; min and max are shown next to it so an outlier is
//! visible rather than hidden.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::{Value, json};

/// A bound a figure should stay within.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    Below(f64),
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    fn met_by(self, value: f64) -> bool {
        match self {
            Target::Below(limit) => value < limit,
            Target::AtMost(limit) => value <= limit,
            Target::AtLeast(limit) => value >= limit,
        }
    }

    fn text(self, unit: &str) -> String {
        match self {
            Target::Below(limit) => format!("< {} {unit}", trim(limit)),
            Target::AtMost(limit) => format!("<= {} {unit}", trim(limit)),
            Target::AtLeast(limit) => format!(">= {} {unit}", trim(limit)),
        }
    }

    fn to_json(self) -> Value {
        match self {
            Target::Below(limit) => json!({ "op": "<", "value": limit }),
            Target::AtMost(limit) => json!({ "op": "<=", "value": limit }),
            Target::AtLeast(limit) => json!({ "op": ">=", "value": limit }),
        }
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

/// Median, minimum and maximum of a sample set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Some(Summary {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

/// One measured quantity.
#[derive(Debug, Clone)]
pub struct Figure {
    pub id: Cow<'static, str>,
    pub name: Cow<'static, str>,
    pub unit: &'static str,
    /// Decimal places when printed.
    pub precision: usize,
    pub samples: Vec<f64>,
    pub target: Option<Target>,
    /// Why there are no samples (e.g. the OS has no `/proc`).
    pub unavailable: Option<String>,
}

impl Figure {
    pub fn new(
        id: impl Into<Cow<'static, str>>,
        name: impl Into<Cow<'static, str>>,
        unit: &'static str,
        target: Option<Target>,
    ) -> Figure {
        Figure {
            id: id.into(),
            name: name.into(),
            unit,
            precision: 2,
            samples: Vec::new(),
            target,
            unavailable: None,
        }
    }

    pub fn precision(mut self, precision: usize) -> Figure {
        self.precision = precision;
        self
    }

    pub fn summary(&self) -> Option<Summary> {
        Summary::of(&self.samples)
    }

    /// `meets`, `misses`, `info` (no target) or `unavailable`.
    pub fn verdict(&self) -> &'static str {
        match (self.summary(), self.target) {
            (None, _) => "unavailable",
            (Some(_), None) => "info",
            (Some(s), Some(t)) if t.met_by(s.median) => "meets",
            (Some(_), Some(_)) => "misses",
        }
    }

    pub fn target_text(&self) -> String {
        self.target.map_or("-".to_owned(), |t| t.text(self.unit))
    }

    fn value(&self, v: f64) -> String {
        format!("{v:.prec$} {}", self.unit, prec = self.precision)
    }

    pub fn to_json(&self) -> Value {
        let summary = self.summary();
        json!({
            "id": self.id,
            "name": self.name,
            "unit": self.unit,
            "runs": self.samples.len(),
            "median": summary.map(|s| s.median),
            "min": summary.map(|s| s.min),
            "max": summary.map(|s| s.max),
            "samples": self.samples,
            "target": self.target.map(Target::to_json),
            "target_text": self.target_text(),
            "verdict": self.verdict(),
            "unavailable": self.unavailable,
        })
    }
}

/// The figures as an aligned text table.
pub fn table(figures: &[Figure]) -> String {
    let header = ["figure", "median", "min", "max", "target", "verdict"];
    let rows: Vec<[String; 6]> = figures
        .iter()
        .map(|f| {
            let (median, min, max) = match f.summary() {
                Some(s) => (f.value(s.median), f.value(s.min), f.value(s.max)),
                None => ("n/a".to_owned(), "n/a".to_owned(), "n/a".to_owned()),
            };
            [
                f.name.to_string(),
                median,
                min,
                max,
                f.target_text(),
                f.verdict().to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            // Names and verdicts read left-aligned, numbers right-aligned.
            if i == 0 || i == 5 {
                let _ = write!(text, "{cell}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(text, "{}{cell}  ", " ".repeat(pad));
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(&header.map(str::to_owned));
    line(&widths.map(|w| "-".repeat(w)));
    for row in &rows {
        line(row);
    }
    out
}

/// Writes a bench's JSON report to `path` (pretty), creating its folder.
pub fn save_json(path: &std::path::Path, report: &Value) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    std::fs::write(path, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_uses_the_middle_of_sorted_samples() {
        let odd = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 3.0));
        let even = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((even.median, even.min, even.max), (2.5, 1.0, 4.0));
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn verdicts_compare_the_median_with_the_target() {
        let mut f = Figure::new("x", "x", "ms", Some(Target::Below(5.0)));
        assert_eq!(f.verdict(), "unavailable");
        f.samples = vec![4.0, 4.5, 9.0];
        assert_eq!(f.verdict(), "meets");
        f.samples = vec![5.0];
        assert_eq!(f.verdict(), "misses");
        f.target = Some(Target::AtMost(5.0));
        assert_eq!(f.verdict(), "meets");
        f.target = None;
        assert_eq!(f.verdict(), "info");
        assert_eq!(Target::Below(50.0).text("ms"), "< 50 ms");
    }
}
