//! The `prospect-edge` command: run, check, demo, openapi, token.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prospect_edge::server::{self, PingoraFlags};
use prospect_edge::token::{self, Mint};

mod demo;

/// jemalloc instead of glibc malloc: glibc's malloc/free were ~40 % of a 25-record
/// search's instructions (the `Value` trees of each answer). Measured with
/// `benches/load/instr.sh`: GET one contact −13 % instructions, peak RSS at 1,000
/// connections unchanged (mimalloc, tried before, doubled it).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "prospect-edge",
    version,
    about = "The public API edge of ProspectConnect"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the public API.
    Run {
        #[arg(short = 'c', long = "conf", default_value = "conf/edge.yaml")]
        conf: PathBuf,
        /// Take the listening sockets over from a running edge (zero-downtime upgrade).
        #[arg(short = 'u', long)]
        upgrade: bool,
        /// Run in the background.
        #[arg(short = 'd', long)]
        daemon: bool,
        #[arg(long)]
        pid_file: Option<String>,
        #[arg(long)]
        upgrade_sock: Option<String>,
    },
    /// Validate the config and every mapping file; report all errors.
    Check {
        #[arg(short = 'c', long = "conf", default_value = "conf/edge.yaml")]
        conf: PathBuf,
    },
    /// Start the reference legacy CRM, a dev token issuer and the edge, on loopback.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: String,
        #[arg(short = 'c', long = "conf", default_value = "conf/demo/edge.yaml")]
        conf: PathBuf,
        /// Logs as JSON lines on stderr (as `run` writes them) instead of to the log file.
        #[arg(long)]
        log_json: bool,
        /// Where the logs go without `--log-json` (default: prospect-edge-demo.log in the
        /// temporary directory); the banner prints the path.
        #[arg(long)]
        log_file: Option<PathBuf>,
    },
    /// Print the OpenAPI 3.1 document of the public API, generated from the mappings.
    Openapi {
        #[arg(short = 'c', long = "conf", default_value = "conf/edge.yaml")]
        conf: PathBuf,
        /// The release to describe (default: the current one).
        #[arg(long)]
        version: Option<String>,
        /// Print the supported releases, one a line, instead of a document.
        #[arg(long)]
        list_versions: bool,
    },
    /// Mint a dev access token signed with the demo issuer's key.
    Token {
        #[arg(long)]
        tenant: u32,
        #[arg(long)]
        user: u64,
        #[arg(long, default_value = "demo-app")]
        client: String,
        #[arg(long, default_value = token::ALL_SCOPES)]
        scope: String,
        #[arg(long, default_value_t = 3600, allow_negative_numbers = true)]
        ttl: i64,
        #[arg(long, default_value = token::DEMO_AUDIENCE)]
        aud: String,
        #[arg(long, default_value = token::DEMO_ISSUER)]
        iss: String,
        #[arg(long, default_value = token::DEMO_KID)]
        kid: String,
        #[arg(long, default_value = "conf/demo/issuer-key.pem")]
        key: PathBuf,
    },
}

fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

fn init_logs() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .init();
}

/// The demo's logs (pingora's, the edge's, the access log) in a file, so that the banner a
/// newcomer reads stays on the terminal. Same JSON lines as `--log-json`.
fn init_demo_logs(path: &std::path::Path) -> std::io::Result<()> {
    let file = std::sync::Arc::new(std::fs::File::create(path)?);
    prospect_edge::access_log::write_to(file.clone());
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(log_filter())
        .with_writer(file)
        .init();
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { conf } => match server::load(&conf) {
            Ok((cfg, plan)) => {
                println!(
                    "ok: {} — {} upstreams, {} issuers, {} mapping files, {} resources, versions {}",
                    conf.display(),
                    cfg.upstreams.len(),
                    cfg.issuers.len(),
                    plan.files,
                    plan.resources.len(),
                    plan.versions.supported().join(", ")
                );
                ExitCode::SUCCESS
            }
            Err(d) => {
                eprint!("{}", d.render());
                eprintln!("{} error(s)", d.all.len());
                ExitCode::FAILURE
            }
        },
        Cmd::Run {
            conf,
            upgrade,
            daemon,
            pid_file,
            upgrade_sock,
        } => {
            init_logs();
            let (cfg, plan) = match server::load(&conf) {
                Ok(x) => x,
                Err(d) => {
                    eprint!("{}", d.render());
                    return ExitCode::FAILURE;
                }
            };
            match server::run(
                cfg,
                plan,
                PingoraFlags {
                    upgrade,
                    daemon,
                    pid_file,
                    upgrade_sock,
                },
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cannot start: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Demo {
            listen,
            admin,
            conf,
            log_json,
            log_file,
        } => {
            let log_path = if log_json {
                init_logs();
                None
            } else {
                let path =
                    log_file.unwrap_or_else(|| std::env::temp_dir().join("prospect-edge-demo.log"));
                if let Err(e) = init_demo_logs(&path) {
                    eprintln!("cannot write the log file {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                Some(path)
            };
            demo::run(&conf, &listen, &admin, log_path.as_deref())
        }
        Cmd::Openapi {
            conf,
            version,
            list_versions,
        } => openapi(&conf, version.as_deref(), list_versions),
        Cmd::Token {
            tenant,
            user,
            client,
            scope,
            ttl,
            aud,
            iss,
            kid,
            key,
        } => {
            let m = Mint {
                tenant,
                user,
                client,
                scope,
                ttl,
                aud,
                iss,
                kid,
            };
            match token::read_key(&key).and_then(|pem| token::mint(&pem, &m)) {
                Ok(t) => {
                    println!("{t}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `prospect-edge openapi`: the document on stdout, or every error on stderr.
fn openapi(conf: &std::path::Path, version: Option<&str>, list_versions: bool) -> ExitCode {
    let (plan, settings) = match prospect_edge::openapi::load(conf) {
        Ok(x) => x,
        Err(d) => {
            eprint!("{}", d.render());
            eprintln!("{} error(s)", d.all.len());
            return ExitCode::FAILURE;
        }
    };
    // Written, not printed: a closed pipe (`| head`) is an error, not a panic.
    let write = |text: String| {
        use std::io::Write;
        match writeln!(std::io::stdout().lock(), "{text}") {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        }
    };
    if list_versions {
        return write(plan.versions.supported().join("\n"));
    }
    let version = version.unwrap_or(&plan.versions.current).to_string();
    let doc = match prospect_edge::openapi::document(&plan, &settings, &version) {
        Ok(doc) => doc,
        Err(_) => {
            eprintln!(
                "unsupported version `{version}` (supported: {})",
                plan.versions.supported().join(", ")
            );
            return ExitCode::FAILURE;
        }
    };
    match serde_json::to_string_pretty(&doc) {
        Ok(text) => write(text),
        Err(e) => {
            eprintln!("cannot render the document: {e}");
            ExitCode::FAILURE
        }
    }
}
