//! `report episodes --format svg`: the retention curves as one SVG picture, a panel per
//! episode (bars: viewers who saw some of each bucket; the axis in minutes of the episode).
//!
//! Titles and ids come from Opencast and from viewers: control characters are escaped
//! ([`crate::escape::text`], which also keeps them out of XML, where most are not allowed)
//! and `& < > " '` written as entities, so no title can close the element it is in.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::tables::EpisodeRow;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 190.0;
const PLOT_H: f64 = 120.0;
const LEFT: f64 = 50.0;
const RIGHT: f64 = 20.0;

/// Text for an XML element or attribute.
fn xml(s: &str) -> String {
    let s = crate::escape::text(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The most bars a panel draws (about one per pixel of the plot): a finer curve is drawn with
/// neighbouring buckets merged (their largest count), so a live stream of days in 1-second
/// buckets stays a picture of a few hundred kilobytes.
const MAX_BARS: usize = 800;

/// Writes the picture of `rows` (`count` of them), one panel at a time.
pub fn write<W: Write>(
    rows: impl Iterator<Item = EpisodeRow>,
    count: usize,
    mut out: W,
) -> io::Result<()> {
    let height = (count.max(1) as f64) * PANEL;
    write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <title>Retention per episode</title>\n"
    )?;
    if count == 0 {
        writeln!(out, "<text x=\"10\" y=\"30\">No episode selected.</text>")?;
    }
    let mut body = String::new();
    for (n, r) in rows.enumerate() {
        body.clear();
        panel(&mut body, &r, n as f64 * PANEL);
        out.write_all(body.as_bytes())?;
    }
    writeln!(out, "</svg>")?;
    out.flush()
}

fn panel(s: &mut String, r: &EpisodeRow, top: f64) {
    let heading = match &r.title {
        Some(t) => format!("{} ({})", t, r.mpid),
        None => r.mpid.clone(),
    };
    let _ = writeln!(
        s,
        "<g transform=\"translate(0,{top})\">\n<text x=\"{LEFT}\" y=\"20\" font-weight=\"bold\">{}</text>\n\
         <text x=\"{LEFT}\" y=\"36\" fill=\"#555\">{} views, {} viewers, {:.1} hours watched{}</text>",
        xml(&heading),
        r.views,
        r.unique_viewers,
        r.hours_watched,
        r.avg_percent_watched
            .map(|p| format!(", {p}% watched on average"))
            .unwrap_or_default()
    );
    let base = 46.0 + PLOT_H;
    let plot_w = WIDTH - LEFT - RIGHT;
    let max = r.retention.iter().copied().max().unwrap_or(0).max(1);
    let _ = writeln!(
        s,
        "<line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#999\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max}</text>",
        WIDTH - RIGHT,
        LEFT - 6.0,
        base - PLOT_H + 10.0
    );
    let merge = r.retention.len().div_ceil(MAX_BARS).max(1);
    let bars: Vec<u32> = r
        .retention
        .chunks(merge)
        .map(|c| c.iter().copied().max().unwrap_or(0))
        .collect();
    let bar_s = u64::from(r.bucket_s) * merge as u64;
    let n = bars.len();
    if n > 0 {
        let bw = plot_w / n as f64;
        for (i, v) in bars.iter().enumerate() {
            if *v == 0 {
                continue;
            }
            let h = f64::from(*v) / f64::from(max) * PLOT_H;
            let _ = writeln!(
                s,
                "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"#3b73b9\"><title>{}–{} min: {v}</title></rect>",
                LEFT + i as f64 * bw,
                base - h,
                bw.max(0.5),
                h,
                i as u64 * bar_s / 60,
                (i as u64 + 1) * bar_s / 60
            );
        }
    }
    let minutes = r.retention.len() as u64 * u64::from(r.bucket_s) / 60;
    let _ = writeln!(
        s,
        "<text x=\"{LEFT}\" y=\"{}\">0</text>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{minutes} min</text>\n</g>",
        base + 16.0,
        WIDTH - RIGHT,
        base + 16.0
    );
}
