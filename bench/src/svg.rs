//! Hand-written SVG line charts: one or more stacked panels, each with axes, ticks, axis
//! labels, a legend and one polyline per series. Enough for a latency CDF and a resource
//! time line without a plotting crate.

use std::fmt::Write as _;

/// Line colours, cycled over the series of a panel (colour-blind friendly).
const COLOURS: [&str; 8] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442",
];

/// Total width of a chart, px.
const WIDTH: f64 = 760.0;
/// Height of one panel, px.
const PANEL_HEIGHT: f64 = 320.0;
/// Margins around a panel's plot area: left, right, top, bottom.
const MARGIN: (f64, f64, f64, f64) = (64.0, 24.0, 36.0, 48.0);

/// One line of a panel.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points in data coordinates, drawn in order.
    pub points: Vec<(f64, f64)>,
}

/// One plot area with its axes.
#[derive(Debug, Clone, Default)]
pub struct Panel {
    /// Title above the plot.
    pub title: String,
    /// Label under the x axis.
    pub x_label: String,
    /// Label beside the y axis.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Vertical dashed markers at these x values, with a label each.
    pub markers: Vec<(f64, String)>,
    /// Fixed y range upper end (e.g. 1 for a CDF); otherwise from the data.
    pub y_max: Option<f64>,
}

/// A "nice" tick step (1, 2 or 5 × 10^k) giving about `target` ticks over `span`.
pub fn nice_step(span: f64, target: usize) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// The smallest multiple of `step` at or above `value` (at least one step).
fn round_up(value: f64, step: f64) -> f64 {
    ((value / step).ceil() * step).max(step)
}

/// Escapes text for SVG content and attributes.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A tick label: no decimals for whole steps, otherwise as many as the step needs.
fn tick_label(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{value:.decimals$}")
}

/// The SVG document with `panels` stacked vertically.
pub fn document(panels: &[Panel]) -> String {
    let height = PANEL_HEIGHT * panels.len().max(1) as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (i, panel) in panels.iter().enumerate() {
        // Writing to a String cannot fail.
        let _ = render_panel(&mut out, panel, PANEL_HEIGHT * i as f64);
    }
    out.push_str("</svg>\n");
    out
}

fn render_panel(out: &mut String, panel: &Panel, top: f64) -> std::fmt::Result {
    let (ml, mr, mt, mb) = MARGIN;
    let (x0, x1) = (ml, WIDTH - mr);
    let (y0, y1) = (top + PANEL_HEIGHT - mb, top + mt);
    let points = panel.series.iter().flat_map(|s| s.points.iter());
    let data_x = points
        .clone()
        .map(|p| p.0)
        .chain(panel.markers.iter().map(|m| m.0))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let data_y = points
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let x_step = nice_step(data_x, 8);
    let x_max = round_up(data_x, x_step);
    let y_top = panel.y_max.unwrap_or(data_y);
    let y_step = nice_step(y_top, 5);
    let y_max = round_up(y_top, y_step);
    let sx = |x: f64| x0 + (x / x_max) * (x1 - x0);
    let sy = |y: f64| y0 - (y / y_max) * (y0 - y1);

    writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"14\" font-weight=\"bold\">{}</text>",
        x0,
        top + 20.0,
        escape(&panel.title)
    )?;
    // Grid and ticks.
    let mut x = 0.0;
    while x <= x_max + x_step * 1e-9 {
        writeln!(
            out,
            "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{2:.1}\" stroke=\"#e0e0e0\"/>\
             <text x=\"{0:.1}\" y=\"{3:.1}\" text-anchor=\"middle\">{4}</text>",
            sx(x),
            y0,
            y1,
            y0 + 16.0,
            tick_label(x, x_step)
        )?;
        x += x_step;
    }
    let mut y = 0.0;
    while y <= y_max + y_step * 1e-9 {
        writeln!(
            out,
            "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{2:.1}\" y2=\"{1:.1}\" stroke=\"#e0e0e0\"/>\
             <text x=\"{3:.1}\" y=\"{4:.1}\" text-anchor=\"end\">{5}</text>",
            x0,
            sy(y),
            x1,
            x0 - 6.0,
            sy(y) + 4.0,
            tick_label(y, y_step)
        )?;
        y += y_step;
    }
    // Axes and their labels.
    writeln!(
        out,
        "<line x1=\"{x0:.1}\" y1=\"{y0:.1}\" x2=\"{x1:.1}\" y2=\"{y0:.1}\" stroke=\"black\"/>\
         <line x1=\"{x0:.1}\" y1=\"{y0:.1}\" x2=\"{x0:.1}\" y2=\"{y1:.1}\" stroke=\"black\"/>"
    )?;
    writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
        (x0 + x1) / 2.0,
        y0 + 36.0,
        escape(&panel.x_label)
    )?;
    writeln!(
        out,
        "<text transform=\"translate({:.1},{:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        x0 - 46.0,
        (y0 + y1) / 2.0,
        escape(&panel.y_label)
    )?;
    for (at, label) in &panel.markers {
        writeln!(
            out,
            "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{2:.1}\" stroke=\"#888\" \
             stroke-dasharray=\"4 3\"/><text x=\"{3:.1}\" y=\"{4:.1}\" fill=\"#555\">{5}</text>",
            sx(*at),
            y0,
            y1,
            sx(*at) + 3.0,
            y1 + 12.0,
            escape(label)
        )?;
    }
    // Lines and legend.
    for (i, series) in panel.series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let coords: Vec<String> = series
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        if !coords.is_empty() {
            writeln!(
                out,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                coords.join(" ")
            )?;
        }
        let ly = y1 + 14.0 + 16.0 * i as f64;
        writeln!(
            out,
            "<line x1=\"{:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{colour}\" \
             stroke-width=\"2\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x1 - 150.0,
            x1 - 130.0,
            x1 - 125.0,
            ly + 4.0,
            escape(&series.name)
        )?;
    }
    Ok(())
}

/// The empirical CDF of `values` as a step line from (min, 0) to (max, 1).
pub fn cdf_points(values: &[f64]) -> Vec<(f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let mut points = Vec::with_capacity(2 * v.len());
    for (i, x) in v.iter().enumerate() {
        points.push((*x, i as f64 / n));
        points.push((*x, (i + 1) as f64 / n));
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_nice() {
        assert_eq!(nice_step(10.0, 5), 2.0);
        assert_eq!(nice_step(1.0, 5), 0.2);
        assert_eq!(nice_step(700.0, 8), 100.0);
        assert_eq!(nice_step(0.0, 5), 1.0);
        assert_eq!(round_up(7.3, 2.0), 8.0);
        assert_eq!(round_up(0.0, 0.5), 0.5);
        assert_eq!(tick_label(0.4, 0.2), "0.4");
        assert_eq!(tick_label(20.0, 10.0), "20");
    }

    #[test]
    fn cdf_is_a_staircase_to_one() {
        let p = cdf_points(&[2.0, 1.0, f64::NAN]);
        assert_eq!(p, vec![(1.0, 0.0), (1.0, 0.5), (2.0, 0.5), (2.0, 1.0)]);
        assert!(cdf_points(&[]).is_empty());
    }

    #[test]
    fn documents_hold_every_panel_and_escape_text() {
        let panel = Panel {
            title: "a < b".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series {
                name: "s & t".into(),
                points: vec![(0.0, 0.0), (1.0, 2.0)],
            }],
            markers: vec![(0.5, "m".into())],
            y_max: None,
        };
        let svg = document(&[panel.clone(), panel]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a &lt; b") && svg.contains("s &amp; t"));
    }
}
