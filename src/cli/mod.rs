//! The `goldenfs` command line: `goldenfs daemon` runs the daemon; every
//! other command is a thin client of its control socket.
//!
//! Exit status: 0 on success; 1 when the daemon reports an error; 2 on a
//! usage error; 3 when the daemon cannot be reached. Errors are one line on
//! stderr, prefixed `goldenfs: `. `--json` prints the reply's result object
//! (documented in `docs/protocol.md`) on stdout.

use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

mod client;
mod output;
mod progress;

pub(crate) use client::Client;
use client::io_reason;
pub use output::human_bytes;
use output::{output, table};

use crate::daemon::{DEFAULT_COMPACT_DEPTH, DEFAULT_SOCKET, DEFAULT_STATE_DIR, DaemonConfig};
use crate::protocol::*;

const EXAMPLES: &str = "\
Examples:
  goldenfs daemon &                                   # store in /var/lib/goldenfs
  goldenfs project create web --from /srv/golden/web  # generation 1
  goldenfs session mount web s1 /mnt/s1               # instant, whatever the size
  goldenfs session unmount s1 && goldenfs promote web s1
  goldenfs generations web";

#[derive(Parser, Debug)]
#[command(name = "goldenfs", version, about = "Copy-on-write FUSE views of golden directories", after_help = EXAMPLES)]
pub struct Cli {
    /// Control socket of the daemon [env: GOLDENFS_SOCKET] [default: /run/goldenfs/goldenfs.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon in the foreground (owns the store and every mount)
    #[command(
        after_help = "Examples:\n  RUST_LOG=info goldenfs daemon --state-dir /var/lib/goldenfs --allow-uid 1000\n  goldenfs daemon --docker-plugin     # + Docker volume plugin on /run/docker/plugins/goldenfs.sock\n  docker volume create -d goldenfs -o project=web v1"
    )]
    Daemon {
        /// Store directory (one filesystem)
        #[arg(long, default_value = DEFAULT_STATE_DIR, value_name = "DIR")]
        state_dir: PathBuf,
        /// Also allow this uid on the socket (repeatable)
        #[arg(long = "allow-uid", value_name = "UID")]
        allow_uid: Vec<u32>,
        /// FUSE worker threads per mounted session
        #[arg(long, default_value_t = 4, value_name = "N")]
        threads: usize,
        /// Compact a project in the background once a promotion leaves it more than N layers deep (0: never)
        #[arg(long, default_value_t = DEFAULT_COMPACT_DEPTH, value_name = "N")]
        compact_depth: usize,
        /// Also serve the Docker volume plugin on SOCKET [default: /run/docker/plugins/goldenfs.sock]
        #[arg(long, value_name = "SOCKET", num_args = 0..=1, require_equals = true,
              default_missing_value = crate::daemon::docker_plugin::DEFAULT_SOCKET)]
        docker_plugin: Option<PathBuf>,
        /// Where the plugin mounts volumes (outside the store) [default: /run/goldenfs/volumes]
        #[arg(long, value_name = "DIR", requires = "docker_plugin")]
        docker_volume_dir: Option<PathBuf>,
        #[command(flatten)]
        metrics: crate::daemon::metrics_http::EndpointConfig,
    },
    /// Create, list and delete projects
    #[command(
        subcommand,
        after_help = "Examples:\n  goldenfs project create web --from /srv/golden/web\n  goldenfs project list\n  goldenfs project delete web --force"
    )]
    Project(ProjectCmd),
    /// Mount, unmount, discard and list sessions
    #[command(
        subcommand,
        after_help = "Examples:\n  goldenfs session mount web s1 /mnt/s1\n  goldenfs session list\n  goldenfs session unmount s1"
    )]
    Session(SessionCmd),
    /// Publish an unmounted session's changes as the project's next generation
    #[command(after_help = "Example:\n  goldenfs promote web s1 --if-generation 3")]
    Promote {
        project: String,
        session: String,
        /// Refuse unless the project's current generation is N
        #[arg(long, value_name = "N")]
        if_generation: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Flatten a project's current generation into one layer, published as an equivalent new generation
    #[command(
        after_help = "Mounts and promotions go on while it runs; if a promotion or rollback wins the race, nothing is\npublished and the command fails (run it again).\n\nExample:\n  goldenfs compact web --json"
    )]
    Compact {
        project: String,
        #[arg(long)]
        json: bool,
    },
    /// List a project's generations
    #[command(after_help = "Example:\n  goldenfs generations web --json")]
    Generations {
        project: String,
        #[arg(long)]
        json: bool,
    },
    /// Point a project's current generation at an existing generation
    #[command(after_help = "Example:\n  goldenfs rollback web 3")]
    Rollback {
        project: String,
        generation: u64,
        #[arg(long)]
        json: bool,
    },
    /// Delete generations no session pins that are not current and not among the newest K
    #[command(after_help = "Example:\n  goldenfs gc --keep 3")]
    Gc {
        /// Newest generations to keep per project
        #[arg(long, default_value_t = crate::store::DEFAULT_KEEP, value_name = "K")]
        keep: u64,
        #[arg(long)]
        json: bool,
    },
    /// Show the daemon, its store, projects and sessions
    #[command(after_help = "Example:\n  goldenfs status --json")]
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Check that the daemon answers
    #[command(after_help = "Example:\n  until goldenfs ping 2>/dev/null; do sleep 0.1; done")]
    Ping {
        #[arg(long)]
        json: bool,
    },
    /// Check this machine and the store's filesystem (no daemon needed): what is slow or impossible
    #[command(
        after_help = "Exits 1 if a check fails. Probes run in a scratch directory inside DIR (removed after).\n\nExamples:\n  goldenfs doctor\n  goldenfs doctor --state-dir /srv/goldenfs --json"
    )]
    Doctor {
        /// Store directory to check (or its nearest existing parent)
        #[arg(long, default_value = DEFAULT_STATE_DIR, value_name = "DIR")]
        state_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script
    #[command(
        after_help = "Examples:\n  goldenfs completions bash > /etc/bash_completion.d/goldenfs\n  goldenfs completions zsh > \"${fpath[1]}/_goldenfs\""
    )]
    Completions { shell: clap_complete::Shell },
    /// Print the man page, or write one page per subcommand into DIR
    #[command(after_help = "Examples:\n  goldenfs man | man -l -\n  goldenfs man --dir /usr/local/share/man/man1")]
    Man {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum ProjectCmd {
    /// Create a project; generation 1 is a copy of DIR (or empty)
    #[command(
        after_help = "Examples:\n  goldenfs project create web --from /srv/golden/web\n  goldenfs project create web --from /var/lib/goldenfs-incoming/web --move"
    )]
    Create {
        project: String,
        /// Import this directory as generation 1 (reflinked where possible)
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
        /// Rename DIR into the store instead of copying (same filesystem only)
        #[arg(long = "move", requires = "from")]
        move_: bool,
        #[arg(long)]
        json: bool,
    },
    /// List projects
    #[command(after_help = "Example:\n  goldenfs project list --json")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a project and its generations
    #[command(after_help = "Example:\n  goldenfs project delete web --force   # also discards its sessions")]
    Delete {
        project: String,
        /// Unmount and discard the project's sessions first
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum SessionCmd {
    /// Mount session S of project P at MOUNTPOINT (creating S on the current generation if new)
    #[command(after_help = "Example:\n  goldenfs session mount web s1 /mnt/s1")]
    Mount {
        project: String,
        session: String,
        mountpoint: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Unmount a session (its changes are kept)
    #[command(after_help = "Example:\n  goldenfs session unmount s1 --lazy")]
    Unmount {
        session: String,
        /// Detach even while files are open
        #[arg(long)]
        lazy: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete a session and its changes (drops its pin)
    #[command(after_help = "Example:\n  goldenfs session discard s1 --force")]
    Discard {
        session: String,
        /// Unmount it (lazily) first if mounted
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// List sessions
    #[command(after_help = "Example:\n  goldenfs session list --json")]
    List {
        #[arg(long)]
        json: bool,
    },
}

/// A CLI failure: exit code and one-line message.
pub(crate) struct Failure(pub i32, pub String);

impl From<crate::error::Error> for Failure {
    fn from(e: crate::error::Error) -> Self {
        Failure(1, e.message)
    }
}

/// Runs the CLI; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    2
                } else {
                    0
                };
            }
            let text = e.render().to_string();
            // clap's message up to its usage block, on one line.
            let msg: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
                .map(str::trim)
                .collect();
            let msg = msg.join(" ");
            let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
            eprintln!("goldenfs: {msg}; see 'goldenfs --help'");
            return 2;
        }
    };
    match run(cli) {
        Ok(()) => 0,
        Err(Failure(code, msg)) => {
            eprintln!("goldenfs: {}", msg.replace('\n', " "));
            code
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let socket = cli
        .socket
        .or_else(|| {
            std::env::var_os("GOLDENFS_SOCKET")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let c = Client {
        socket: &socket,
        timeout: None,
    };
    match cli.command {
        Command::Daemon {
            state_dir,
            allow_uid,
            threads,
            compact_depth,
            docker_plugin,
            docker_volume_dir,
            metrics,
        } => {
            crate::daemon::reexec_with_allocator_tunables();
            // fuser's own unmount-on-drop runs after ours and warns that the
            // mount is already gone; views report their unmount errors themselves.
            // fuser answers every FUSE_INTERRUPT itself (ENOSYS), and the kernel
            // refuses that reply with ENOENT when the interrupted request was
            // answered first: Go programs (dockerd, containerd) trigger dozens of
            // these "Failed to send FUSE reply" errors per build, none of them a
            // failed request. RUST_LOG, parsed last, overrides these defaults.
            env_logger::Builder::new()
                .filter_level(log::LevelFilter::Info)
                .filter_module("fuser::mnt", log::LevelFilter::Error)
                .filter_module("fuser::reply", log::LevelFilter::Off)
                .parse_env(env_logger::Env::default())
                .init();
            let state_dir = absolute(&state_dir, "--state-dir")?;
            let socket = absolute_lenient(&socket);
            let docker_plugin = docker_plugin.map(|p| crate::daemon::docker_plugin::DockerPluginConfig {
                socket: absolute_lenient(&p),
                volume_dir: absolute_lenient(
                    &docker_volume_dir.unwrap_or_else(|| crate::daemon::docker_plugin::DEFAULT_VOLUME_DIR.into()),
                ),
            });
            crate::daemon::run(DaemonConfig {
                state_dir,
                socket,
                allow_uids: allow_uid,
                threads,
                compact_depth,
                docker_plugin,
                metrics,
            })?;
            Ok(())
        }
        Command::Project(ProjectCmd::Create {
            project,
            from,
            move_,
            json,
        }) => {
            let from = match from {
                Some(p) => Some(path_string(&absolute(&p, "--from")?)?),
                None => None,
            };
            let kind = OperationKind::Import;
            let r: ImportReport = progress::with_progress(&c, json, kind, Some(&project.clone()), || {
                c.call(&Request::ProjectCreate { project, from, move_ })
            })?;
            output(json, &r, || {
                if r.directories == 0 {
                    return format!("created project {} (generation 1, empty)", r.project);
                }
                let how = if r.moved { "moved" } else { "imported" };
                let mut s = format!(
                    "created project {} (generation 1): {} {} files, {} directories, {} symlinks, {} special files, {} hard links, {}",
                    r.project,
                    how,
                    r.files,
                    r.directories,
                    r.symlinks,
                    r.special_files,
                    r.hard_links,
                    human_bytes(r.bytes)
                );
                if r.stripped_xattrs > 0 {
                    s += &format!("; stripped {} private trusted.goldenfs.* xattrs", r.stripped_xattrs);
                }
                s
            })
        }
        Command::Project(ProjectCmd::List { json }) => {
            let r: ProjectListResult = c.call(&Request::ProjectList {})?;
            output(json, &r, || {
                let rows = r.projects.iter().map(|p| {
                    vec![
                        p.project.clone(),
                        p.current_generation.to_string(),
                        p.generations.to_string(),
                        p.layer_depth.to_string(),
                        p.sessions.len().to_string(),
                        p.created_at.clone(),
                    ]
                });
                table(
                    &["PROJECT", "CURRENT", "GENERATIONS", "LAYERS", "SESSIONS", "CREATED"],
                    rows,
                )
            })
        }
        Command::Project(ProjectCmd::Delete { project, force, json }) => {
            let kind = OperationKind::DeleteProject;
            let r: ProjectDeleteResult = progress::with_progress(&c, json, kind, Some(&project.clone()), || {
                c.call(&Request::ProjectDelete { project, force })
            })?;
            output(json, &r, || {
                let mut s = format!("deleted project {} (freed {})", r.project, human_bytes(r.bytes_freed));
                if !r.discarded_sessions.is_empty() {
                    s += &format!("; discarded sessions {}", r.discarded_sessions.join(", "));
                }
                s
            })
        }
        Command::Session(SessionCmd::Mount {
            project,
            session,
            mountpoint,
            json,
        }) => {
            let mountpoint = path_string(&absolute(&mountpoint, "MOUNTPOINT")?)?;
            let r: MountResult = c.call(&Request::SessionMount {
                project,
                session,
                mountpoint,
            })?;
            output(json, &r, || {
                format!(
                    "mounted session {} of {} (generation {}) at {}",
                    r.session, r.project, r.base_generation, r.mountpoint
                )
            })
        }
        Command::Session(SessionCmd::Unmount { session, lazy, json }) => {
            let r: UnmountResult = c.call(&Request::SessionUnmount { session, lazy })?;
            output(json, &r, || {
                format!(
                    "unmounted session {} from {}{}",
                    r.session,
                    r.mountpoint,
                    if r.lazy { " (lazily)" } else { "" }
                )
            })
        }
        Command::Session(SessionCmd::Discard { session, force, json }) => {
            let r: DiscardResult = c.call(&Request::SessionDiscard { session, force })?;
            output(json, &r, || {
                format!(
                    "discarded session {} of {}{}; its changes are gone",
                    r.session,
                    r.project,
                    if r.unmounted { " (unmounted it first)" } else { "" }
                )
            })
        }
        Command::Session(SessionCmd::List { json }) => {
            let r: SessionListResult = c.call(&Request::SessionList {})?;
            output(json, &r, || {
                let rows = r.sessions.iter().map(|s| {
                    vec![
                        s.session.clone(),
                        s.project.clone(),
                        s.base_generation.to_string(),
                        if s.mounted { "yes" } else { "no" }.to_string(),
                        s.mountpoint.clone().unwrap_or_else(|| "-".into()),
                        s.created_at.clone(),
                    ]
                });
                table(
                    &["SESSION", "PROJECT", "BASE", "MOUNTED", "MOUNTPOINT", "CREATED"],
                    rows,
                )
            })
        }
        Command::Promote {
            project,
            session,
            if_generation,
            json,
        } => {
            let r: PromoteReport = c.call(&Request::Promote {
                project,
                session,
                if_generation,
            })?;
            output(json, &r, || {
                format!(
                    "promoted session {}: {} is now at generation {}",
                    r.session, r.project, r.generation
                )
            })
        }
        Command::Compact { project, json } => {
            let kind = OperationKind::Compact;
            let r: CompactReport = progress::with_progress(&c, json, kind, Some(&project.clone()), || {
                c.call(&Request::Compact { project })
            })?;
            output(json, &r, || match &r.layer {
                Some(layer) => format!(
                    "compacted {} generation {} ({} layers) into generation {} (1 layer, {layer}): {} entries in {:.1} s",
                    r.project, r.compacted_from, r.layers_before, r.generation, r.entries, r.seconds
                ),
                None => format!(
                    "{} generation {} has {} layer; nothing to compact",
                    r.project, r.generation, r.layers_before
                ),
            })
        }
        Command::Generations { project, json } => {
            let r: GenerationsResult = c.call(&Request::Generations { project })?;
            output(json, &r, || {
                let rows = r.generations.iter().map(|g| {
                    vec![
                        format!("{}{}", g.generation, if g.current { " *" } else { "" }),
                        g.created_at.clone(),
                        g.session_id.clone().unwrap_or_else(|| "-".into()),
                        g.parent.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                        g.layers.len().to_string(),
                        if g.pinned_by.is_empty() {
                            "-".into()
                        } else {
                            g.pinned_by.join(",")
                        },
                    ]
                });
                table(
                    &["GENERATION", "CREATED", "SESSION", "PARENT", "LAYERS", "PINNED BY"],
                    rows,
                ) + &format!("\n(* = current: {})", r.current)
            })
        }
        Command::Rollback {
            project,
            generation,
            json,
        } => {
            let r: RollbackReport = c.call(&Request::Rollback { project, generation })?;
            output(json, &r, || {
                format!(
                    "{} is now at generation {} (was {})",
                    r.project, r.generation, r.previous
                )
            })
        }
        Command::Gc { keep, json } => {
            let r: GcReport = progress::with_progress(&c, json, OperationKind::Gc, None, || {
                c.call(&Request::Gc { keep: Some(keep) })
            })?;
            output(json, &r, || {
                let gens: Vec<_> = r
                    .deleted_generations
                    .iter()
                    .map(|g| format!("{}:{}", g.project, g.generation))
                    .collect();
                format!(
                    "gc: deleted {} generations{} and {} layers, freed {}",
                    gens.len(),
                    if gens.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", gens.join(", "))
                    },
                    r.deleted_layers.len(),
                    human_bytes(r.bytes_freed)
                )
            })
        }
        Command::Status { json } => {
            let r: StatusResult = c.call(&Request::Status {})?;
            output(json, &r, || {
                output::status_text(&r) + &progress::describe(&r.operations)
            })
        }
        Command::Doctor { state_dir, json } => {
            let checks = crate::doctor::run(&state_dir, &socket);
            let rows = checks.iter().map(crate::doctor::Check::cells);
            output(json, &checks, || table(&["CHECK", "STATUS", "FOUND", "ADVICE"], rows))?;
            match crate::doctor::failures(&checks) {
                0 => Ok(()),
                n => Err(Failure(1, format!("{n} doctor check(s) failed"))),
            }
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "goldenfs",
                &mut script,
            );
            // A closed stdout (e.g. `| head`) is not an error worth a message.
            let _ = std::io::stdout().lock().write_all(&script);
            Ok(())
        }
        Command::Man { dir } => {
            let (cmd, mut page) = (<Cli as clap::CommandFactory>::command(), Vec::new());
            match &dir {
                Some(d) => clap_mangen::generate_to(cmd, d),
                None => clap_mangen::Man::new(cmd).render(&mut page),
            }
            .map_err(|e| {
                let into = dir.map(|d| format!(" into {}", d.display())).unwrap_or_default();
                Failure(1, format!("cannot write the man page{into}: {}", io_reason(&e)))
            })?;
            let _ = std::io::stdout().lock().write_all(&page);
            Ok(())
        }
        Command::Ping { json } => {
            let r: PingResult = c.call(&Request::Ping {})?;
            output(json, &r, || {
                format!("goldenfs daemon {} (pid {}) at {}", r.version, r.pid, socket.display())
            })
        }
    }
}

/// An absolute, resolved path for a path argument that must exist.
fn absolute(p: &Path, what: &str) -> Result<PathBuf, Failure> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|e| {
        Failure(
            2,
            format!(
                "{what} {}: cannot resolve a relative path: {}",
                p.display(),
                io_reason(&e)
            ),
        )
    })?;
    let joined = cwd.join(p);
    match std::fs::canonicalize(&joined) {
        Ok(c) => Ok(c),
        // A stale FUSE mount cannot be resolved; the daemon detaches it.
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(joined),
        Err(e) => Err(Failure(2, format!("{what} {}: {}", p.display(), io_reason(&e)))),
    }
}

