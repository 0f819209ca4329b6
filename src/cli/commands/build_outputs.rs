//! `rbuild build`'s outputs for CI jobs: `--push`, `--output`/`-o`, `--metadata-file`,
//! `--iidfile` and `-q`'s image ID, parsed before the build starts and carried out after it
//! succeeds with [`crate::engine::outputs`].

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use crate::cli::Printer;
use crate::engine::outputs::{export, metadata, OutputPlan};
use crate::registry::{push, PushEvent, RegistryOptions};
use crate::store::{ImageReference, ImageStore};

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Push the image to the registries of its -t names after the build
    #[arg(long)]
    push: bool,
    /// Also write the result as type=oci|docker|tar|local,dest=PATH (an OCI layout archive, a
    /// docker-archive, a tar of the flattened root filesystem, a directory of it; dest=- is
    /// stdout), or type=registry / type=image[,push=true][,name=N], or type=llb,dest=FILE (the
    /// build as BuildKit's LLB, not run). `-o DIR` is type=local,
    /// `-o -` a tar on stdout. With --output the -t names only name the image inside
    /// archives: the store's tags are not touched unless type=image is given too
    #[arg(short = 'o', long = "output", value_name = "type=TYPE,dest=PATH")]
    outputs: Vec<String>,
    /// Write the build's result as JSON (containerimage.digest, containerimage.config.digest,
    /// image.name: the keys buildx writes) to this file
    #[arg(long, value_name = "FILE")]
    metadata_file: Option<PathBuf>,
}

impl OutputArgs {
    /// The `--output` values as given (`type=llb` is taken before a build plans its outputs).
    pub fn raw(&self) -> &[String] {
        &self.outputs
    }

    /// The outputs, checked before anything is built.
    pub fn plan(&self, tags: &[String]) -> anyhow::Result<OutputPlan> {
        Ok(OutputPlan::new(&self.outputs, self.push, tags)?)
    }
}

/// A finished build, as its outputs need it.
pub struct Built<'a> {
    pub store: &'a ImageStore,
    pub id: &'a str,
    pub tags: &'a [String],
    pub registry: &'a RegistryOptions,
    /// `-q`: print only the image ID (after everything else is done).
    pub quiet: bool,
    pub iidfile: Option<&'a std::path::Path>,
}

/// Carries out `plan` for the built image: exports, pushes (Docker's push lines), then the
/// metadata file, the iidfile and, with `-q`, the image ID on stdout (unless an archive went
/// there).
pub fn finish(args: &OutputArgs, plan: &OutputPlan, built: &Built<'_>, p: &mut Printer) -> anyhow::Result<()> {
    let store = built.store;
    let image = store.resolve(built.id)?;
    store.lease_image(&image)?;
    let names: Vec<ImageReference> =
        built.tags.iter().map(|t| ImageReference::parse(t).map(|r| r.with_default_tag())).collect::<Result<_, _>>()?;
    // Status lines go to stderr when an archive is written to stdout.
    let say = |p: &mut Printer, line: String| -> std::io::Result<()> {
        if built.quiet {
            Ok(())
        } else if plan.uses_stdout() {
            p.warn(line);
            Ok(())
        } else {
            p.line(line).and_then(|()| p.flush())
        }
    };
    for output in &plan.exports {
        export(store, &image, &names, output).with_context(|| format!("exporting {}", image.id.short()))?;
    }
    for reference in &plan.push {
        say(p, format!("The push refers to repository [{}]", reference.familiar_name()))?;
        let mut lines = Vec::new();
        let mut on = |e: &PushEvent| match e {
            PushEvent::LayerExists(d) => lines.push(format!("{}: Layer already exists", d.short())),
            PushEvent::LayerPushed(d) => lines.push(format!("{}: Pushed", d.short())),
            PushEvent::Repository(_) => {}
        };
        let outcome = push(store, &image.id.to_string(), Some(&reference.to_string()), built.registry, &mut on)?;
        for line in lines {
            say(p, line)?;
        }
        let tag = outcome.destination.tag().unwrap_or_default();
        say(p, format!("{tag}: digest: {} size: {}", outcome.manifest_digest, outcome.manifest_size))?;
    }
    if let Some(path) = &args.metadata_file {
        let text = serde_json::to_string_pretty(&metadata(&image, &names))?;
        fs_err::write(path, text + "\n").with_context(|| format!("writing --metadata-file {}", path.display()))?;
    }
    if let Some(path) = built.iidfile {
        fs_err::write(path, built.id)?;
    }
    if built.quiet && !plan.uses_stdout() {
        p.line(built.id)?;
    }
    Ok(())
}
