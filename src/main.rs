//! Parse the command line, load settings, dispatch; nothing else.

use clap::{CommandFactory, FromArgMatches};

use harvester::app::{self, AppError};
use harvester::cli::{Cli, Command};
use harvester::{config, logging};

fn main() {
    // .env first, without overriding the environment, so that clap sees flags > env > .env.
    if let Err(e) = config::load_dotenv() {
        eprintln!("error: {}", harvester::escape::text(&e.to_string()));
        std::process::exit(2);
    }
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let level_from_command_line =
        matches.value_source("log_level") == Some(clap::parser::ValueSource::CommandLine);
    harvester::progress::set_quiet(cli.quiet);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let code = rt.block_on(async {
        let loggly = cli
            .loggly_token
            .clone()
            .filter(|t| !t.is_empty())
            .map(|token| logging::LogglyConfig {
                token,
                tags: cli.loggly_tags.clone(),
                url: cli.loggly_url.clone(),
            });
        let level = logging::effective_level(&cli.log_level, cli.quiet, level_from_command_line);
        let guard = match logging::init(&level, cli.log_format.into(), loggly) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        let result: Result<(), AppError> = match &cli.command {
            Command::Harvest(a) => app::harvest(&cli, a).await,
            Command::Forward(a) => app::forward(&cli, a).await,
            Command::Run(a) => app::run::run(&cli, a).await,
            Command::Checkpoint(a) => app::checkpoint(&cli, a).await,
            Command::Check(a) => app::check(&cli, a).await,
            Command::LoadEpisodes(a) => app::load_episodes(&cli, a).await,
            Command::Journal(a) => app::journal::run(&cli, a).await,
            Command::Report(a) => app::report::run(&cli, a).await,
            Command::Sim(a) => app::sim(a).await,
            Command::Demo(a) => app::demo(a).await,
            Command::BenchFetch(a) => app::bench_fetch(&cli, a).await,
            Command::Completions(a) => app::docs::completions(a),
            Command::Man(a) => app::docs::man(a),
        };
        let code = match result {
            Ok(()) => 0,
            Err(e) => {
                // One line a person (or a log pipeline, in JSON mode) can act on.
                match cli.log_format {
                    harvester::cli::LogFormat::Json => tracing::error!("{e}"),
                    harvester::cli::LogFormat::Text => {
                        // Its text may quote what others sent (an Opencast body, an S3
                        // object, a media package id): escaped, it cannot drive the terminal.
                        let e = e.to_string();
                        let e = harvester::escape::text(&e);
                        harvester::progress::suspend(|| eprintln!("error: {e}"))
                    }
                }
                e.exit_code()
            }
        };
        guard.finish().await;
        code
    });
    // Dropping the runtime drops every task still alive (a forwarder past its shutdown timeout,
    // say) and with them their handles on the journal, so redb closes the file cleanly before the
    // process ends; blocking work in hand gets a few seconds to finish its transaction.
    rt.shutdown_timeout(std::time::Duration::from_secs(10));
    std::process::exit(code);
}
