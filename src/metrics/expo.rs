//! The Prometheus text exposition format, version 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>), written
//! by hand: it is a few lines of rules, and a crate would bring its own
//! registry where goldenfs reads its counters only when scraped.

use std::fmt::Write;

/// `Content-Type` of the output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Label pairs of one sample.
pub type Labels<'a> = [(&'a str, &'a str)];

/// Writes one exposition. Declare a family with [`Exposition::family`], then
/// write its samples before declaring the next one.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// `# HELP` and `# TYPE` lines of a metric family.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &Labels<'_>, value: impl Into<f64>) {
        self.line(name, labels, None, value.into());
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Into<f64>) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The samples of one histogram: `buckets` are per-bucket counts (not
    /// cumulative) for the upper `bounds`, followed by the overflow bucket.
    pub fn histogram(&mut self, name: &str, labels: &Labels<'_>, bounds: &[f64], buckets: &[u64], sum: f64) {
        let mut cumulative = 0u64;
        let bucket = format!("{name}_bucket");
        for (i, n) in buckets.iter().enumerate() {
            cumulative += n;
            let le = bounds.get(i).map_or_else(|| "+Inf".to_string(), |b| format_value(*b));
            self.line(&bucket, labels, Some(&le), cumulative as f64);
        }
        self.line(&format!("{name}_sum"), labels, None, sum);
        self.line(&format!("{name}_count"), labels, None, cumulative as f64);
    }

    fn line(&mut self, name: &str, labels: &Labels<'_>, le: Option<&str>, value: f64) {
        self.out.push_str(name);
        let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
        for (i, (k, v)) in all.enumerate() {
            self.out.push(if i == 0 { '{' } else { ',' });
            let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
        }
        if !labels.is_empty() || le.is_some() {
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value with `\`, `"` and newlines escaped.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text with `\` and newlines escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Integers without a fraction, others as Rust prints them (never in
/// exponent notation, which Prometheus would accept too).
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        let mut e = Exposition::default();
        e.family("goldenfs_x", Kind::Gauge, "a \\ help\nline");
        e.sample("goldenfs_x", &[("project", "a\"b\\c\nd"), ("session", "s")], 1u32);
        e.sample("goldenfs_x", &[], 2.5);
        assert_eq!(
            e.finish(),
            "# HELP goldenfs_x a \\\\ help\\nline\n# TYPE goldenfs_x gauge\n\
             goldenfs_x{project=\"a\\\"b\\\\c\\nd\",session=\"s\"} 1\ngoldenfs_x 2.5\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf_equal_to_count() {
        let mut e = Exposition::default();
        e.family("goldenfs_h_seconds", Kind::Histogram, "h");
        e.histogram(
            "goldenfs_h_seconds",
            &[("op", "read")],
            &[0.00001, 0.5],
            &[2, 0, 3],
            1.25,
        );
        assert_eq!(
            e.finish(),
            "# HELP goldenfs_h_seconds h\n# TYPE goldenfs_h_seconds histogram\n\
             goldenfs_h_seconds_bucket{op=\"read\",le=\"0.00001\"} 2\n\
             goldenfs_h_seconds_bucket{op=\"read\",le=\"0.5\"} 2\n\
             goldenfs_h_seconds_bucket{op=\"read\",le=\"+Inf\"} 5\n\
             goldenfs_h_seconds_sum{op=\"read\"} 1.25\n\
             goldenfs_h_seconds_count{op=\"read\"} 5\n"
        );
    }

    #[test]
    fn values_print_integers_plainly_and_fractions_without_exponents() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.000025), "0.000025");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(1e300), format!("{}", 1e300));
    }
}
