//! `--chart`: a small hand-written SVG of throughput (left axis) and p99 latency (right axis),
//! one point per second of the run. No plotting crate: two polylines and a few labels.

use std::fmt::Write;

use super::report::TimelinePoint;

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 70.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const THROUGHPUT_COLOUR: &str = "#1f77b4";
const P99_COLOUR: &str = "#d62728";

/// Renders `points` as an SVG document titled `title`.
pub(crate) fn svg(title: &str, points: &[TimelinePoint]) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let seconds = points.len().max(2) as f64 - 1.0;
    let max_rate = nice_ceiling(
        points
            .iter()
            .map(|p| p.acknowledged as f64)
            .fold(0.0, f64::max),
    );
    let max_p99 = nice_ceiling(points.iter().map(|p| p.p99_ms).fold(0.0, f64::max));
    let x = |i: usize| LEFT + plot_w * i as f64 / seconds;
    let y = |v: f64, max: f64| TOP + plot_h * (1.0 - v / max);

    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    // Axes and horizontal grid lines with labels on both sides.
    for tick in 0..=4 {
        let frac = f64::from(tick) / 4.0;
        let ty = TOP + plot_h * (1.0 - frac);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#ddd"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="{THROUGHPUT_COLOUR}">{}</text>"#,
            LEFT - 6.0,
            ty + 4.0,
            label(max_rate * frac)
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" fill="{P99_COLOUR}">{}</text>"#,
            LEFT + plot_w + 6.0,
            ty + 4.0,
            label(max_p99 * frac)
        );
    }
    let step = (points.len() / 10).max(1);
    for i in (0..points.len()).step_by(step) {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{i}</text>"#,
            x(i),
            TOP + plot_h + 16.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0
    );
    let _ = writeln!(
        out,
        r#"<text x="14" y="{:.1}" fill="{THROUGHPUT_COLOUR}" transform="rotate(-90 14 {:.1})" text-anchor="middle">acknowledged increments/s</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" fill="{P99_COLOUR}" transform="rotate(90 {:.1} {:.1})" text-anchor="middle">p99 latency (ms)</text>"#,
        WIDTH - 14.0,
        TOP + plot_h / 2.0,
        WIDTH - 14.0,
        TOP + plot_h / 2.0
    );
    let line = |value: &dyn Fn(&TimelinePoint) -> f64, max: f64| {
        points
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(value(p), max)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = writeln!(
        out,
        r#"<polyline fill="none" stroke="{THROUGHPUT_COLOUR}" stroke-width="2" points="{}"/>"#,
        line(&|p| p.acknowledged as f64, max_rate)
    );
    let _ = writeln!(
        out,
        r#"<polyline fill="none" stroke="{P99_COLOUR}" stroke-width="2" points="{}"/>"#,
        line(&|p| p.p99_ms, max_p99)
    );
    out.push_str("</svg>\n");
    out
}

/// Rounds an axis maximum up to 1, 2 or 5 × a power of ten (never 0, so nothing divides by 0).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

fn label(v: f64) -> String {
    if v >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_is_an_svg_with_both_lines() {
        let points: Vec<TimelinePoint> = (0..5)
            .map(|i| TimelinePoint {
                second: i,
                acknowledged: 100 * i,
                completed: 100 * i,
                p99_ms: 1.5,
            })
            .collect();
        let svg = svg("hot <counter>", &points);
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("hot &lt;counter&gt;"));
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(2100.0), 5000.0);
        assert_eq!(nice_ceiling(1000.0), 1000.0);
    }
}
