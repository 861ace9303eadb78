//! Printing results: JSON or human tables.

use std::io::Write;

use serde::Serialize;

use super::Failure;

pub(super) fn output<T: Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) -> Result<(), Failure> {
    let text = if json {
        serde_json::to_string_pretty(value).map_err(|e| Failure(1, format!("cannot print JSON: {e}")))?
    } else {
        human()
    };
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) is not an error worth a message.
    let _ = writeln!(out, "{text}");
    Ok(())
}

pub(super) fn table(headers: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let fmt = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut lines = vec![fmt(headers.iter().map(|h| h.to_string()).collect())];
    lines.extend(rows.into_iter().map(fmt));
    lines.join("\n")
}

/// 1536 → "1.5 KiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
