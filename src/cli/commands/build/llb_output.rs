//! `rbuild build --output type=llb,dest=FILE` and `rbuild build --builder URL`: plan the build
//! as a build plans it (base images pulled when missing), lower the plan to BuildKit's LLB
//! ([`crate::llb`]) with the engine's step facts, then write the marshalled `pb.Definition`
//! (all or nothing) for `buildctl build`, or solve it on BuildKit ([`crate::buildkit`]) and load
//! the image into the store.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use super::{BuildArgs, Network, PlanInput};
use crate::buildkit::{BuilderUrl, CacheSpec, SolveInput};
use crate::cli::Printer;
use crate::engine::llb_facts::plan_facts;
use crate::engine::planning::{no_events, plan_build, PullPolicy, StoreImages};
use crate::events::BuildEvent;
use crate::llb::{lower_plan, LlbRequest};
use crate::plan::NetworkMode;

/// The `dest` of a `--output type=llb,…`, if one was asked for (the build is then written as
/// LLB, not run); other output types are left to the build's own outputs.
pub(super) fn llb_destination(outputs: &[String]) -> anyhow::Result<Option<PathBuf>> {
    let mut dest = None;
    for output in outputs {
        let fields: Vec<(&str, &str)> = output.split(',').filter_map(|f| f.split_once('=')).collect();
        if !fields.iter().any(|(k, v)| *k == "type" && *v == "llb") {
            continue;
        }
        let mut path = None;
        for field in output.split(',') {
            match field.split_once('=') {
                Some(("type", _)) => {}
                Some(("dest", v)) if !v.is_empty() => path = Some(PathBuf::from(v)),
                _ => bail!("--output {output:?}: unknown field {field:?} (expected type=llb,dest=FILE)"),
            }
        }
        match path {
            Some(p) if dest.is_none() => dest = Some(p),
            Some(_) => bail!("--output {output:?}: only one type=llb output can be written"),
            None => bail!("--output {output:?}: type=llb needs dest=FILE (or dest=- for stdout)"),
        }
    }
    if dest.is_some() && outputs.len() > 1 {
        bail!("--output type=llb writes the build without running it: it cannot be combined with other outputs");
    }
    Ok(dest)
}

/// The plan lowered to LLB, with what was read to make it.
struct Lowered {
    input: PlanInput,
    plan: crate::plan::BuildPlan,
    llb: crate::llb::LlbDefinition,
}

fn lower(args: &BuildArgs, store: &crate::store::ImageStore, printer: &mut Printer) -> anyhow::Result<Lowered> {
    let input = PlanInput::read(args)?;
    let policy = if args.pull { PullPolicy::Always } else { PullPolicy::Missing };
    let registry = crate::registry::RegistryOptions::from_env(args.tls_verify);
    let images = StoreImages::new(store, policy, registry, no_events());
    let plan = plan_build(&input.request(args), Some(&images))?;
    for warning in &plan.warnings {
        printer.warn(warning);
    }
    let facts = plan_facts(&plan, store, &input.platform)?;
    let request = LlbRequest {
        plan: &plan,
        facts: &facts,
        context: &input.context,
        dockerfile: (&input.name, &input.text),
        // As `docker build --network`: BuildKit's default network unless host or none is asked.
        network: match args.network {
            Network::None => NetworkMode::None,
            Network::Host => NetworkMode::Host,
            Network::Default => NetworkMode::Default,
        },
        platform: input.platform.clone(),
    };
    let llb = lower_plan(&request)?;
    Ok(Lowered { input, plan, llb })
}

/// Lowers the build to LLB and writes it to `dest`.
pub(super) fn write_llb(args: &BuildArgs, dest: &Path, printer: &mut Printer) -> anyhow::Result<()> {
    if args.dry_run {
        bail!("--dry-run and --output type=llb cannot be combined: the LLB output is itself a plan");
    }
    let store = crate::store::ImageStore::open_default()?.leased("build");
    let lowered = lower(args, &store, printer)?.llb;
    let bytes = lowered.encode();
    if dest == Path::new("-") {
        printer.flush()?;
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes).context("writing the LLB definition to stdout")?;
        return Ok(out.flush()?);
    }
    write_atomically(dest, &bytes)?;
    printer.line(format!(
        "Wrote LLB definition ({} ops, {} bytes) to {}",
        lowered.definition.def.len(),
        bytes.len(),
        dest.display()
    ))?;
    Ok(())
}

