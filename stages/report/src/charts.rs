//! Line charts as inline SVG, drawn with plotters: no scripts, no fonts to fetch.

use applearner_pipeline::BoxError;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// A named series of points; non-finite `y` breaks the line.
pub struct Line {
    pub name: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
    /// Draw each point as a dot (settings on a trade-off curve), not only the line.
    pub markers: bool,
    /// Drawn thicker, with larger dots: the configured setting.
    pub bold: bool,
}

/// A shaded range (quantile band): `(x, low, high)`.
pub struct Band {
    pub name: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64, f64)>,
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// x values are epoch milliseconds, labelled as UTC times.
    pub time_x: bool,
    /// x on a log scale (risk, where the low corner decides); x ≤ 10⁻⁴ is drawn at 10⁻⁴.
    pub log_x: bool,
    pub lines: Vec<Line>,
    pub bands: Vec<Band>,
}

pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

const LOG_FLOOR: f64 = 1e-4;

fn err(e: impl std::fmt::Display) -> BoxError {
    format!("drawing a chart: {e}").into()
}

/// A chart's drawing area, on linear axes of `f64`.
type Plot<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

impl Chart {
    /// The chart as an `<svg>` element.
    pub fn svg(&self, size: (u32, u32)) -> Result<String, BoxError> {
        let fx = |x: f64| if self.log_x { x.max(LOG_FLOOR).log10() } else { x };
        let points: Vec<Vec<(f64, f64)>> =
            self.lines.iter().map(|l| l.points.iter().map(|p| (fx(p.0), p.1)).collect()).collect();
        let (xs, ys) = self.bounds(&points);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(&self.title, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(xs, ys)
                .map_err(err)?;
            self.mesh(&mut chart)?;
            self.draw_bands(&mut chart)?;
            self.draw_lines(&mut chart, &points)?;
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .draw()
                .map_err(err)?;
            root.present().map_err(err)?;
        }
        Ok(svg)
    }

    /// The axes' ranges: every line (`points`, x already on the axis' scale) and band, with
    /// 5 % room above.
    fn bounds(&self, points: &[Vec<(f64, f64)>]) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
        let xs = points
            .iter()
            .flat_map(|l| l.iter().map(|p| p.0))
            .chain(self.bands.iter().flat_map(|b| b.points.iter().map(|p| p.0)));
        let ys = self
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .chain(self.bands.iter().flat_map(|b| b.points.iter().flat_map(|p| [p.1, p.2])));
        let (x0, x1) = range(xs);
        let (y0, y1) = range(ys);
        let pad = (y1 - y0) * 0.05;
        // Errors and percentages read against zero; usage over time against its own range,
        // or a flat memory line would hide every change.
        let bottom = if self.time_x || y0 < 0.0 { y0 - pad } else { 0.0 };
        (x0..x1, bottom..y1 + pad)
    }

    /// The grid and the axes' labels: times, powers of ten on a log axis, or numbers.
    fn mesh(&self, chart: &mut Plot) -> Result<(), BoxError> {
        let time = |x: &f64| {
            chrono::DateTime::from_timestamp_millis(*x as i64)
                .map_or_else(String::new, |t| t.format("%m-%d %H:%M").to_string())
        };
        let number = |y: &f64| short(*y);
        let power = |x: &f64| short(10f64.powf(*x));
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(self.x_label.as_str()).y_desc(self.y_label.as_str()).y_label_formatter(&number).x_labels(6);
        if self.time_x {
            mesh.x_label_formatter(&time);
        } else if self.log_x {
            mesh.x_label_formatter(&power);
        } else {
            mesh.x_label_formatter(&number);
        }
        mesh.draw().map_err(err)
    }

    fn draw_bands(&self, chart: &mut Plot) -> Result<(), BoxError> {
        for band in &self.bands {
            let mut outline: Vec<(f64, f64)> = band.points.iter().map(|p| (p.0, p.2)).collect();
            outline.extend(band.points.iter().rev().map(|p| (p.0, p.1)));
            let color = band.color;
            chart
                .draw_series(std::iter::once(Polygon::new(outline, color.mix(0.2).filled())))
                .map_err(err)?
                .label(band.name.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], color.mix(0.2).filled()));
        }
        Ok(())
    }

    /// Each line in runs of finite points (a gap breaks it), labelled once.
    fn draw_lines(&self, chart: &mut Plot, points: &[Vec<(f64, f64)>]) -> Result<(), BoxError> {
        for (line, points) in self.lines.iter().zip(points) {
            let style = line.color.stroke_width(if line.bold { 3 } else { 2 });
            let color = line.color;
            let mut labelled = false;
            for run in points.split(|p| !p.1.is_finite()).filter(|r| !r.is_empty()) {
                let series = chart.draw_series(LineSeries::new(run.iter().copied(), style)).map_err(err)?;
                if !labelled {
                    series
                        .label(line.name.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
                    labelled = true;
                }
                if line.markers {
                    let r = if line.bold { 6 } else { 3 };
                    chart.draw_series(run.iter().map(|p| Circle::new(*p, r, color.filled()))).map_err(err)?;
                }
            }
        }
        Ok(())
    }
}

/// The finite range of the values; a unit range around a single value.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// A number in a few characters: 0.0012, 35.2, 1.2k, 3.4M, 2.1G.
pub fn short(v: f64) -> String {
    let a = v.abs();
    let (value, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let digits = if value.abs() >= 100.0 || value == 0.0 {
        0
    } else if value.abs() >= 1.0 {
        2
    } else {
        (1 - value.abs().log10().floor() as i32).clamp(2, 6) as usize
    };
    format!("{value:.digits$}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_every_series_in_the_legend() {
        let chart = Chart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            time_x: true,
            log_x: false,
            lines: vec![
                Line {
                    name: "actual".into(),
                    color: PALETTE[0],
                    points: vec![(0.0, 1.0), (6e4, f64::NAN), (1.2e5, 2.0), (1.8e5, 3.0)],
                    markers: false,
                    bold: false,
                },
                Line { name: "model".into(), color: PALETTE[1], points: vec![(0.0, 1.5)], markers: true, bold: true },
            ],
            bands: vec![Band {
                name: "p50–p99".into(),
                color: PALETTE[1],
                points: vec![(0.0, 1.0, 2.0), (1.8e5, 1.5, 3.5)],
            }],
        };
        let svg = chart.svg((600, 300)).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        for name in ["actual", "model", "p50–p99"] {
            assert!(svg.contains(name), "legend lacks {name}");
        }
        assert!(svg.contains("<circle"));
        assert!(svg.contains("<polygon"));
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short(0.0012345), "0.0012");
        assert_eq!(short(35.23), "35.23");
        assert_eq!(short(2.5e8), "250M");
        assert_eq!(short(2.5e6), "2.50M");
        assert_eq!(short(0.0), "0");
    }
}
