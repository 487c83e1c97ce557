//! `audit`: the analysts' command.
//!
//! ```text
//! audit replay [--stream facts|commands|both] [--since T] [--until T] [--from-seq N] [--to-seq N]
//!              [--region ID]... [--kind KIND]... [--player ID] [--correlation ID]
//!              [--format jsonl|csv|parquet] [--output PATH|-] [--follow] [--quiet]
//! audit state --at T (--player ID | --region ID)
//! audit verify [--since T]
//! audit stats [--since T] [--until T] [--stream ...] [--by kind|region|hour] [--format table|json]
//! ```
//!
//! Environment: `NATS_URL` (and `NATS_USER`, `NATS_PASSWORD`; the `analyst` user reads the log),
//! `MONGODB_URI` and `MONGODB_DATABASE` for `verify`, `REGIONS_CONFIG` for region names.
//! Exit status: 0 done, 1 failed (or `verify` found gaps), 2 bad arguments.

use std::io::IsTerminal;
use std::process::ExitCode;

use audit::error::AuditError;
use audit::select::{LogStream, Selection, parse_time};
use audit::sink::{Format, Output, Target};
use clap::{Args, Parser, Subcommand, ValueEnum};
use schemas::{EventId, PlayerId, RegionId, Scope, WorldConfig};
use service::config::env_var as env;

