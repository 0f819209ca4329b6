//! `rbuild build --output type=llb,dest=FILE` through the real binary: the written file is
//! decoded as BuildKit's `pb.Definition` and its ops, inputs, mounts and metadata are checked
//! against a multi-stage Dockerfile (COPY --from, RUN --mount=type=cache, ARG/ENV, USER,
//! WORKDIR, .dockerignore). Bad outputs and instructions without a lowering fail by name and
//! write nothing.
//!
//! Needs /bin/busybox (for the base image imported into a temp store); no root, no daemon.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;
use rbuild::llb::pb;
use rbuild::llb::pb::op::Op as Kind;

use crate::fixture::{busybox_store, rbuild, rbuild_ok, require};

const DOCKERFILE: &str = "\
ARG BASE=busybox
FROM ${BASE} AS builder
ARG GREETING=hello
ENV APP_HOME=/app
WORKDIR $APP_HOME
COPY --chown=1000:1000 --chmod=640 src/ ./src/
RUN --mount=type=cache,target=/root/.cache,id=build-cache,sharing=locked echo $GREETING > out.txt
FROM busybox
USER 1000
WORKDIR /srv
COPY --from=builder /app/out.txt .
CMD [\"cat\", \"out.txt\"]
";

/// A temp store with busybox imported and a context with `DOCKERFILE`; None when skipped.
fn setup(dockerfile: &str) -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = busybox_store(dir.path())?;
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("src")).expect("mkdir");
    std::fs::write(ctx.join("Dockerfile"), dockerfile).expect("write");
    std::fs::write(ctx.join("src/a.txt"), "a\n").expect("write");
    std::fs::write(ctx.join(".dockerignore"), "secret.txt\n!keep\n").expect("write");
    Some((dir, root, ctx))
}

/// The decoded ops by digest (each checked against its bytes) and the terminal op.
fn decode(path: &Path) -> (pb::Definition, BTreeMap<String, pb::Op>, pb::Op) {
    let bytes = std::fs::read(path).expect("read the definition");
    let def = pb::Definition::decode(&bytes[..]).expect("a pb.Definition");
    let mut ops = BTreeMap::new();
    for raw in &def.def {
        let op = pb::Op::decode(&raw[..]).expect("an op");
        for input in &op.inputs {
            assert!(ops.contains_key(&input.digest), "op inputs come before the op: {}", input.digest);
        }
        ops.insert(rbuild::llb::op_digest(raw), op);
    }
    let terminal = pb::Op::decode(&def.def.last().expect("ops")[..]).expect("terminal");
    assert!(terminal.op.is_none(), "the last op is the terminal op");
    (def, ops, terminal)
}

fn source_ids(ops: &BTreeMap<String, pb::Op>) -> Vec<String> {
    ops.values()
        .filter_map(|o| match &o.op {
            Some(Kind::Source(s)) => Some(s.identifier.clone()),
            _ => None,
        })
        .collect()
}

/// The op `input` of `op` points at, and its kind.
fn input_op<'a>(ops: &'a BTreeMap<String, pb::Op>, op: &pb::Op, input: i64) -> &'a pb::Op {
    let digest = &op.inputs[usize::try_from(input).expect("an input, not scratch")].digest;
    &ops[digest]
}

fn file_actions(op: &pb::Op) -> &[pb::FileAction] {
    match &op.op {
        Some(Kind::File(f)) => &f.actions,
        other => panic!("expected a file op, got {other:?}"),
    }
}

fn copy_of(action: &pb::FileAction) -> &pb::FileActionCopy {
    match &action.action {
        Some(pb::file_action::Action::Copy(c)) => c,
        other => panic!("expected a copy, got {other:?}"),
    }
}

fn mkdir_of(action: &pb::FileAction) -> &pb::FileActionMkDir {
    match &action.action {
        Some(pb::file_action::Action::Mkdir(m)) => m,
        other => panic!("expected a mkdir, got {other:?}"),
    }
}

fn by_id(opt: &Option<pb::UserOpt>) -> Option<u32> {
    match opt.as_ref()?.user {
        Some(pb::user_opt::User::ById(id)) => Some(id),
        _ => None,
    }
}

