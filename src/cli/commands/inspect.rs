//! `rbuild inspect [--format T] IMAGE...`: the JSON array `docker image inspect` prints.

use crate::cli::template::render;
use crate::cli::Printer;
use crate::image::ContainerConfig;
use crate::store::{ImageStore, StoredImage};
use anyhow::anyhow;
use serde::Serialize;
use serde_json::{json, Map, Value};

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Format output using a Go template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// The container config as Docker shows it: every field present, in Docker's order.
fn docker_config(config: &ContainerConfig) -> Value {
    let c = match serde_json::to_value(config) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let mut out = Map::new();
    let mut put = |k: &str, default: Value| {
        out.insert(k.to_owned(), c.get(k).cloned().unwrap_or(default));
    };
    put("Hostname", json!(""));
    put("Domainname", json!(""));
    put("User", json!(""));
    put("AttachStdin", json!(false));
    put("AttachStdout", json!(false));
    put("AttachStderr", json!(false));
    if c.contains_key("ExposedPorts") {
        put("ExposedPorts", Value::Null);
    }
    put("Tty", json!(false));
    put("OpenStdin", json!(false));
    put("StdinOnce", json!(false));
    put("Env", Value::Null);
    put("Cmd", Value::Null);
    if c.contains_key("Healthcheck") {
        put("Healthcheck", Value::Null);
    }
    if c.contains_key("ArgsEscaped") {
        put("ArgsEscaped", Value::Null);
    }
    put("Image", json!(""));
    put("Volumes", Value::Null);
    put("WorkingDir", json!(""));
    put("Entrypoint", Value::Null);
    put("OnBuild", Value::Null);
    put("Labels", Value::Null);
    for k in ["StopSignal", "StopTimeout", "Shell"] {
        if c.contains_key(k) {
            put(k, Value::Null);
        }
    }
    Value::Object(out)
}

/// The inspect object of one image.
pub fn inspect_value(image: &StoredImage) -> Value {
    let config = &image.config;
    json!({
        "Id": image.id.to_string(),
        "RepoTags": image.tags.iter().map(|t| t.familiar()).collect::<Vec<_>>(),
        "RepoDigests": image.tags.iter().map(|t| format!("{}@{}", t.familiar_name(), image.manifest_digest)).collect::<std::collections::BTreeSet<_>>(),
        "Parent": image.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        "Comment": config.last_comment().unwrap_or_default(),
        "Created": config.created.as_deref().unwrap_or("0001-01-01T00:00:00Z"),
        "DockerVersion": config.extra.get("docker_version").cloned().unwrap_or(json!("")),
        "Author": config.author.as_deref().unwrap_or_default(),
        "Config": docker_config(&config.config),
        "Architecture": config.architecture,
        "Variant": config.variant,
        "Os": config.os,
        "Size": image.unpacked_size(),
        "GraphDriver": { "Data": { "LowerDirs": image.layers.iter().map(|l| l.unpacked_dir.display().to_string()).collect::<Vec<_>>() }, "Name": "overlay" },
        "RootFS": { "Type": "layers", "Layers": image.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>() },
        "Metadata": { "LastTagTime": image.added.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()) },
    })
}

pub fn run(args: InspectArgs, p: &mut Printer) -> anyhow::Result<()> {
    let store = ImageStore::open_default()?;
    let images = store.images()?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in &args.images {
        match store.resolve_in(&images, name) {
            Ok(i) => {
                let mut v = inspect_value(i);
                if v["Variant"].is_null() {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("Variant");
                    }
                }
                found.push(v);
            }
            Err(e) => missing.push(e.to_string()),
        }
    }
    match &args.format {
        Some(format) => {
            for v in &found {
                p.line(render(format, v).map_err(|e| anyhow!(e))?)?;
            }
        }
        None => {
            let mut buf = Vec::new();
            let mut ser = serde_json::Serializer::with_formatter(
                &mut buf,
                serde_json::ser::PrettyFormatter::with_indent(b"    "),
            );
            found.serialize(&mut ser)?;
            p.line(String::from_utf8_lossy(&buf))?;
        }
    }
    if !missing.is_empty() {
        p.flush()?;
        anyhow::bail!("{}", missing.join("\n"));
    }
    Ok(())
}