fn absolute_lenient(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn path_string(p: &Path) -> Result<String, Failure> {
    p.to_str().map(str::to_string).ok_or_else(|| {
        Failure(
            2,
            format!(
                "{} is not valid UTF-8; the control protocol carries UTF-8 paths only",
                p.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_help_with_an_example() {
        fn check(cmd: &clap::Command, path: &str) {
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let path = format!("{path} {}", sub.get_name());
                let help = sub.get_after_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(help.contains("Example"), "`{path} --help` has no example");
                assert!(sub.get_about().is_some(), "`{path}` has no description");
                check(sub, &path);
            }
        }
        check(&<Cli as clap::CommandFactory>::command(), "goldenfs");
    }

    #[test]
    fn fixed_command_contract_parses() {
        for args in [
            &[
                "goldenfs",
                "daemon",
                "--state-dir",
                "/s",
                "--socket",
                "/x.sock",
                "--allow-uid",
                "1000",
                "--threads",
                "8",
            ][..],
            &["goldenfs", "project", "create", "web", "--from", "/srv", "--move"],
            &["goldenfs", "project", "list", "--json"],
            &["goldenfs", "compact", "web", "--json"],
            &["goldenfs", "daemon", "--compact-depth", "0"],
            &["goldenfs", "daemon", "--docker-plugin"],
            &[
                "goldenfs",
                "daemon",
                "--docker-plugin=/p.sock",
                "--docker-volume-dir",
                "/v",
            ],
            &["goldenfs", "project", "delete", "web", "--force"],
            &["goldenfs", "session", "mount", "web", "s1", "/mnt/s1"],
            &["goldenfs", "session", "unmount", "s1", "--lazy"],
            &["goldenfs", "session", "discard", "s1", "--force"],
            &["goldenfs", "session", "list", "--json"],
            &["goldenfs", "promote", "web", "s1", "--if-generation", "3"],
            &["goldenfs", "generations", "web", "--json"],
            &["goldenfs", "rollback", "web", "2"],
            &["goldenfs", "gc", "--keep", "1", "--json"],
            &["goldenfs", "status", "--json"],
            &["goldenfs", "doctor", "--state-dir", "/s", "--json"],
            &["goldenfs", "completions", "bash"],
            &["goldenfs", "man", "--dir", "/tmp/m"],
        ] {
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        assert!(Cli::try_parse_from(["goldenfs", "project", "create", "web", "--move"]).is_err());
        assert!(Cli::try_parse_from(["goldenfs", "daemon", "--docker-volume-dir", "/v"]).is_err());
    }

    #[test]
    fn io_reasons_are_lowercase_without_errno() {
        let e = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(io_reason(&e), "connection refused");
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
