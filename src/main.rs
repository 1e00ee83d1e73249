//! `neural-style`: the command-line interface. Everything lives in [`cli`]; this file only maps the outcome to
//! the process exit code (0 ok, 1 runtime/GPU error, 2 usage error, 130 interrupted).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