#[test]
fn a_multi_stage_dockerfile_lowers_to_the_llb_buildkit_would_run() {
    if !require(crate::fixture::busybox_path().is_some(), "/bin/busybox") {
        return;
    }
    let Some((dir, root, ctx)) = setup(DOCKERFILE) else { return };
    let out = dir.path().join("build.llb");
    let dest = format!("type=llb,dest={}", out.display());
    let printed = rbuild_ok(&root, &["build", "--output", &dest, ctx.to_str().expect("utf8")]);
    assert!(printed.contains("Wrote LLB definition"), "{printed}");
    let (def, ops, terminal) = decode(&out);

    // Sources: busybox once (both stages build on it), the context once with .dockerignore.
    let mut sources = source_ids(&ops);
    sources.sort();
    assert_eq!(sources, ["docker-image://docker.io/library/busybox:latest", "local://context"]);
    let (context_digest, context) = ops
        .iter()
        .find_map(|(d, o)| match &o.op {
            Some(Kind::Source(s)) if s.identifier == "local://context" => Some((d.clone(), s.clone())),
            _ => None,
        })
        .expect("context source");
    assert_eq!(context.attrs.get("local.excludepatterns").map(String::as_str), Some(r#"["secret.txt","!keep"]"#));

    // The final stage: COPY --from=builder into WORKDIR /srv, made by a mkdir owned by USER 1000.
    let final_copy = input_op(&ops, &terminal, 0);
    let [copy_action] = file_actions(final_copy) else { panic!("one copy action") };
    let copy = copy_of(copy_action);
    assert_eq!((copy.src.as_str(), copy.dest.as_str()), ("/app/out.txt", "/srv/"));
    let workdir = input_op(&ops, final_copy, copy_action.input);
    let mkdir = mkdir_of(&file_actions(workdir)[0]);
    assert_eq!((mkdir.path.as_str(), mkdir.mode, mkdir.make_parents), ("/srv", 0o755, true));
    assert_eq!(by_id(&mkdir.owner.as_ref().expect("owner").user), Some(1000));

    // The builder's RUN: the cache mount, ARG and ENV in its env, WORKDIR as cwd.
    let run = input_op(&ops, final_copy, copy_action.secondary_input);
    let Some(Kind::Exec(exec)) = &run.op else { panic!("COPY --from reads the builder's RUN: {run:?}") };
    let meta = exec.meta.as_ref().expect("meta");
    assert_eq!(meta.args, ["/bin/sh", "-c", "echo $GREETING > out.txt"]);
    assert_eq!(meta.cwd, "/app");
    for var in ["APP_HOME=/app", "GREETING=hello"] {
        assert!(meta.env.contains(&var.to_string()), "{var} in {:?}", meta.env);
    }
    assert!(meta.env.iter().any(|e| e.starts_with("PATH=")), "{:?}", meta.env);
    assert_eq!(exec.network, pb::NetMode::Unset as i32);
    let dests: Vec<&str> = exec.mounts.iter().map(|m| m.dest.as_str()).collect();
    assert_eq!(dests, ["/", "/root/.cache"]);
    let cache = &exec.mounts[1];
    assert_eq!(cache.mount_type, pb::MountType::Cache as i32);
    let opt = cache.cache_opt.as_ref().expect("cache opt");
    assert_eq!((opt.id.as_str(), opt.sharing), ("build-cache", pb::CacheSharingOpt::Locked as i32));
    assert_eq!((cache.input, cache.output), (-1, -1));
    assert_eq!((exec.mounts[0].input, exec.mounts[0].output), (0, 0));

    // Its root is the COPY from the context: chown, chmod, onto WORKDIR /app.
    let builder_copy = input_op(&ops, run, exec.mounts[0].input);
    let [ctx_action] = file_actions(builder_copy) else { panic!("one copy action") };
    let copy = copy_of(ctx_action);
    assert_eq!((copy.src.as_str(), copy.dest.as_str(), copy.mode), ("/src", "/app/src/", 0o640));
    let owner = copy.owner.as_ref().expect("owner");
    assert_eq!((by_id(&owner.user), by_id(&owner.group)), (Some(1000), Some(1000)));
    assert_eq!(builder_copy.inputs[usize::try_from(ctx_action.secondary_input).expect("ctx")].digest, context_digest);
    let app = input_op(&ops, builder_copy, ctx_action.input);
    assert_eq!(mkdir_of(&file_actions(app)[0]).path, "/app");
    assert!(mkdir_of(&file_actions(app)[0]).owner.is_none(), "no USER in the builder");
    let base = input_op(&ops, app, 0);
    assert!(matches!(&base.op, Some(Kind::Source(s)) if s.identifier.starts_with("docker-image://")));

    // Metadata: progress names, caps, the Dockerfile lines, and the image config.
    let run_digest = &input_op(&ops, &terminal, 0).inputs[1].digest;
    let run_meta = &def.metadata[run_digest];
    assert!(run_meta.caps.contains_key("exec.mount.cache"), "{:?}", run_meta.caps);
    assert_eq!(
        run_meta.description.get("llb.customname").map(String::as_str),
        Some("[builder 6/6] RUN --mount=type=cache,target=/root/.cache,id=build-cache,sharing=locked echo $GREETING > out.txt")
    );
    let source = def.source.as_ref().expect("source");
    assert_eq!(source.infos[0].data, DOCKERFILE.as_bytes());
    let range = &source.locations[run_digest].locations[0].ranges[0];
    assert_eq!(range.start.as_ref().map(|p| p.line), Some(7));
    let terminal_digest = rbuild::llb::op_digest(def.def.last().expect("terminal"));
    let config = &def.metadata[&terminal_digest].description[rbuild::llb::IMAGE_CONFIG_KEY];
    let config: serde_json::Value = serde_json::from_str(config).expect("config json");
    assert_eq!(config["config"]["User"], "1000");
    assert_eq!(config["config"]["WorkingDir"], "/srv");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["cat", "out.txt"]));
    assert!(config["config"]["Env"].to_string().contains("PATH="), "{config}");
    assert!(!config["config"]["Env"].to_string().contains("APP_HOME"), "the builder's ENV stays there");
    let history = config["history"].as_array().expect("history");
    let last = history.last().expect("entries");
    assert_eq!(last["created_by"], "CMD [\"cat\",\"out.txt\"]");
    assert_eq!(last["empty_layer"], true);
}