/// Lowers the build, solves it on the BuildKit at `url`, loads the image, tags it and writes
/// its outputs.
pub(super) fn build_on_buildkit(args: &BuildArgs, url: &BuilderUrl, printer: &mut Printer) -> anyhow::Result<()> {
    if args.dry_run {
        bail!("--dry-run plans locally; drop --builder to see the plan");
    }
    // As for a local build: agent sockets only, checked before anything is solved.
    let agents = crate::engine::ssh::SshAgent::parse_all(&args.ssh)?;
    for agent in &agents {
        agent.check()?;
    }
    let mut secrets = std::collections::BTreeMap::new();
    for spec in &args.secrets {
        let secret = crate::engine::secrets::BuildSecret::parse(spec)?;
        secrets.insert(secret.id.clone(), secret.read()?);
    }
    // The image comes back into the store, so every output a local build has works the same.
    let outputs = args.outputs.plan(&args.tags)?;
    let started = std::time::Instant::now();
    let store = crate::store::ImageStore::open_default()?.leased("build");
    let Lowered { input, plan, mut llb } = lower(args, &store, printer)?;
    // The definition asks BuildKit for what its ops need; rbuild asks only for what it was given.
    crate::plan::entitlements::check(&plan, &crate::plan::entitlements::Entitlement::parse_all(&args.allow)?)?;
    // BuildKit reaches each agent through a proxy of the local build's kind, which passes
    // listing and signing only (the session would pass anything a step asks).
    let proxy_dir = store.work_dir()?;
    let (uid, gid) = (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw());
    let mut proxies = Vec::new();
    let mut ssh_agents = std::collections::BTreeMap::new();
    for (n, agent) in agents.iter().enumerate() {
        let path = proxy_dir.path().join(format!("ssh-{n}"));
        let proxy = crate::engine::ssh::AgentProxy::start(&agent.socket, &path, 0o600, uid, gid)
            .with_context(|| format!("--ssh {}: starting its proxy at {}", agent.id, path.display()))?;
        ssh_agents.insert(agent.id.clone(), proxy.path().to_path_buf());
        proxies.push(proxy);
    }
    for (k, v) in &args.labels.iter().map(|l| l.split_once('=').unwrap_or((l.as_str(), ""))).collect::<Vec<_>>() {
        llb.image_config.config.labels.insert(k.to_string(), v.to_string());
    }
    if args.no_cache {
        // BuildKit's own --no-cache: every op is run again (and its result cached anew).
        for meta in llb.definition.metadata.values_mut() {
            meta.ignore_cache = true;
        }
    }
    printer.flush()?;
    let (events, render_errors) = super::event_sink(args, outputs.uses_stdout());
    let summary = input.context.summary()?;
    let total_steps = plan.step_count();
    events(&BuildEvent::BuildStarted { context_files: summary.files, context_bytes: summary.bytes, total_steps });
    let step_text = plan
        .planned_stages()
        .flat_map(|stage| stage.steps.iter().map(move |s| (s.number, (stage.index, s.original.clone()))))
        .collect();
    let cache_to = args.cache_to.iter().map(|s| CacheSpec::parse("--cache-to", s)).collect::<Result<Vec<_>, _>>()?;
    let cache_from =
        args.cache_from.iter().map(|s| CacheSpec::parse("--cache-from", s)).collect::<Result<Vec<_>, _>>()?;
    if !cache_to.is_empty() || !cache_from.is_empty() {
        printer.warn(
            "--cache-to/--cache-from with --builder use BuildKit's own cache (its format, made and read by BuildKit); rbuild's local cache and its exported caches are separate and not used",
        );
    }
    // Ctrl-C gives the solve up and removes what it left in dockerd; a second one exits at once.
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    super::stop_on_interrupt(&cancel)?;
    let solve = SolveInput {
        builder: url,
        definition: &llb,
        dockerfile_name: &input.name,
        context_root: &input.context.root,
        context_entries: input.context.entries()?.to_vec(),
        total_steps,
        step_text,
        events: events.clone(),
        secrets,
        ssh_agents,
        cache_to,
        cache_from,
        cancel,
    };
    let id = match crate::buildkit::solve(solve, &store) {
        Ok(id) => id,
        Err(e) => {
            // As a local build ends: the failure on stderr, a failing RUN's status as the exit status.
            let (step, exit_code) = match &e {
                crate::buildkit::BuildkitError::StepFailed { step, code, .. } => (Some(*step), *code),
                _ => (None, None),
            };
            events(&BuildEvent::BuildFailed { step, message: e.to_string(), exit_code, last_image_id: None });
            eprintln!("{e}");
            return Err(crate::cli::Exit(e.exit_code()).into());
        }
    };
    let image = store.resolve(&id)?;
    let tags = if outputs.tag_store { args.tags.as_slice() } else { &[] };
    for tag in tags {
        let reference = crate::store::ImageReference::parse(tag)
            .with_context(|| format!("invalid tag {tag:?}"))?
            .with_default_tag();
        store.tag(&image, &reference)?;
    }
    events(&BuildEvent::BuildDone {
        image_id: id.clone(),
        tags: tags.to_vec(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    });
    if let Some(e) = render_errors.lock().ok().and_then(|mut slot| slot.take()) {
        return Err(e.into());
    }
    let built = crate::cli::commands::build_outputs::Built {
        store: &store,
        id: &id,
        tags: &args.tags,
        registry: &crate::registry::RegistryOptions::from_env(args.tls_verify),
        quiet: args.quiet,
        iidfile: args.iidfile.as_deref(),
    };
    crate::cli::commands::build_outputs::finish(&args.outputs, &outputs, &built, printer)
}

/// Writes `bytes` to a temp file beside `dest` and renames it into place.
fn write_atomically(dest: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".rbuild-llb-")
        .tempfile_in(dir)
        .with_context(|| format!("--output dest={}: cannot create a file in {}", dest.display(), dir.display()))?;
    tmp.write_all(bytes).with_context(|| format!("writing {}", dest.display()))?;
    // A definition is not secret: readable as any file the user writes (tempfile makes 0600).
    tmp.as_file().set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error).with_context(|| format!("writing {}", dest.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::llb_destination;

    #[test]
    fn only_llb_outputs_with_a_destination_are_taken() {
        let one = |s: &str| llb_destination(&[s.to_string()]);
        assert_eq!(one("type=llb,dest=out.pb").expect("ok").expect("some").to_str(), Some("out.pb"));
        assert!(llb_destination(&[]).expect("ok").is_none());
        let err = |s: &str| one(s).expect_err(s).to_string();
        assert!(err("type=llb").contains("needs dest=FILE"));
        assert!(one("type=tar,dest=x").expect("not ours").is_none(), "other types are the build's");
        assert!(err("type=llb,dest=x,foo").contains("unknown field"));
        let both = llb_destination(&["type=llb,dest=a".to_string(), "type=oci,dest=b".to_string()]);
        assert!(both.expect_err("combined").to_string().contains("cannot be combined"));
    }
}
