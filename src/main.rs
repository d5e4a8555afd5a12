//! `tessera` binary entry point; see [`tessera::cli`].

use std::process::ExitCode;

use clap::Parser;

#[actix_web::main]
async fn main() -> ExitCode {
    tessera::cli::run(tessera::cli::Cli::parse()).await
}
