//! `rbuild parse [-f FILE] [--json | --dump] [--check]`: prints the syntax tree of a
//! Dockerfile. Like BuildKit's parser it is syntactic only (an unknown keyword or a bare
//! `HEALTHCHECK` parses); `--check` also reads every instruction (keywords, flags, argument
//! counts) as a build would.

use std::path::PathBuf;

use clap::Args;

use crate::cli::Printer;
use crate::frontend::instructions::{read_instruction, SourceRef};
use crate::frontend::parser;

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// The Dockerfile (`-` reads stdin)
    #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
    file: PathBuf,
    /// Print the syntax tree as JSON (with line spans, flags, heredocs)
    #[arg(long, conflicts_with = "dump")]
    json: bool,
    /// Print BuildKit's AST dump format, one line per instruction
    #[arg(long)]
    dump: bool,
    /// Also check every instruction's keyword, flags and arguments
    #[arg(long)]
    check: bool,
}

pub fn run(args: ParseArgs, printer: &mut Printer) -> anyhow::Result<()> {
    let (name, text) = super::read_dockerfile(&args.file)?;
    let df = parser::parse(&text, &name)?;
    if args.check {
        let src = SourceRef { file: &name, text: &text };
        for node in &df.instructions {
            read_instruction(node, &src)?;
        }
    }
    for warning in &df.warnings {
        printer.warn(format!("warning: {}", warning.headline()));
    }
    if args.json {
        printer.line(serde_json::to_string_pretty(&df)?)?;
    } else if args.dump {
        printer.text(df.dump())?;
    } else {
        let dump = df.dump();
        for (node, line) in df.instructions.iter().zip(dump.lines()) {
            printer.line(format!("{:>4}-{:<4} {line}", node.start_line, node.end_line))?;
        }
    }
    Ok(())
}
