//! Printing results: JSON or human tables.

use std::io::Write;

use serde::Serialize;

use super::Failure;
use crate::protocol::StatusResult;

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

/// The human `goldenfs status`: the daemon, then a table of projects and
/// one of sessions with their key metrics (`--json` has them all).
pub(super) fn status_text(r: &StatusResult) -> String {
    let m = &r.metrics;
    let mut s = format!(
        "goldenfs {} (pid {}, up since {}, {} views mounted)\nstate dir: {} ({}, {}{})\nsocket:    {}\n",
        r.version,
        r.pid,
        r.started_at,
        m.mounted_views,
        r.state_dir,
        r.backing_fs,
        human_bytes(m.store_bytes),
        if m.sizes_pending > 0 {
            format!(" so far, {} trees still being measured", m.sizes_pending)
        } else {
            String::new()
        },
        r.socket
    );
    if let Some(p) = &r.docker_plugin {
        s += &format!(
            "docker plugin: {} ({} volumes, mounted in {})\n",
            p.socket, p.volumes, p.volume_dir
        );
    }
    let bytes = |b: Option<u64>| b.map_or_else(|| "…".to_string(), human_bytes);
    s += &format!("\nprojects ({}):\n", r.projects.len());
    if !r.projects.is_empty() {
        let rows = r.projects.iter().map(|p| {
            let p_ = &p.info;
            vec![
                p_.project.clone(),
                p_.current_generation.to_string(),
                p_.layer_depth.to_string(),
                p_.generations.to_string(),
                p_.sessions.len().to_string(),
                bytes(p.metrics.bytes),
            ]
        });
        s += &table(&["PROJECT", "GENERATION", "DEPTH", "KEPT", "SESSIONS", "BYTES"], rows);
        s.push('\n');
    }
    for c in &r.compactions {
        s += &format!(
            "  {}: compacting generation {} since {}\n",
            c.project, c.generation, c.started_at
        );
    }
    s += &format!("\nsessions ({}):", r.sessions.len());
    if !r.sessions.is_empty() {
        let rows = r.sessions.iter().map(|x| {
            let (i, m) = (&x.info, &x.metrics);
            vec![
                i.session.clone(),
                i.project.clone(),
                i.base_generation.to_string(),
                bytes(m.upper_bytes),
                m.view.open_files.to_string(),
                m.view.copy_ups.to_string(),
                m.view.whiteouts.to_string(),
                m.requests.to_string(),
                match (&i.mountpoint, i.mounted) {
                    (Some(mp), true) => mp.clone(),
                    _ => "not mounted".into(),
                },
            ]
        });
        let headers = [
            "SESSION",
            "PROJECT",
            "BASE",
            "UPPER",
            "OPEN",
            "COPY-UPS",
            "WHITEOUTS",
            "REQUESTS",
            "MOUNTED AT",
        ];
        s += "\n";
        s += &table(&headers, rows);
    }
    s
}
