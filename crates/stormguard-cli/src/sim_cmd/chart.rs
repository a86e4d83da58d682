//! One time-series chart of the report as inline SVG, drawn by `plotters`: lines over the run's
//! seconds with the scenario's fault and load windows shaded behind them, so cause and effect
//! are seen on the same axis.
//!
//! plotters' SVG backend writes text as `<text>` elements and sizes labels with its built-in
//! estimate when no font feature is enabled, so the chart needs no system font to be drawn, and
//! it escapes every text it writes.

use plotters::prelude::*;
use stormguard_sim::engine::Trigger;

/// Colours that stay apart on white and for the common colour blindnesses (Tableau 10).
pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Shades of the trigger windows: warm and pale, behind the lines.
pub(crate) const SHADES: [RGBColor; 4] = [
    RGBColor(255, 99, 71),
    RGBColor(255, 193, 7),
    RGBColor(156, 39, 176),
    RGBColor(0, 150, 136),
];

/// How much of a shade shows through: light enough that lines over it stay readable.
pub(crate) const SHADE_OPACITY: f64 = 0.18;

/// One line of a chart.
pub(crate) struct Series {
    pub(crate) label: String,
    pub(crate) colour: RGBColor,
    /// Dashed: the second file's run, over the first file's solid line.
    pub(crate) dashed: bool,
    /// Stroke width in px: a line drawn over another of the same values is drawn narrower, so
    /// both stay visible.
    pub(crate) width: u32,
    /// 1 for a line on its own; less for A's solid line under B's dashed one of the same
    /// colour, so that where the two are equal the dashes still show.
    pub(crate) opacity: f64,
    pub(crate) points: Vec<(f64, f64)>,
}

/// A chart: its lines and what the y axis measures.
pub(crate) struct Chart {
    pub(crate) title: String,
    pub(crate) y_desc: String,
    pub(crate) series: Vec<Series>,
    /// Fixed top of the y axis (a share is at most 1); `None`: from the data.
    pub(crate) y_max: Option<f64>,
}

/// How far the plotted values of a chart may spread before its y axis turns logarithmic: past
/// 20x, a linear axis flattens the smaller lines against zero (a spike of 6,000/s over lines of
/// 100/s).
pub(crate) const LOG_SPAN: f64 = 20.0;

/// A log y axis: the powers of ten at its ends, and whether its bottom stands for zero.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct LogAxis {
    pub(crate) lowest: f64,
    pub(crate) highest: f64,
    /// The chart has zeros: they are drawn on the bottom, a decade below the smallest positive
    /// value, which is labelled `0` rather than a power of ten that no value has.
    pub(crate) zero: bool,
}

/// The log y axis of a chart whose positive values span more than [`LOG_SPAN`] (zeros left out
/// of the span); `None`: linear. A share (fixed `y_max`) stays linear.
pub(crate) fn log_axis(chart: &Chart) -> Option<LogAxis> {
    if chart.y_max.is_some() {
        return None;
    }
    let values = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite());
    let (mut lo, mut hi, mut zero) = (f64::INFINITY, 0.0_f64, false);
    for y in values {
        if y > 0.0 {
            (lo, hi) = (lo.min(y), hi.max(y));
        } else {
            zero = true;
        }
    }
    (hi / lo > LOG_SPAN).then(|| LogAxis {
        lowest: lo.log10().floor() - if zero { 1.0 } else { 0.0 },
        highest: (hi * 1.1).log10().ceil(),
        zero,
    })
}

impl LogAxis {
    /// A label of the axis, at whole decades only (`1`, `10`, `1000`, `0.1`), `0` at the
    /// bottom of an axis with zeros.
    fn label(&self, v: f64) -> String {
        if (v - v.round()).abs() > 1e-6 {
            return String::new();
        }
        if self.zero && v.round() == self.lowest {
            return "0".to_string();
        }
        tick(&10f64.powf(v.round()))
    }

