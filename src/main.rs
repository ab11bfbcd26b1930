//! The `portcullis` binary: parse the command line, start logging, hand over.

use clap::Parser;

fn main() {
    portcullis::logging::init();
    let cli = portcullis::cli::Cli::parse();
    if let Err(failure) = portcullis::cli::dispatch(cli) {
        eprintln!("{}", failure.message);
        std::process::exit(failure.code);
    }
}
