//! unitwatch-http: serves /health and /metrics from the daemon's status
//! snapshot. Not built yet (its own issue); until then it says so and exits.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("unitwatch-http {}: not implemented yet; read <runtime_dir>/status.json or run `unitwatchd check --json`", env!("CARGO_PKG_VERSION"));
    ExitCode::from(69)
}
