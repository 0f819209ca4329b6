//! `rbuild pull [-q] [--tls-verify=BOOL] NAME[:TAG|@DIGEST]`: Docker's output from the
//! registry module's pull events.

use crate::cli::Printer;
use crate::registry::{pull, PullEvent, RegistryOptions};
use crate::store::ImageStore;

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// Print only the pulled reference
    #[arg(short, long)]
    pub quiet: bool,
    /// Require HTTPS and verify certificates (false: plain HTTP to any registry; default:
    /// plain HTTP only to localhost, 127.0.0.0/8 and RBUILD_INSECURE_REGISTRIES)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// NAME[:TAG|@DIGEST]
    pub name: String,
}

pub fn run(args: PullArgs, p: &mut Printer) -> anyhow::Result<()> {
    let store = ImageStore::open_default()?;
    let opts = RegistryOptions::from_env(args.tls_verify);
    let quiet = args.quiet;
    let mut print_err = None;
    let mut on = |e: &PullEvent| {
        if quiet || print_err.is_some() {
            return;
        }
        let Some(line) = e.message() else { return };
        if let Err(err) = p.line(line).and_then(|()| p.flush()) {
            print_err = Some(err);
        }
    };
    let outcome = pull(&store, &args.name, &opts, &mut on)?;
    if let Some(e) = print_err {
        return Err(e.into());
    }
    if !quiet {
        p.line(format!("Digest: {}", outcome.manifest_digest))?;
        let shown = outcome.reference.familiar();
        if outcome.up_to_date {
            p.line(format!("Status: Image is up to date for {shown}"))?;
        } else {
            p.line(format!("Status: Downloaded newer image for {shown}"))?;
        }
    }
    p.line(&outcome.reference)?;
    Ok(())
}
