//! The `rbuild` binary: hands the command line to [`rbuild::cli`] and turns its outcome into
//! an exit code.

fn main() {
    std::process::exit(rbuild::cli::main());
}
