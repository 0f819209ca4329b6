//! `rbuild push [--tls-verify=BOOL] NAME[:TAG] [DEST]`: Docker's output from the registry
//! module's push events; the last line has the manifest digest.

use crate::cli::Printer;
use crate::registry::{push, PushEvent, RegistryOptions};
use crate::store::ImageStore;

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// Print only the manifest digest
    #[arg(short, long)]
    pub quiet: bool,
    /// Require HTTPS and verify certificates (false: plain HTTP to any registry; default:
    /// plain HTTP only to localhost, 127.0.0.0/8 and RBUILD_INSECURE_REGISTRIES)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// The image to push: NAME[:TAG] or image ID
    pub name: String,
    /// Where to push it (default: NAME[:TAG] itself)
    pub destination: Option<String>,
}

pub fn run(args: PushArgs, p: &mut Printer) -> anyhow::Result<()> {
    let store = ImageStore::open_default()?.leased("push");
    let opts = RegistryOptions::from_env(args.tls_verify);
    let quiet = args.quiet;
    let mut print_err = None;
    let mut on = |e: &PushEvent| {
        if quiet || print_err.is_some() {
            return;
        }
        let line = match e {
            PushEvent::Repository(r) => format!("The push refers to repository [{r}]"),
            PushEvent::LayerExists(d) => format!("{}: Layer already exists", d.short()),
            PushEvent::LayerPushed(d) => format!("{}: Pushed", d.short()),
        };
        if let Err(err) = p.line(line).and_then(|()| p.flush()) {
            print_err = Some(err);
        }
    };
    let outcome = push(&store, &args.name, args.destination.as_deref(), &opts, &mut on)?;
    if let Some(e) = print_err {
        return Err(e.into());
    }
    if quiet {
        p.line(&outcome.manifest_digest)?;
    } else {
        let tag = outcome.destination.tag().unwrap_or_default();
        p.line(format!("{tag}: digest: {} size: {}", outcome.manifest_digest, outcome.manifest_size))?;
    }
    Ok(())
}
