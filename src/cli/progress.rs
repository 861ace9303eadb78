//! Progress bars for requests that can take minutes (import, compaction,
//! GC, project deletion). The request runs on its own connection; a second
//! thread polls `operations` on another and draws the matching operation on
//! stderr. Only on a terminal, never with `--json`, never for a request that
//! finishes within the first poll interval.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::Failure;
use super::client::Client;
use super::output::human_bytes;
use crate::protocol::{OperationKind, OperationProgress, OperationsResult, Request};

/// First poll: requests faster than this get no bar.
const FIRST_POLL: Duration = Duration::from_millis(300);
const POLL: Duration = Duration::from_millis(200);

/// Runs `call`, drawing the progress of the daemon's `kind` operation on
/// `project` while it runs (when stderr is a terminal and `json` is false;
/// `GOLDENFS_NO_PROGRESS=1` turns bars off).
pub(super) fn with_progress<T>(
    c: &Client,
    json: bool,
    kind: OperationKind,
    project: Option<&str>,
    call: impl FnOnce() -> Result<T, Failure>,
) -> Result<T, Failure> {
    let disabled = std::env::var_os("GOLDENFS_NO_PROGRESS").is_some_and(|v| !v.is_empty() && v != "0");
    if json || disabled || !std::io::stderr().is_terminal() {
        return call();
    }
    let (done, stop) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(|| draw(c.socket, kind, project, stop));
        let result = call();
        drop(done);
        result
    })
}

/// Polls until `stop` closes; a daemon that cannot say (an older version,
/// a failed poll) just means no bar.
fn draw(socket: &Path, kind: OperationKind, project: Option<&str>, stop: Receiver<()>) {
    let poll = Client {
        socket,
        timeout: Some(Duration::from_secs(2)),
    };
    let mut shown: Option<(u64, ProgressBar)> = None;
    let mut wait = FIRST_POLL;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(wait) {
        wait = POLL;
        let Ok(r) = poll.call::<OperationsResult>(&Request::Operations {}) else {
            break;
        };
        let wanted = |o: &OperationProgress| match &shown {
            Some((id, _)) => o.id == *id,
            None => o.kind == kind && o.project.as_deref() == project,
        };
        let Some(op) = r.operations.into_iter().find(wanted) else {
            continue;
        };
        let (_, bar) = shown.get_or_insert_with(|| (op.id, new_bar(kind, project)));
        update(bar, &op);
    }
    if let Some((_, bar)) = shown {
        bar.finish_and_clear();
    }
}

/// "importing web", "gc".
fn title(kind: OperationKind, project: Option<&str>) -> String {
    let what = match kind {
        OperationKind::Import => "importing",
        OperationKind::Compact => "compacting",
        OperationKind::Gc => "gc",
        OperationKind::DeleteProject => "deleting",
    };
    match project {
        Some(p) => format!("{what} {p}"),
        None => what.to_string(),
    }
}

/// "1.0 MiB/4.0 MiB", or "1.0 MiB" while the total is unknown.
fn bytes_of(op: &OperationProgress) -> String {
    match op.total_bytes {
        Some(t) => format!("{}/{}", human_bytes(op.done_bytes), human_bytes(t)),
        None => human_bytes(op.done_bytes),
    }
}

/// The `operations` lines of the human `status` (empty when none runs).
pub(super) fn describe(ops: &[OperationProgress]) -> String {
    let mut s = String::new();
    if !ops.is_empty() {
        s += &format!("\noperations ({}):", ops.len());
    }
    for op in ops {
        let entries = match op.total {
            Some(t) => format!("{}/{t}", op.done),
            None => op.done.to_string(),
        };
        s += &format!(
            "\n  {}: {}, {entries} entries, {} ({:.0} s)",
            title(op.kind, op.project.as_deref()),
            op.phase,
            bytes_of(op),
            op.seconds
        );
    }
    s
}

fn new_bar(kind: OperationKind, project: Option<&str>) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_prefix(title(kind, project));
    bar.set_style(style(false));
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A bar once the total is known, a spinner with counts before.
fn style(known_total: bool) -> ProgressStyle {
    let template = if known_total {
        "{prefix} [{bar:30}] {percent:>3}% {pos}/{len} entries, {msg} (ETA {eta})"
    } else {
        "{spinner} {prefix}: {pos} entries, {msg} ({elapsed})"
    };
    ProgressStyle::with_template(template)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn update(bar: &ProgressBar, op: &OperationProgress) {
    if let Some(total) = op.total
        && bar.length() != Some(total)
    {
        bar.set_style(style(true));
        bar.set_length(total);
    }
    bar.set_position(op.done);
    bar.set_message(format!("{}, {}", bytes_of(op), op.phase));
}