#[test]
fn bad_outputs_and_instructions_without_a_lowering_fail_by_name_and_write_nothing() {
    if !require(crate::fixture::busybox_path().is_some(), "/bin/busybox") {
        return;
    }
    let Some((dir, root, ctx)) = setup("FROM busybox\nCOPY --parents src/a.txt /out/\n") else { return };
    let out = dir.path().join("x.llb");
    let context = ctx.to_str().expect("utf8");
    let failed = rbuild(&root, &["build", "--output", &format!("type=llb,dest={}", out.display()), context]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(stderr.contains("Dockerfile:2") && stderr.contains("--parents"), "{stderr}");
    assert!(!out.exists(), "nothing written");
    let bad = rbuild(&root, &["build", "--output", "type=tar,dest=x", context]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("type=tar is not supported"));
}

/// The op kinds and mounts a Dockerfile's other forms lower to: bind from a stage, secret,
/// ssh, tmpfs, `--network=none`, a heredoc COPY, `COPY --link` (a merge) and ADD of a URL.
#[test]
fn mounts_heredocs_links_and_urls_lower_to_their_buildkit_forms() {
    if !require(crate::fixture::busybox_path().is_some(), "/bin/busybox") {
        return;
    }
    let dockerfile = "\
FROM busybox AS tools
RUN echo tool > /tool
FROM busybox
RUN --mount=type=bind,from=tools,source=/tool,target=/mnt/tool --mount=type=secret,id=token --mount=type=ssh --mount=type=tmpfs,target=/scratch,size=64m --network=none cat /mnt/tool
COPY <<EOF /etc/motd
hello
EOF
COPY --link src/a.txt /a.txt
ADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 http://127.0.0.1:9/f.tgz /f.tgz
";
    let Some((dir, root, ctx)) = setup(dockerfile) else { return };
    let out = dir.path().join("more.llb");
    rbuild_ok(&root, &["build", "--output", &format!("type=llb,dest={}", out.display()), ctx.to_str().expect("utf8")]);
    let (def, ops, terminal) = decode(&out);

    // ADD of a URL: an http source with its checksum, copied onto the merged COPY --link.
    let add = input_op(&ops, &terminal, 0);
    let [add_action] = file_actions(add) else { panic!("one action") };
    let url = input_op(&ops, add, add_action.secondary_input);
    let Some(Kind::Source(http)) = &url.op else { panic!("http source: {url:?}") };
    assert_eq!(http.identifier, "http://127.0.0.1:9/f.tgz");
    assert_eq!(http.attrs.get("http.filename").map(String::as_str), Some("f.tgz"));
    assert!(http.attrs.contains_key("http.checksum"));
    assert_eq!(copy_of(add_action).src, "/f.tgz");
    assert!(!copy_of(add_action).attempt_unpack_docker_compatibility, "a download is not unpacked");

    // COPY --link: a copy onto scratch, merged over the base.
    let merged = input_op(&ops, add, add_action.input);
    let Some(Kind::Merge(merge)) = &merged.op else { panic!("merge: {merged:?}") };
    assert_eq!(merge.inputs.len(), 2);
    let linked = &ops[&merged.inputs[1].digest];
    assert_eq!(file_actions(linked)[0].input, -1, "the linked copy lands on scratch");
    let merged_digest = &add.inputs[usize::try_from(add_action.input).expect("input")].digest;
    assert!(def.metadata[merged_digest].caps.contains_key("mergeop"));

    // The heredoc: a scratch file made by mkfile, copied into /etc/motd.
    let heredoc_copy = &ops[&merged.inputs[0].digest];
    let [motd] = file_actions(heredoc_copy) else { panic!("one action") };
    assert_eq!(copy_of(motd).dest, "/etc/motd");
    let made = input_op(&ops, heredoc_copy, motd.secondary_input);
    match &file_actions(made)[0].action {
        Some(pb::file_action::Action::Mkfile(f)) => {
            assert_eq!((f.path.as_str(), &f.data[..]), ("/EOF", &b"hello\n"[..]))
        }
        other => panic!("mkfile: {other:?}"),
    }

    // The RUN: four mounts besides /, network none, SSH_AUTH_SOCK set.
    let run = input_op(&ops, heredoc_copy, motd.input);
    let Some(Kind::Exec(exec)) = &run.op else { panic!("exec: {run:?}") };
    assert_eq!(exec.network, pb::NetMode::None as i32);
    let kinds: Vec<(&str, i32)> = exec.mounts.iter().map(|m| (m.dest.as_str(), m.mount_type)).collect();
    assert_eq!(
        kinds,
        [
            ("/", pb::MountType::Bind as i32),
            ("/mnt/tool", pb::MountType::Bind as i32),
            ("/run/buildkit/ssh_agent.0", pb::MountType::Ssh as i32),
            ("/run/secrets/token", pb::MountType::Secret as i32),
            ("/scratch", pb::MountType::Tmpfs as i32),
        ]
    );
    let bind = &exec.mounts[1];
    assert_eq!((bind.selector.as_str(), bind.readonly), ("/tool", true));
    let tools = input_op(&ops, run, bind.input);
    let tool_args = match &tools.op {
        Some(Kind::Exec(e)) => e.meta.as_ref().map(|m| m.args.join(" ")).unwrap_or_default(),
        other => panic!("the tools stage's RUN: {other:?}"),
    };
    assert!(tool_args.contains("echo tool > /tool"), "{tool_args}");
    let secret = exec.mounts[3].secret_opt.as_ref().map(|s| (s.id.as_str(), s.mode, s.optional));
    assert_eq!(secret, Some(("token", 0o400, true)));
    assert_eq!(exec.mounts[4].tmpfs_opt.as_ref().map(|t| t.size), Some(64 << 20));
    let env = &exec.meta.as_ref().expect("meta").env;
    assert!(env.contains(&"SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0".to_string()), "{env:?}");
}
