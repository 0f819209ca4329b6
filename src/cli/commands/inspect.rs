//! `rbuild inspect [--format T] NAME...`: the JSON array `docker inspect` prints, for
//! containers (looked up first, as docker does) and images.

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
    let containers = crate::containers::Containers::open(store.clone())?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in &args.images {
        if let Ok(record) = containers.find(name) {
            found.push(container_value(&containers, &record));
            continue;
        }
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

/// A container as `docker inspect` shows one (the fields rbuild knows).
fn container_value(containers: &crate::containers::Containers, r: &crate::containers::ContainerRecord) -> Value {
    use crate::containers::{exposed_ports, inspect_ports, ContainerState};
    let config = containers.image_of(r).ok().map(|i| i.config);
    let exposed = config.as_ref().map(exposed_ports).unwrap_or_default();
    let args = r.args();
    let running = r.state == ContainerState::Running;
    let bindings: Map<String, Value> = r
        .port_bindings
        .iter()
        .map(|b| {
            let host = json!([{ "HostIp": b.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                               "HostPort": b.host_port.map(|p| p.to_string()).unwrap_or_default() }]);
            (format!("{}/{}", b.container_port, b.protocol.as_str()), host)
        })
        .collect();
    json!({
        "Id": r.id,
        "Created": r.created,
        "Path": args.first().cloned().unwrap_or_default(),
        "Args": args.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": match r.state { ContainerState::Created => "created", ContainerState::Running => "running", ContainerState::Exited => "exited" },
            "Running": running,
            "Pid": if running { r.monitor_pid.unwrap_or(0) } else { 0 },
            "ExitCode": r.exit_code.unwrap_or(0),
            "StartedAt": r.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "FinishedAt": r.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        },
        "Image": r.image,
        "Name": format!("/{}", r.name),
        "HostConfig": {
            "NetworkMode": r.network_mode().as_str(),
            "PortBindings": bindings,
            "ExtraHosts": r.extra_hosts.iter().map(|h| format!("{}:{}", h.name, h.ip)).collect::<Vec<_>>(),
        },
        "Config": {
            "Hostname": r.short_id(),
            "Env": r.env,
            "Cmd": r.cmd,
            "Entrypoint": r.entrypoint,
            "Image": r.image_name,
            "WorkingDir": r.working_dir,
            "User": r.user,
            "Tty": r.tty,
            "OpenStdin": r.interactive,
            "ExposedPorts": exposed.iter().map(|(p, proto)| (format!("{p}/{}", proto.as_str()), json!({}))).collect::<Map<String, Value>>(),
        },
        "NetworkSettings": { "Ports": inspect_ports(&r.ports, &exposed) },
    })
}
