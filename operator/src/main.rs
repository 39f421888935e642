use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Dialtone operator: supervises telephony workers and serves their readiness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the TelephonyService CRD as YAML.
    Crd,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", telephony_operator::crd::crd_yaml()?),
    }
    Ok(())
}
