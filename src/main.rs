use std::process::ExitCode;

fn main() -> ExitCode {
    sealrs::cli::main()
}
