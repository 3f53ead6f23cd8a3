//! The `canvass` command: parses the command line and starts things. Every
//! behaviour lives in the library (see `src/lib.rs` for the module map).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use canvass::config::{self, Config};
use canvass::control::{self, Request};
use canvass::logging::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "canvass",
    version,
    about = "Runs a survey by email: CC'd mail in, one personal invitation out, anonymous answers."
)]
struct Cli {
    /// The configuration file.
    #[arg(long, global = true, env = "CANVASS_CONFIG", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Log format: text or json on stderr, or journald; auto = journald when
    /// systemd connected stderr to the journal ($JOURNAL_STREAM), else text.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (ingest, outbox, web server) until SIGTERM.
    Run,
    /// Print invitations and triggers per region.
    Status {
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration; exit code 2 on errors.
    CheckConfig,
    /// Check the mail set-up with the configured credentials: token, IMAP
    /// login, capabilities and folders, SMTP AUTH and MAIL FROM (nothing is
    /// sent). One line per check; exit status 1 when any fails.
    CheckMail,
    /// Invite contacts by hand (the phone-contact case).
    Invite {
        /// One or more addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
        /// The region the contact belongs to.
        #[arg(long)]
        region: String,
        #[arg(long)]
        json: bool,
    },
    /// Show what canvass decides for raw messages, and why. Touches nothing.
    Explain {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// One JSON object per message.
        #[arg(long)]
        json: bool,
        /// Judge as received at this time (RFC 3339) instead of the file's time.
        #[arg(long)]
        received: Option<String>,
    },
    /// The agency's analysis of the answers (figures 1–4, response rates).
    Report {
        /// Write a self-contained HTML page with charts to FILE.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The anonymous answers, one row per answer.
    Export {
        /// csv, json, or xlsx (an Excel workbook: answers, response rates; needs --out).
        #[arg(long, value_parser = ["csv", "json", "xlsx"], default_value = "csv")]
        format: String,
        /// Start with a UTF-8 byte order mark (Excel).
        #[arg(long)]
        bom: bool,
        /// CSV field separator (Danish Excel opens ';' files directly).
        #[arg(long)]
        delimiter: Option<char>,
        /// Write to FILE instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Show a text with sample data, as the configured templates render it.
    Preview {
        /// invitation, reminder, confirmation, digest or form.
        #[arg(value_parser = canvass::preview::WHAT)]
        what: String,
        /// Also write the HTML (the mail's HTML part, the digest, the form) to FILE.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Send one sample invitation to ADDRESS through the configured
    /// transport; marked as a test, it invites no one and its link shows a
    /// test page.
    SendTest { address: String },
    /// The managers' digest now.
    Digest {
        /// Render it to the terminal, send nothing.
        #[arg(long, conflicts_with = "send", required_unless_present = "send")]
        print: bool,
        /// Queue it for every manager now.
        #[arg(long)]
        send: bool,
    },
    /// Create a new HMAC key file (mode 0600).
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Erase invitees' plain addresses per [retention] (the daemon also does
    /// it by itself when due); the HMAC dedup key, flags and answers stay.
    Purge {
        /// Count what would be erased; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Erase now, before the configured deadline.
        #[arg(long)]
        now: bool,
        #[arg(long)]
        json: bool,
    },
    /// Erase what is held about one person (GDPR art. 17). Their HMAC dedup
    /// key stays, so they are never invited again.
    Forget {
        address: String,
        #[arg(long)]
        json: bool,
    },
    /// Withdraw invitations that should never have been made (a forged
    /// sender, a wrong address, a colleague CC'd by mistake): the link shows
    /// "withdrawn", queued mail is dropped, and the invitation leaves every
    /// count and rate. The person is not invited again.
    Withdraw {
        #[arg(required = true)]
        addresses: Vec<String>,
        /// Why, for the record (kept in the store, not shown to the person).
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent snapshot of the store to FILE (mode 0600), also
    /// while the daemon runs.
    Backup { file: PathBuf },
    /// Replace the store with a backup. The daemon must be stopped.
    Restore {
        file: PathBuf,
        /// Replace a store that holds data.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    // Whatever the umask: the store, sent mail, exports and backups are
    // this user's only (src/private.rs).
    canvass::private::restrict_umask();
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("canvass: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig => match Config::load(&cli.config) {
            Ok(cfg) => {
                let problems = cfg.check_files();
                if problems.is_empty() {
                    print!("{}", cfg.summary());
                    return Ok(ExitCode::SUCCESS);
                }
                eprint!(
                    "{}",
                    config::ConfigErrors {
                        path: cfg.path.clone(),
                        errors: problems
                    }
                );
                Ok(ExitCode::from(2))
            }
            Err(e) => {
                eprint!("{e}");
                Ok(ExitCode::from(2))
            }
        },
        Command::CheckMail => {
            let cfg = load_config(&cli.config)?;
            let checks = runtime()?.block_on(canvass::checkmail::run(&cfg));
            print!("{}", canvass::checkmail::render(&checks));
            Ok(if checks.iter().all(|c| c.ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Keygen { out } => {
            canvass::address::generate_key_file(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            println!("wrote a new key to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain {
            files,
            json,
            received,
        } => {
            let cfg = load_config(&cli.config)?;
            let received = received
                .map(|r| {
                    chrono::DateTime::parse_from_rfc3339(&r)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .with_context(|| format!("--received {r:?} is not an RFC 3339 time"))
                })
                .transpose()?;
            let mut failed = false;
            for f in files {
                match canvass::explain::explain_file(&f, received, &cfg) {
                    Ok(e) if json => println!("{}", serde_json::to_string(&e)?),
                    Ok(e) => print!("{}", canvass::explain::render_text(&e, &cfg)),
                    Err(e) => {
                        eprintln!("canvass: {e:#}");
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Run => {
            let cfg = load_config(&cli.config)?;
            runtime()?.block_on(canvass::daemon::run_with_signals(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => ask(&cli.config, Request::Status, json),
        Command::Invite {
            addresses,
            region,
            json,
        } => ask(&cli.config, Request::Invite { addresses, region }, json),
        Command::Report { html: None, json } => {
            ask(&cli.config, Request::Report { html: false }, json)
        }
        Command::Report {
            html: Some(file), ..
        } => {
            let answer = fetch(&cli.config, Request::Report { html: true })?;
            write_answer(answer, Some(&file))
        }
        Command::Export { format, out, .. } if format == "xlsx" => {
            export_xlsx(&cli.config, out.as_deref())
        }
        Command::Export {
            format,
            bom,
            delimiter,
            out,
        } => {
            let answer = fetch(
                &cli.config,
                Request::Export {
                    format,
                    bom,
                    delimiter,
                },
            )?;
            write_answer(answer, out.as_deref())
        }
        Command::Digest { send, .. } => ask(&cli.config, Request::Digest { send }, false),
        Command::Purge { dry_run, now, json } => {
            ask(&cli.config, Request::Purge { dry_run, now }, json)
        }
        Command::Forget { address, json } => ask(&cli.config, Request::Forget { address }, json),
        Command::Withdraw {
            addresses,
            reason,
            json,
        } => ask(&cli.config, Request::Withdraw { addresses, reason }, json),
        Command::Backup { file } => backup(&cli.config, &file),
        Command::Preview { what, html } => {
            let cfg = load_config(&cli.config)?;
            let p = canvass::preview::preview(&cfg, &what)?;
            print!("{}", p.text);
            match (html, p.html) {
                (Some(file), Some(h)) => {
                    std::fs::write(&file, h)
                        .with_context(|| format!("cannot write {}", file.display()))?;
                    eprintln!("wrote {}", file.display());
                }
                (Some(_), None) => eprintln!("canvass: the {what} has no HTML part"),
                _ => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::SendTest { address } => send_test(&cli.config, &address),
        Command::Restore { file, force } => restore(&cli.config, &file, force),
    }
}

/// `canvass backup FILE`: the snapshot is taken by whoever holds the store
/// (the daemon, through its socket) and written here, atomically, mode 0600.
fn backup(config: &std::path::Path, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    use base64::Engine;
    let answer = fetch(config, Request::Backup)?;
    if !answer.ok {
        eprintln!("canvass: {}", answer.text);
        return Ok(ExitCode::FAILURE);
    }
    let bytes = answer.json["backup"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .context("the daemon's answer holds no backup")?;
    canvass::store::backup::write_private_file(file, &bytes)
        .with_context(|| format!("cannot write {}", file.display()))?;
    println!("wrote {}: {}", file.display(), answer.text);
    Ok(ExitCode::SUCCESS)
}

/// `canvass export --format xlsx --out FILE`: the workbook is built by
/// whoever holds the store and written here.
fn export_xlsx(
    config: &std::path::Path,
    out: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use base64::Engine;
    let Some(out) = out else {
        eprintln!("canvass: an xlsx workbook is binary: give --out FILE.xlsx");
        return Ok(ExitCode::from(2));
    };
    let answer = fetch(
        config,
        Request::Export {
            format: "xlsx".to_string(),
            bom: false,
            delimiter: None,
        },
    )?;
    if !answer.ok {
        eprintln!("canvass: {}", answer.text);
        return Ok(ExitCode::FAILURE);
    }
    let bytes = answer.json["xlsx"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .context("the daemon's answer holds no workbook")?;
    // The workbook holds answers: 0600, also over an old file (issue 14).
    canvass::store::backup::write_private_file(out, &bytes)
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("wrote {} ({})", out.display(), answer.text);
    Ok(ExitCode::SUCCESS)
}

/// `canvass send-test ADDRESS`: one sample invitation, for real, through
/// the configured transport; no store, no token, no invitation.
fn send_test(config: &std::path::Path, address: &str) -> anyhow::Result<ExitCode> {
    let cfg = load_config(config)?;
    let to = canvass::address::parse(address)
        .map_err(|e| anyhow::anyhow!("{address:?} is not a valid address: {e}"))?;
    let msg = canvass::compose::test_invitation(&cfg, &to)?;
    let transport = canvass::transport::from_config(&cfg.outbound)?;
    runtime()?
        .block_on(transport.send(&msg.from, &msg.to, &msg.raw))
        .map_err(|e| anyhow::anyhow!("{} did not take the test mail: {e}", transport.describe()))?;
    println!(
        "sent a test invitation to {to} through {} (marked as a test; its link shows the test page {}{})",
        transport.describe(),
        cfg.base_url,
        canvass::compose::TEST_PATH
    );
    Ok(ExitCode::SUCCESS)
}

/// `canvass restore FILE [--force]`: only with the daemon stopped.
fn restore(
    config: &std::path::Path,
    file: &std::path::Path,
    force: bool,
) -> anyhow::Result<ExitCode> {
    use canvass::store::backup::{restore, Backup, BackupError};
    let cfg = load_config(config)?;
    if let Ok(Some(_)) =
        runtime()?.block_on(control::request(&cfg.control_socket, &Request::Status))
    {
        eprintln!(
            "canvass: a canvass daemon is running on this store (it answered on {}); stop it first (systemctl stop canvass), then restore",
            cfg.control_socket.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let backup = match Backup::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("canvass: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match restore(&cfg.store_path, &backup, force) {
        Ok(r) => {
            println!(
                "restored {} into {}{}",
                file.display(),
                r.store.display(),
                if r.replaced {
                    " (the store that was there is replaced)"
                } else {
                    ""
                }
            );
            println!("  {}", r.backup.render());
            println!("note: erasures made after the backup was taken are undone: run `canvass forget` again for requests since then; the retention purge runs again by itself when due");
            Ok(ExitCode::SUCCESS)
        }
        Err(BackupError::Store(canvass::store::StoreError::Locked { path })) => {
            eprintln!("canvass: the store at {path} is held by another canvass process (a running daemon?); stop it first, then restore");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("canvass: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Asks the running daemon over its control socket, or answers from the store
/// when no daemon runs.
fn fetch(config: &std::path::Path, req: Request) -> anyhow::Result<control::Answer> {
    let cfg = load_config(config)?;
    let rt = runtime()?;
    Ok(
        match rt.block_on(control::request(&cfg.control_socket, &req)) {
            Ok(Some(a)) => a,
            Ok(None) | Err(_) => {
                let pipeline = std::sync::Arc::new(canvass::pipeline::Pipeline::open_offline(cfg)?);
                rt.block_on(control::respond(pipeline, req))
            }
        },
    )
}

/// Writes an answer's text to `out` (or standard output).
fn write_answer(
    answer: control::Answer,
    out: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    if !answer.ok {
        eprintln!("canvass: {}", answer.text);
        return Ok(ExitCode::FAILURE);
    }
    match out {
        Some(path) => {
            // Reports and exports hold answers: 0600, also over an old file.
            canvass::store::backup::write_private_file(path, answer.text.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{}", answer.text),
    }
    Ok(ExitCode::SUCCESS)
}

fn ask(config: &std::path::Path, req: Request, json: bool) -> anyhow::Result<ExitCode> {
    let answer = fetch(config, req)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer.json)?);
    } else if answer.ok {
        print!("{}", answer.text);
    } else {
        eprintln!("canvass: {}", answer.text);
    }
    Ok(if answer.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
