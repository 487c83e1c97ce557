//! Line charts as PNG files (plotters' bitmap backend), their text drawn with a TrueType font read
//! once at run time: `BENCH_FONT`, or Debian's DejaVu Sans that `ops/install` brings.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// Where the font is looked for when `BENCH_FONT` is unset.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// The size of every chart, in pixels.
pub const SIZE: (u32, u32) = (1000, 560);

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// No usable font.
    #[error("cannot use the font {path} ({why}); run ops/install, or set BENCH_FONT to a .ttf")]
    Font {
        /// The font file.
        path: String,
        /// Why.
        why: String,
    },
    /// plotters failed to draw or to write the file.
    #[error("cannot draw {path}: {why}")]
    Draw {
        /// The chart file.
        path: String,
        /// Why.
        why: String,
    },
}

/// One line: its name in the legend and its points `(seconds, value)`.
pub struct Line {
    /// The legend.
    pub name: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

fn font() -> Result<(), PlotError> {
    // (path, why) when the font could not be used.
    static FONT: OnceLock<Result<(), (String, String)>> = OnceLock::new();
    FONT.get_or_init(|| {
        let path = std::env::var("BENCH_FONT").unwrap_or_else(|_| DEFAULT_FONT.to_owned());
        let bytes = std::fs::read(&path).map_err(|e| (path.clone(), e.to_string()))?;
        // plotters keeps fonts for the life of the process; this one is read once.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| (path.clone(), "not a TrueType font".to_owned()))
    })
    .clone()
    .map_err(|(path, why)| PlotError::Font { path, why })
}

/// How the values are laid along the vertical axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Evenly.
    Linear,
    /// By their logarithm, so 40 ms and 60 s are both readable on one chart; values under 0.1
    /// are drawn at 0.1.
    Log,
}

/// The smallest value a [`Scale::Log`] chart shows.
const LOG_FLOOR: f64 = 0.1;

/// A number as a label: at most three significant digits, no trailing zeros.
fn label(value: f64) -> String {
    if value >= 1000.0 {
        let unit = 10f64.powi(value.log10().floor() as i32 - 2);
        return format!("{:.0}", (value / unit).round() * unit);
    }
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{value:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Draws `lines` over `0..x_max` seconds into the PNG file `path`.
pub fn lines(
    path: &Path,
    title: &str,
    y_desc: &str,
    x_max: f64,
    scale: Scale,
    lines: &[Line],
) -> Result<(), PlotError> {
    font()?;
    let name = path.display().to_string();
    let draw = |why: String| PlotError::Draw {
        path: name.clone(),
        why,
    };
    // On a log scale the chart's own axis is linear, over the values' logarithms, and its
    // labels say the values.
    let to_axis = |y: f64| match scale {
        Scale::Linear => y,
        Scale::Log => y.max(LOG_FLOOR).log10(),
    };
    let from_axis = |v: f64| match scale {
        Scale::Linear => v,
        Scale::Log => 10f64.powf(v),
    };
    let values = || {
        lines
            .iter()
            .flat_map(|l| l.points.iter().map(|&(_, y)| to_axis(y)))
    };
    let (y_min, y_max) = match scale {
        Scale::Linear => {
            let top = values().fold(0.0_f64, f64::max);
            (0.0, if top > 0.0 { top * 1.1 } else { 1.0 })
        }
        Scale::Log => {
            let low = values().fold(f64::INFINITY, f64::min);
            let high = values().fold(f64::NEG_INFINITY, f64::max);
            if low.is_finite() {
                (low.floor(), high.ceil().max(low.floor() + 1.0))
            } else {
                (0.0, 1.0)
            }
        }
    };
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..x_max.max(1.0), y_min..y_max)
        .map_err(|e| draw(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the start")
        .y_desc(y_desc)
        .y_label_formatter(&|v| label(from_axis(*v)))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| draw(e.to_string()))?;
    for (i, line) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                line.points.iter().map(|&(x, y)| (x, to_axis(y))),
                color.stroke_width(2),
            ))
            .map_err(|e| draw(e.to_string()))?
            .label(line.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| draw(e.to_string()))?;
    root.present().map_err(|e| draw(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn labels_keep_three_significant_digits_at_most() {
        let labels: Vec<String> = [0.1, 0.316, 3.16, 31.6, 316.2, 31_622.8, 60_000.0]
            .map(label)
            .into();
        assert_eq!(
            labels,
            ["0.1", "0.32", "3.16", "31.6", "316", "31600", "60000"]
        );
    }
}
