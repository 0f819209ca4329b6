//! `rbuild completion bash|zsh|fish|elvish|powershell`: the shell's completion script on
//! stdout, generated from the clap definitions by `clap_complete` (so it never drifts from
//! the real flags). Installing it is the shell's business; `--help` says where.

use crate::cli::Printer;
use clap::CommandFactory;

#[derive(clap::Args, Debug)]
#[command(after_help = "Load it for the current shell, or install it once:
  bash:  source <(rbuild completion bash)
         rbuild completion bash > ~/.local/share/bash-completion/completions/rbuild
  zsh:   rbuild completion zsh > \"${fpath[1]}/_rbuild\"
  fish:  rbuild completion fish > ~/.config/fish/completions/rbuild.fish")]
pub struct CompletionArgs {
    /// The shell to write the completion script for
    pub shell: clap_complete::Shell,
}

pub fn run(args: CompletionArgs, p: &mut Printer) -> anyhow::Result<()> {
    let mut command = crate::cli::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "rbuild", &mut script);
    p.text(String::from_utf8_lossy(&script))?;
    Ok(())
}
