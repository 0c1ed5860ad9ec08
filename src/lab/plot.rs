//! A latency CDF as a self-contained SVG: people would rather look than read.

use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];

/// Draws the cumulative distribution of each series of latencies (ms), one
/// line per run, on a shared axis.
pub fn cdf_svg(title: &str, series: &[(String, Vec<f64>)]) -> String {
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let x_max = nice_ceiling(max);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |ms: f64| LEFT + ms / x_max * pw;
    let y = |q: f64| TOP + (1.0 - q) * ph;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(svg, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    // Grid and axes.
    for i in 0..=5 {
        let ms = x_max * i as f64 / 5.0;
        let q = i as f64 / 5.0;
        let _ = write!(
            svg,
            r##"<line x1="{x0}" y1="{TOP}" x2="{x0}" y2="{yb}" stroke="#ddd"/><text x="{x0}" y="{ty}" text-anchor="middle">{ms}</text>"##,
            x0 = x(ms),
            yb = TOP + ph,
            ty = TOP + ph + 18.0,
            ms = trim(ms)
        );
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y0}" x2="{xr}" y2="{y0}" stroke="#ddd"/><text x="{tx}" y="{ty}" text-anchor="end">{q:.1}</text>"##,
            y0 = y(q),
            xr = LEFT + pw,
            tx = LEFT - 8.0,
            ty = y(q) + 4.0
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">latency from publish to display (ms)</text>"#,
        LEFT + pw / 2.0,
        H - 18.0
    );
    let _ = write!(
        svg,
        r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">fraction of deliveries</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    for (i, (label, values)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len().max(1) as f64;
        // At most ~1000 points per line keeps the file small.
        let step = (sorted.len() / 1000).max(1);
        let mut points = format!("{:.1},{:.1}", x(0.0), y(0.0));
        for (k, v) in sorted.iter().enumerate().step_by(step) {
            let _ = write!(points, " {:.1},{:.1}", x(*v), y((k + 1) as f64 / n));
        }
        if let Some(last) = sorted.last() {
            let _ = write!(points, " {:.1},{:.1}", x(*last), y(1.0));
        }
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>"#
        );
        // The legend sits in the bottom right corner: a CDF of latencies
        // rises at once and runs along the top to the slowest delivery, so
        // the top right is where the curve is and the bottom right is empty.
        let ly = legend_y(i, series.len());
        let _ = write!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{lx2}" y2="{ly}" stroke="{colour}" stroke-width="3"/><text x="{tx}" y="{ty}">{label}</text>"#,
            lx = LEGEND_X,
            lx2 = LEGEND_X + 24.0,
            tx = LEGEND_X + 30.0,
            ty = ly + 4.0,
            label = escape(label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The baseline of legend row `i` of `n`.
fn legend_y(i: usize, n: usize) -> f64 {
    H - BOTTOM - 12.0 - 18.0 * (n - 1 - i) as f64
}

/// Where the legend starts, from the left edge.
const LEGEND_X: f64 = W - RIGHT - 260.0;

fn nice_ceiling(v: f64) -> f64 {
    let magnitude = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * magnitude {
            return m * magnitude;
        }
    }
    10.0 * magnitude
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_line_per_series() {
        let svg = cdf_svg("t <1>", &[("a".into(), vec![1.0, 2.0, 3.0]), ("b".into(), vec![])]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("t &lt;1&gt;"));
        assert_eq!(nice_ceiling(7.3), 10.0);
        assert_eq!(nice_ceiling(0.9), 1.0);
    }

    /// Issue 13, item 10: the legend covered the curve. A latency CDF (many
    /// fast deliveries, a tail of slow ones) stays clear of the legend's box.
    #[test]
    fn the_legend_does_not_cover_the_curve() {
        let mut values: Vec<f64> = (0..990).map(|i| 2.0 + (i % 10) as f64).collect();
        values.extend((0..10).map(|i| 20.0 + 10.0 * i as f64));
        let svg = cdf_svg("t", &[("run (10 nodes, p99 12 ms)".into(), values)]);
        let points = svg
            .split("points=\"")
            .nth(1)
            .and_then(|p| p.split('"').next())
            .expect("a polyline");
        let (top, bottom) = (legend_y(0, 1) - 14.0, legend_y(0, 1) + 6.0);
        for point in points.split(' ') {
            let (px, py) = point.split_once(',').expect("x,y");
            let (px, py): (f64, f64) = (px.parse().expect("x"), py.parse().expect("y"));
            let inside = (LEGEND_X..=W - RIGHT).contains(&px) && (top..=bottom).contains(&py);
            assert!(!inside, "the curve at ({px}, {py}) runs under the legend");
        }
    }
}