    /// Where `v` is drawn: its log, or the bottom for zero.
    fn at(&self, v: f64) -> f64 {
        if v > 0.0 {
            v.log10().max(self.lowest)
        } else {
            self.lowest
        }
    }
}

pub(crate) const WIDTH: u32 = 900;
pub(crate) const HEIGHT: u32 = 300;

/// Axis labels short enough to read: no float noise, no needless decimals.
fn tick(v: &f64) -> String {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 || (v.fract() == 0.0 && a >= 1.0) {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The runs of consecutive seconds in `points`: a second without a figure (no user answered, so
/// no latency) is a gap in the line, not a straight line across it that no data supports.
fn segments(points: &[(f64, f64)]) -> Vec<&[(f64, f64)]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=points.len() {
        if i == points.len() || points[i].0 - points[i - 1].0 > 1.0 + 1e-9 {
            if i > start {
                out.push(&points[start..i]);
            }
            start = i;
        }
    }
    out
}

/// The chart as an `<svg>` element, `x_max` seconds wide; its y axis logarithmic (drawn as
/// log10 of the values, labelled in decades, the axis title saying so) where
/// [`log_axis`] says.
pub(crate) fn render(chart: &Chart, x_max: f64, triggers: &[Trigger]) -> anyhow::Result<String> {
    let data_max = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let log = log_axis(chart);
    let (y_min, y_max) = match log {
        Some(axis) => (axis.lowest, axis.highest),
        None => (0.0, chart.y_max.unwrap_or((data_max * 1.1).max(1.0))),
    };
    let y = |v: f64| log.map_or(v, |axis| axis.at(v));
    let y_desc = match log {
        Some(_) => format!("{} (log scale)", chart.y_desc),
        None => chart.y_desc.clone(),
    };
    let decades = log.map_or(0, |axis| (axis.highest - axis.lowest) as usize + 1);
    let decade = |v: &f64| log.map_or_else(String::new, |axis| axis.label(*v));
    let x_max = x_max.max(1.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut plot = ChartBuilder::on(&root)
            .caption(&chart.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, y_min..y_max)?;
        let mut mesh = plot.configure_mesh();
        mesh.max_light_lines(0)
            .bold_line_style(BLACK.mix(0.08))
            .x_desc("seconds")
            .y_desc(y_desc.as_str())
            .x_label_formatter(&tick)
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14));
        if log.is_some() {
            mesh.y_labels(decades).y_label_formatter(&decade);
        } else {
            mesh.y_label_formatter(&tick);
        }
        mesh.draw()?;
        for (i, trigger) in triggers.iter().enumerate() {
            let shade = SHADES[i % SHADES.len()].mix(SHADE_OPACITY).filled();
            let (from, to) = (trigger.from.as_secs_f64(), trigger.to.as_secs_f64());
            plot.draw_series(std::iter::once(Rectangle::new(
                [(from.min(x_max), y_min), (to.min(x_max), y_max)],
                shade,
            )))?;
        }
        for series in &chart.series {
            let style = series.colour.mix(series.opacity).stroke_width(series.width);
            for segment in segments(&series.points) {
                let points = segment.iter().map(|&(x, v)| (x, y(v)));
                if let [(x, v)] = segment {
                    let only = (*x, y(*v));
                    plot.draw_series(std::iter::once(Circle::new(only, 2, style.filled())))?;
                } else if series.dashed {
                    plot.draw_series(DashedLineSeries::new(points, 7, 4, style))?;
                } else {
                    plot.draw_series(LineSeries::new(points, style))?;
                }
            }
        }
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn lines_and_shades_are_drawn_and_text_escaped() {
        let chart = Chart {
            title: "load <&> attempts".to_string(),
            y_desc: "per second".to_string(),
            series: vec![Series {
                label: "api".to_string(),
                colour: PALETTE[0],
                dashed: false,
                width: 2,
                opacity: 1.0,
                points: vec![(0.0, 1.0), (1.0, 5.0), (2.0, 3.0)],
            }],
            y_max: None,
        };
        let trigger = Trigger {
            from: Duration::from_secs(1),
            to: Duration::from_secs(2),
            label: "db".to_string(),
            service: Some("db".to_string()),
        };
        let svg = render(&chart, 3.0, &[trigger]).unwrap();
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.contains("load &lt;&amp;&gt; attempts"), "{svg}");
        assert!(!svg.contains("<&>"), "{svg}");
        // Axes and ticks are 1 px polylines too; the data line is the 2 px one.
        assert_eq!(
            svg.matches("stroke-width=\"2\" points=").count(),
            1,
            "{svg}"
        );
        assert!(svg.contains("opacity=\"0.18\""), "{svg}");
        assert!(
            svg.contains(">\nseconds\n<") || svg.contains(">seconds<"),
            "{svg}"
        );
    }

    fn chart_of(values: &[&[f64]], y_max: Option<f64>) -> Chart {
        Chart {
            title: "t".to_string(),
            y_desc: "per second".to_string(),
            series: values
                .iter()
                .enumerate()
                .map(|(i, v)| Series {
                    label: format!("s{i}"),
                    colour: PALETTE[i],
                    dashed: i > 0,
                    width: 2,
                    opacity: 1.0,
                    points: v.iter().enumerate().map(|(t, y)| (t as f64, *y)).collect(),
                })
                .collect(),
            y_max,
        }
    }

    #[test]
    fn the_y_axis_turns_logarithmic_past_a_twentyfold_span() {
        // 6,000/s in one run over 100/s in the other: the spike would flatten the other line.
        let spike = chart_of(&[&[100.0, 120.0, 90.0], &[100.0, 6000.0, 0.0]], None);
        let axis = LogAxis {
            lowest: 0.0,
            highest: 4.0,
            zero: true,
        };
        assert_eq!(log_axis(&spike), Some(axis));
        let svg = render(&spike, 3.0, &[]).unwrap();
        assert!(svg.contains("per second (log scale)"), "{svg}");
        // The zero a decade below 90/s, labelled as what it is.
        assert_eq!((axis.at(0.0), axis.label(0.0)), (0.0, "0".to_string()));
        for label in ["0", "10", "100", "1000", "10000"] {
            let text =
                |l: &str| svg.contains(&format!(">{l}<")) || svg.contains(&format!(">\n{l}\n<"));
            assert!(text(label), "{label}: {svg}");
        }
        // Zeros are left out of the span, and 20x exactly stays linear.
        let calm = chart_of(&[&[0.0, 5.0, 100.0], &[0.0, 0.0, 0.0]], None);
        assert_eq!(log_axis(&calm), None);
        assert!(!render(&calm, 3.0, &[]).unwrap().contains("log scale"));
        let wide = chart_of(&[&[4.9, 100.0]], None);
        let axis = log_axis(&wide).unwrap();
        assert_eq!((axis.lowest, axis.highest, axis.zero), (0.0, 3.0, false));
        assert_eq!(
            (axis.label(0.0), axis.label(2.0), axis.label(2.5)),
            ("1".to_string(), "100".to_string(), String::new())
        );
        // A share stays linear whatever its span.
        let share = chart_of(&[&[0.01, 1.0]], Some(1.05));
        assert_eq!(log_axis(&share), None);
    }

    #[test]
    fn a_second_without_a_figure_breaks_the_line() {
        let points = [(0.0, 1.0), (1.0, 2.0), (4.0, 3.0), (6.0, 1.0), (7.0, 1.0)];
        let parts = segments(&points);
        assert_eq!(parts, [&points[..2], &points[2..3], &points[3..]]);
        assert!(segments(&[]).is_empty());
    }

    #[test]
    fn ticks_carry_no_float_noise() {
        assert_eq!(tick(&0.30000000000000004), "0.30");
        assert_eq!(tick(&250.0), "250");
        assert_eq!(tick(&2.5), "2.5");
        assert_eq!(tick(&0.0), "0");
    }
}