/// The game's event log for analysts: replay it to files, see any moment, prove the audit
/// trail complete, count it.
#[derive(Debug, Parser)]
#[command(name = "audit", version, about, long_about = None)]
struct Cli {
    /// NATS to read the log from (the services' own variable).
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    nats_url: String,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// The events of the log in stream order, as JSONL, CSV or Parquet.
    Replay(Replay),
    /// A player, or a region's entities, as they were at a moment (JSON).
    State(State),
    /// Checks that MongoDB's audit trail holds every event of the log, unaltered, and that
    /// every command has an outcome; exit status 1 when it does not.
    Verify(Verify),
    /// Counts of events by kind, region or hour.
    Stats(Stats),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Streams {
    Facts,
    Commands,
    Both,
}

impl Streams {
    fn list(self) -> Vec<LogStream> {
        match self {
            Streams::Facts => vec![LogStream::Facts],
            Streams::Commands => vec![LogStream::Commands],
            Streams::Both => vec![LogStream::Commands, LogStream::Facts],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FileFormat {
    Jsonl,
    Csv,
    Parquet,
}

#[derive(Debug, Args)]
struct Range {
    /// From the first event stored at or after this time (RFC 3339, or UTC date and time).
    #[arg(long)]
    since: Option<String>,
    /// Up to the last event stored at or before this time.
    #[arg(long)]
    until: Option<String>,
}

#[derive(Debug, Args)]
struct Replay {
    /// Which streams: facts (what happened), commands (what was asked), or both.
    #[arg(long, value_enum, default_value = "facts")]
    stream: Streams,
    #[command(flatten)]
    range: Range,
    /// From this stream sequence (with one stream).
    #[arg(long)]
    from_seq: Option<u64>,
    /// Up to this stream sequence (with one stream).
    #[arg(long)]
    to_seq: Option<u64>,
    /// Only this region (repeat for several; `_global` for accounts and sessions).
    #[arg(long = "region")]
    regions: Vec<String>,
    /// Only this kind of event (repeat for several).
    #[arg(long = "kind")]
    kinds: Vec<String>,
    /// Only events by or about this player (id).
    #[arg(long)]
    player: Option<String>,
    /// Only a command and the facts it caused (its id).
    #[arg(long)]
    correlation: Option<String>,
    /// The file format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: FileFormat,
    /// Where to write: a file (written whole or not at all), or `-` for standard output.
    #[arg(long, default_value = "-")]
    output: String,
    /// Keep reading new events as they are stored (until Ctrl-C); with a file, the file
    /// appears when stopped.
    #[arg(long)]
    follow: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct State {
    /// The moment (RFC 3339, or UTC date and time).
    #[arg(long)]
    at: String,
    /// The player (id).
    #[arg(long, conflicts_with = "region", required_unless_present = "region")]
    player: Option<String>,
    /// The region.
    #[arg(long)]
    region: Option<String>,
}

#[derive(Debug, Args)]
struct Verify {
    /// From the first event stored at or after this time.
    #[arg(long)]
    since: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum By {
    Kind,
    Region,
    Hour,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StatsFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
struct Stats {
    #[command(flatten)]
    range: Range,
    /// Which streams.
    #[arg(long, value_enum, default_value = "both")]
    stream: Streams,
    /// What to count by.
    #[arg(long, value_enum, default_value = "kind")]
    by: By,
    /// A table or JSON.
    #[arg(long, value_enum, default_value = "table")]
    format: StatsFormat,
}

fn world() -> Option<WorldConfig> {
    service::config::read_regions(env, WorldConfig::from_toml).ok()
}

/// The value `text` of the option `flag`; a usage error quoting both when it does not parse.
fn parsed<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, AuditError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| AuditError::usage(format!("{flag} {text:?}: {e}")))
}

fn region(text: &str) -> Result<RegionId, AuditError> {
    parsed("--region", text)
}

fn scope(text: &str) -> Result<Scope, AuditError> {
    if text == schemas::subject::GLOBAL_SCOPE {
        Ok(Scope::Global)
    } else {
        region(text).map(Scope::Region)
    }
}

fn range(r: &Range, selection: &mut Selection) -> Result<(), AuditError> {
    selection.since = r
        .since
        .as_deref()
        .map(|t| parse_time("--since", t))
        .transpose()?;
    selection.until = r
        .until
        .as_deref()
        .map(|t| parse_time("--until", t))
        .transpose()?;
    Ok(())
}

async fn connect(url: &str) -> Result<async_nats::jetstream::Context, AuditError> {
    let credentials = nats_topology::Credentials::from_env(env)
        .map_err(|e| AuditError::usage(format!("{}: {}", e.key, e.why)))?;
    let (_, js) = nats_topology::connect(url, "audit", &credentials)
        .await
        .map_err(|e| AuditError::Nats {
            url: url.to_owned(),
            why: e.to_string(),
        })?;
    Ok(js)
}

fn progress_bar(quiet: bool) -> Option<indicatif::ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} events, {per_sec}, ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

async fn replay(
    url: &str,
    args: Replay,
    interrupted: impl Future<Output = ()>,
) -> Result<(), AuditError> {
    let mut selection = Selection {
        streams: args.stream.list(),
        from_seq: args.from_seq,
        to_seq: args.to_seq,
        kinds: args.kinds.clone(),
        follow: args.follow,
        ..Selection::default()
    };
    range(&args.range, &mut selection)?;
    if (args.from_seq.is_some() || args.to_seq.is_some()) && selection.streams.len() > 1 {
        return Err(AuditError::usage(
            "--from-seq and --to-seq number one stream's events: give --stream facts or --stream commands",
        ));
    }
    selection.regions = args
        .regions
        .iter()
        .map(|r| scope(r))
        .collect::<Result<_, _>>()?;
    selection.player = args
        .player
        .as_deref()
        .map(|p| parsed::<PlayerId>("--player", p))
        .transpose()?;
    selection.correlation = args
        .correlation
        .as_deref()
        .map(|c| parsed::<EventId>("--correlation", c))
        .transpose()?;
    selection.check(world().as_ref())?;
    let format = match args.format {
        FileFormat::Jsonl => Format::Jsonl,
        FileFormat::Csv => Format::Csv,
        FileFormat::Parquet => Format::Parquet,
    };
    // The output is checked (its temporary file made) before the log is read.
    let target = Target::open(&Output::parse(&args.output))?;
    let js = connect(url).await?;
    let mut sink = audit::sink::sink(format, target)?;
    let bar = progress_bar(args.quiet);
    let read = audit::log::read(
        &js,
        &selection,
        |p| {
            if let Some(bar) = &bar {
                bar.set_length(p.total);
                bar.set_position(p.done);
            }
        },
        |event| sink.write(&event),
    );
    // Ctrl-C while following (or at any time) ends the replay; a file is kept only when the
    // replay follows (it was asked to run until stopped), never half of a bounded one.
    let summary = tokio::select! {
        r = read => Some(r?),
        _ = interrupted => None,
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match summary {
        Some(summary) => {
            sink.finish()?;
            if summary.undecodable > 0 {
                eprintln!(
                    "audit: {} messages were not events of the log and were left out",
                    summary.undecodable
                );
            }
            Ok(())
        }
        None if args.follow => sink.finish(),
        None => Err(AuditError::usage("interrupted; nothing was written")),
    }
}

async fn state(url: &str, args: State) -> Result<(), AuditError> {
    let at = parse_time("--at", &args.at)?;
    let whose = match (&args.player, &args.region) {
        (Some(p), _) => audit::state::Whose::Player(parsed("--player", p)?),
        (None, Some(r)) => {
            let r = region(r)?;
            Selection {
                streams: vec![LogStream::Facts],
                regions: vec![Scope::Region(r.clone())],
                ..Selection::default()
            }
            .check(world().as_ref())?;
            audit::state::Whose::Region(r)
        }
        (None, None) => return Err(AuditError::usage("give --player or --region")),
    };
    let js = connect(url).await?;
    let value = audit::state::at(&js, &whose, at).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    );
    Ok(())
}

async fn verify(url: &str, args: Verify) -> Result<bool, AuditError> {
    let since = args
        .since
        .as_deref()
        .map(|t| parse_time("--since", t))
        .transpose()?;
    let mongo_url = env("MONGODB_URI")
        .unwrap_or_else(|| "mongodb://127.0.0.1:27017/?directConnection=true".into());
    let database = env("MONGODB_DATABASE").unwrap_or_else(|| "game".into());
    let js = connect(url).await?;
    let mongo_error = |e: mongodb::error::Error| AuditError::Mongo {
        url: mongo_url.clone(),
        why: e.to_string(),
    };
    let mut options = mongodb::options::ClientOptions::parse(&mongo_url)
        .await
        .map_err(mongo_error)?;
    options.server_selection_timeout = Some(std::time::Duration::from_secs(5));
    let client = mongodb::Client::with_options(options).map_err(mongo_error)?;
    let report = audit::verify::verify(&js, &client.database(&database), &mongo_url, since).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    eprintln!(
        "audit verify: {} commands, {} facts; {} missing, {} altered, {} extra, {} without outcome, {} dead-lettered",
        report.commands,
        report.facts,
        report.missing.len(),
        report.altered.len(),
        report.extra.len(),
        report.without_outcome.len(),
        report.dead_lettered.len()
    );
    Ok(report.clean())
}

async fn stats(url: &str, args: Stats) -> Result<(), AuditError> {
    let mut selection = Selection {
        streams: args.stream.list(),
        ..Selection::default()
    };
    range(&args.range, &mut selection)?;
    selection.check(None)?;
    let js = connect(url).await?;
    let by = match args.by {
        By::Kind => audit::stats::By::Kind,
        By::Region => audit::stats::By::Region,
        By::Hour => audit::stats::By::Hour,
    };
    let counts = audit::stats::count(&js, &selection, by).await?;
    match args.format {
        StatsFormat::Table => print!("{}", counts.to_table(by)),
        StatsFormat::Json => println!("{}", counts.to_json()),
    }
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM. Listening starts at once, before any file is made, so that
/// an interruption always goes through the clean-up.
fn interruption() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    async move {
        let int = async {
            match &mut int {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        let term = async {
            match &mut term {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = int => {}
            () = term => {}
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let interrupted = interruption();
    let cli = Cli::parse();
    let url = cli.nats_url.clone();
    let result = match cli.command {
        Commands::Replay(a) => replay(&url, a, interrupted).await.map(|()| true),
        Commands::State(a) => state(&url, a).await.map(|()| true),
        Commands::Verify(a) => verify(&url, a).await,
        Commands::Stats(a) => stats(&url, a).await.map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e @ AuditError::Usage(_)) => {
            eprintln!("audit: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("audit: {e}");
            ExitCode::FAILURE
        }
    }
}
