//! The `secops` binary; everything lives in the library so tests can reach the same code.

fn main() -> std::process::ExitCode {
    secops::main_entry()
}
