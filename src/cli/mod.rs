//! The command line: flags in, library calls, errors mapped to exit codes.

pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
