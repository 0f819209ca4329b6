//! `RUN --mount` (bind, cache, tmpfs, secret) and `RUN --network` through the real `rbuild`
//! binary against a temp store with a busybox base: what the step sees, what reaches the
//! image (nothing of the mounts), the cache rules (bound sources enter the key, secrets never
//! do), and that a secret's bytes end up nowhere in the store.
//!
//! Needs root and /bin/busybox; skips with a message otherwise, fails under CI=true.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::fixture::{rbuild, rbuild_ok, Fixture};

impl Fixture {
    /// `rbuild build --progress=json -t tag [extra] ctx`; returns the JSON event lines.
    fn build_json(&self, ctx: &Path, tag: &str, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["build", "--progress=json", "-t", tag];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().expect("utf8"));
        rbuild_ok(&self.root, &args).lines().map(str::to_string).collect()
    }

    /// The uncompressed tars of the image's layers that its build added on top of busybox.
    fn layer_tars(&self, tag: &str) -> Vec<Vec<u8>> {
        let store = rbuild::store::ImageStore::open(&self.root).expect("store");
        let image = store.resolve(tag).expect("image");
        image
            .layer_blobs()
            .iter()
            .skip(1)
            .map(|l| {
                let blob = store.read_blob(&l.digest).expect("blob");
                let mut tar = Vec::new();
                flate2::read::GzDecoder::new(&blob[..]).read_to_end(&mut tar).expect("gunzip");
                tar
            })
            .collect()
    }
}

fn hits(events: &[String]) -> usize {
    events.iter().filter(|l| l.contains(r#""event":"cache_hit""#)).count()
}

fn layer_paths(tar: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .expect("entries")
        .map(|e| e.expect("entry").path().expect("path").to_string_lossy().into_owned())
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = p.symlink_metadata() else { continue };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() && std::fs::read(&p).is_ok_and(|b| contains(&b, needle)) {
                found.push(p);
            }
        }
    }
    found
}

#[test]
fn bind_mounts_from_the_context_are_read_only_ignored_aware_and_keyed_by_content() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "bind",
        "FROM busybox\n\
         RUN --mount=type=bind,source=app,target=/src cat /src/x > /out && ls -a /src > /listing \
             && (touch /src/ro-probe 2>/dev/null && echo writable || echo read-only) > /ro\n\
         RUN --mount=type=bind,source=app,target=/src,rw echo changed > /src/x && echo new > /src/new \
             && cat /src/x > /out2\n\
         RUN --mount=type=bind,source=app/x,target=/one cat /one > /out3\n",
        &[("app/x", "hello-bind\n"), ("app/secret.key", "ignored\n"), (".dockerignore", "app/secret.key\n")],
    );
    let first = fx.build_json(&ctx, "bind:1", &[]);
    assert_eq!(hits(&first), 0);
    let rootfs = fx.rootfs("bind:1");
    assert_eq!(std::fs::read_to_string(rootfs.join("out")).expect("out"), "hello-bind\n");
    assert_eq!(std::fs::read_to_string(rootfs.join("out3")).expect("out3"), "hello-bind\n");
    let listing = std::fs::read_to_string(rootfs.join("listing")).expect("listing");
    assert!(listing.contains('x') && !listing.contains("secret.key"), "ignored file visible: {listing}");
    assert_eq!(std::fs::read_to_string(rootfs.join("ro")).expect("ro"), "read-only\n");
    assert_eq!(std::fs::read_to_string(rootfs.join("out2")).expect("out2"), "changed\n");
    assert!(!rootfs.join("src").exists(), "the mount target reached the image");
    assert!(!rootfs.join("one").exists(), "the file mount target reached the image");
    // rw writes go to a throwaway copy: neither the context nor the image sees them.
    assert_eq!(std::fs::read_to_string(ctx.join("app/x")).expect("x"), "hello-bind\n");
    assert!(!ctx.join("app/new").exists());
    for tar in fx.layer_tars("bind:1") {
        let paths = layer_paths(&tar);
        assert!(!paths.iter().any(|p| p.starts_with("src/") || p == "src" || p == "one"), "{paths:?}");
    }

    assert_eq!(hits(&fx.build_json(&ctx, "bind:1", &[])), 3, "unchanged sources hit");
    // An ignored file is not part of the key either.
    std::fs::write(ctx.join("app/secret.key"), "changed but ignored\n").expect("write");
    assert_eq!(hits(&fx.build_json(&ctx, "bind:1", &[])), 3);
    std::fs::write(ctx.join("app/x"), "edited\n").expect("write");
    let edited = fx.build_json(&ctx, "bind:2", &[]);
    assert_eq!(hits(&edited), 0, "editing a bound file misses every step that binds it");
    assert!(edited.iter().any(|l| l.contains("cache_miss") && l.contains("app/x")), "{edited:#?}");
    assert_eq!(std::fs::read_to_string(fx.rootfs("bind:2").join("out")).expect("out"), "edited\n");
}

#[test]
fn bind_mounts_from_an_earlier_stage() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "from",
        "FROM busybox AS tools\n\
         RUN mkdir -p /opt/tool && echo v1 > /opt/tool/version\n\
         FROM busybox\n\
         RUN --mount=type=bind,from=tools,source=/opt/tool,target=/mnt/tool cat /mnt/tool/version > /seen\n",
        &[],
    );
    fx.build_json(&ctx, "from:1", &[]);
    let rootfs = fx.rootfs("from:1");
    assert_eq!(std::fs::read_to_string(rootfs.join("seen")).expect("seen"), "v1\n");
    assert!(!rootfs.join("mnt").exists());
    assert!(!rootfs.join("opt").exists());
    assert_eq!(hits(&fx.build_json(&ctx, "from:1", &[])), 2);
    // A change in the stage changes its key, and so the key of the step binding it.
    std::fs::write(
        ctx.join("Dockerfile"),
        std::fs::read_to_string(ctx.join("Dockerfile")).expect("read").replace("echo v1", "echo v2"),
    )
    .expect("write");
    fx.build_json(&ctx, "from:2", &[]);
    assert_eq!(std::fs::read_to_string(fx.rootfs("from:2").join("seen")).expect("seen"), "v2\n");
}

#[test]
fn cache_mounts_persist_across_builds_and_stay_out_of_the_image() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "cache",
        "FROM busybox\n\
         RUN --mount=type=cache,target=/var/cache/app,sharing=locked \
             (cat /var/cache/app/count 2>/dev/null || echo 0) > /before \
             && echo $(( $(cat /before) + 1 )) > /var/cache/app/count \
             && stat -c '%a %u' /var/cache/app > /perm\n",
        &[],
    );
    fx.build_json(&ctx, "cache:1", &[]);
    let first = fx.rootfs("cache:1");
    assert_eq!(std::fs::read_to_string(first.join("before")).expect("before"), "0\n");
    assert_eq!(std::fs::read_to_string(first.join("perm")).expect("perm"), "755 0\n");
    assert!(!first.join("var/cache").exists(), "the cache target reached the image");
    fx.build_json(&ctx, "cache:2", &["--no-cache"]);
    let second = fx.rootfs("cache:2");
    assert_eq!(std::fs::read_to_string(second.join("before")).expect("before"), "1\n", "the cache was kept");
    let cache_dirs: Vec<_> =
        std::fs::read_dir(fx.root.join("cache-mounts")).expect("cache-mounts").flatten().map(|e| e.path()).collect();
    let data = cache_dirs.iter().find(|p| p.is_dir()).expect("a cache dir");
    assert_eq!(std::fs::read_to_string(data.join("count")).expect("count"), "2\n");
    for tar in fx.layer_tars("cache:2") {
        assert!(!layer_paths(&tar).iter().any(|p| p.contains("count")));
    }
}

#[test]
fn tmpfs_mounts_leave_nothing_behind() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "tmpfs",
        "FROM busybox\n\
         RUN --mount=type=tmpfs,target=/scratch,size=1m echo data > /scratch/f \
             && grep ' /scratch tmpfs' /proc/mounts | grep -c size=1024k > /mounted\n\
         RUN --mount=type=tmpfs,target=/tmp echo gone > /tmp/f\n",
        &[],
    );
    fx.build_json(&ctx, "tmpfs:1", &[]);
    let rootfs = fx.rootfs("tmpfs:1");
    assert_eq!(std::fs::read_to_string(rootfs.join("mounted")).expect("mounted"), "1\n");
    assert!(!rootfs.join("scratch").exists());
    assert!(!rootfs.join("tmp/f").exists());
    // The second step wrote only into the tmpfs: it made no layer.
    assert_eq!(fx.layer_tars("tmpfs:1").len(), 1);
}

#[test]
fn secrets_are_readable_in_the_step_and_nowhere_else() {
    let Some(fx) = Fixture::new() else { return };
    const SECRET: &str = "pa55-w0rd-Zq81xv";
    let ctx = fx.context(
        "secret",
        "FROM busybox\n\
         RUN --mount=type=secret,id=tok,required \
             stat -c '%a %u' /run/secrets/tok > /perm && wc -c < /run/secrets/tok > /len \
             && (cat /run/secrets/tok | grep -q pa55 && echo seen > /seen)\n\
         RUN --mount=type=secret,id=tok,env=TOKEN,target=/custom/tok echo ${#TOKEN} > /envlen \
             && stat -c %a /custom/tok > /customperm\n\
         RUN --mount=type=secret,id=absent ls /run/secrets > /absent 2>&1 || echo none > /absent\n",
        &[],
    );
    let secret_file = fx.dir.path().join("tok.txt");
    std::fs::write(&secret_file, SECRET).expect("write");
    let arg = format!("id=tok,src={}", secret_file.display());
    fx.build_json(&ctx, "secret:1", &["--secret", &arg]);
    let rootfs = fx.rootfs("secret:1");
    assert_eq!(std::fs::read_to_string(rootfs.join("perm")).expect("perm"), "400 0\n");
    assert_eq!(std::fs::read_to_string(rootfs.join("len")).expect("len").trim(), SECRET.len().to_string());
    assert_eq!(std::fs::read_to_string(rootfs.join("seen")).expect("seen"), "seen\n");
    assert_eq!(std::fs::read_to_string(rootfs.join("envlen")).expect("envlen").trim(), SECRET.len().to_string());
    assert_eq!(std::fs::read_to_string(rootfs.join("customperm")).expect("perm"), "400\n");
    assert_eq!(std::fs::read_to_string(rootfs.join("absent")).expect("absent"), "none\n", "optional secret");
    assert!(!rootfs.join("run").exists(), "the secret's mount point reached the image");
    assert!(!rootfs.join("custom").exists());
    for tar in fx.layer_tars("secret:1") {
        assert!(!contains(&tar, SECRET.as_bytes()));
        let paths = layer_paths(&tar);
        let under =
            |dir: &str| paths.iter().any(|p| p.trim_end_matches('/') == dir || p.starts_with(&format!("{dir}/")));
        assert!(!under("run") && !under("custom"), "{paths:?}");
    }
    let history = rbuild_ok(&fx.root, &["history", "--no-trunc", "secret:1"]);
    let inspect = rbuild_ok(&fx.root, &["inspect", "secret:1"]);
    assert!(history.contains("/run/secrets/tok"), "{history}");
    assert!(!history.contains(SECRET) && !inspect.contains(SECRET));
    assert_eq!(files_containing(&fx.root, SECRET.as_bytes()), Vec::<PathBuf>::new(), "secret bytes in the store");

    // A new secret value is not a reason to rebuild (Docker's rule)...
    std::fs::write(&secret_file, "another-value").expect("write");
    let again = fx.build_json(&ctx, "secret:1", &["--secret", &arg]);
    assert_eq!(hits(&again), 3);
    // ...and a missing required secret is an error naming the step and the id.
    let out = rbuild(&fx.root, &["build", "--no-cache", "-t", "secret:2", ctx.to_str().expect("utf8")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("secret tok is required") && stderr.contains("step 2"), "{stderr}");
}

#[test]
fn secrets_can_come_from_the_environment() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "envsecret",
        "FROM busybox\nRUN --mount=type=secret,id=API_TOKEN cat /run/secrets/API_TOKEN > /copy\n",
        &[],
    );
    let out = crate::fixture::rbuild_command()
        .env("RBUILD_ROOT", &fx.root)
        .env("API_TOKEN", "from-env")
        .args(["build", "--secret", "id=API_TOKEN", "-t", "envsecret", ctx.to_str().expect("utf8")])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // (Copied into the image on purpose here, to see that the bytes arrived.)
    assert_eq!(std::fs::read_to_string(fx.rootfs("envsecret").join("copy")).expect("copy"), "from-env");
}

#[test]
fn run_network_none_sees_only_loopback() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "net",
        "FROM busybox\n\
         RUN --network=none tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > /none\n\
         RUN --network=host tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > /host\n",
        &[],
    );
    fx.build_json(&ctx, "net:1", &[]);
    let rootfs = fx.rootfs("net:1");
    assert_eq!(std::fs::read_to_string(rootfs.join("none")).expect("none"), "lo\n");
    let host = std::fs::read_to_string(rootfs.join("host")).expect("host");
    let host_ifaces = std::fs::read_to_string("/proc/net/dev").expect("dev").lines().count() - 2;
    assert_eq!(host.lines().count(), host_ifaces, "host network: {host}");
}

/// `RUN --security=insecure` runs only with `--allow security.insecure` (buildx's flag), never
/// because a Dockerfile asks: without it the build (and its dry run) is refused before any
/// step runs, naming the line; with it the step has every capability and no seccomp filter,
/// while the steps beside it keep Docker's defaults.
#[test]
fn insecure_runs_need_allow_and_then_run_privileged() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "insecure",
        "FROM busybox\n\
         RUN echo ran > /first\n\
         RUN --security=insecure grep -E '^(CapEff|Seccomp):' /proc/self/status > /insecure\n\
         RUN grep -E '^(CapEff|Seccomp):' /proc/self/status > /sandbox\n",
        &[],
    );
    let path = ctx.to_str().expect("utf8");
    for extra in [&[][..], &["--dry-run"][..], &["--allow", "network.host"][..]] {
        let out = rbuild(&fx.root, &[&["build", "-t", "insecure:1"][..], extra, &[path][..]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(
            stderr.contains("Dockerfile:3: RUN --security=insecure grep")
                && stderr.contains("needs --allow security.insecure"),
            "{extra:?}: {stderr}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("Step 2/4"), "{extra:?}: no step ran");
    }
    let unknown = rbuild(&fx.root, &["build", "--allow", "device", path]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("--allow \"device\": unknown entitlement"));

    fx.build_json(&ctx, "insecure:1", &["--allow", "security.insecure"]);
    let rootfs = fx.rootfs("insecure:1");
    let status = |name: &str| std::fs::read_to_string(rootfs.join(name)).expect(name);
    let (insecure, sandbox) = (status("insecure"), status("sandbox"));
    let field = |text: &str, key: &str| {
        text.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).unwrap_or_default().to_string()
    };
    assert_eq!(field(&insecure, "Seccomp:"), "0", "{insecure}");
    assert_eq!(field(&sandbox, "Seccomp:"), "2", "{sandbox}");
    let caps = |text: &str| u64::from_str_radix(&field(text, "CapEff:"), 16).expect("hex");
    assert!(caps(&insecure).count_ones() > caps(&sandbox).count_ones() + 10, "{insecure} vs {sandbox}");
    assert_eq!(caps(&sandbox), 0xa80425fb, "Docker's default set: {sandbox}");
}

/// The forwarding sockets a running build made in its work dirs.
fn forwarding_sockets(root: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut found = Vec::new();
    for work in std::fs::read_dir(root.join("tmp")).into_iter().flatten().flatten() {
        for e in std::fs::read_dir(work.path()).into_iter().flatten().flatten() {
            let is_socket = e.file_type().is_ok_and(|t| t.is_socket());
            if is_socket && e.file_name().to_string_lossy().starts_with("ssh-") {
                found.push(e.path());
            }
        }
    }
    found
}

#[test]
fn ssh_mounts_forward_the_agent_and_leave_nothing_behind() {
    let Some(fx) = Fixture::new() else { return };
    if !crate::fixture::require(
        crate::fixture::have_tool("ssh-agent") && crate::fixture::have_tool("ssh-keygen"),
        "openssh-client",
    ) {
        return;
    }
    let agent = crate::fixture::SshAgentProcess::start(fx.dir.path());
    let ctx = fx.context(
        "ssh",
        "FROM busybox\n\
         RUN --mount=type=ssh echo \"$SSH_AUTH_SOCK\" > /sock-env && test -S \"$SSH_AUTH_SOCK\" \
             && stat -c '%a %u:%g' \"$SSH_AUTH_SOCK\" > /sock-stat && sleep 3\n\
         RUN --mount=type=ssh,id=deploy,target=/tmp/agent,uid=1000,gid=1000,mode=0660 \
             stat -c '%a %u:%g' /tmp/agent > /deploy-stat\n\
         RUN --mount=type=ssh,id=absent test ! -e /run/buildkit/ssh_agent.0 && echo none > /absent\n",
        &[],
    );
    let deploy = format!("deploy={}", agent.socket.display());
    let build = crate::fixture::rbuild_command()
        .env("RBUILD_ROOT", &fx.root)
        .env("SSH_AUTH_SOCK", &agent.socket)
        .args(["build", "-q", "-t", "ssh:1", "--ssh", "default", "--ssh", &deploy])
        .arg(&ctx)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("rbuild build");
    // While the first RUN sleeps, its forwarding socket answers for the real agent.
    let mut listed = String::new();
    for _ in 0..200 {
        if let Some(socket) = forwarding_sockets(&fx.root).first() {
            listed = crate::fixture::listed_keys(socket);
            if !listed.is_empty() {
                // Listing passes; removing every key (`ssh-add -D`) is refused at the socket.
                let remove_all = std::process::Command::new("ssh-add")
                    .arg("-D")
                    .env("SSH_AUTH_SOCK", socket)
                    .output()
                    .expect("ssh-add -D");
                assert!(!remove_all.status.success(), "ssh-add -D through the step's socket succeeded");
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(crate::fixture::listed_keys(&agent.socket), agent.fingerprint, "the agent keeps its key");
    let out = build.wait_with_output().expect("build");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(listed, agent.fingerprint, "the step's socket reaches the agent");
    let rootfs = fx.rootfs("ssh:1");
    let read = |name: &str| std::fs::read_to_string(rootfs.join(name)).expect(name);
    assert_eq!(read("sock-env"), "/run/buildkit/ssh_agent.0\n");
    assert_eq!(read("sock-stat"), "600 0:0\n");
    assert_eq!(read("deploy-stat"), "660 1000:1000\n");
    assert_eq!(read("absent"), "none\n", "an optional agent that was not given is not mounted");
    assert!(!rootfs.join("run/buildkit").exists() && !rootfs.join("tmp/agent").exists(), "mount points left");
    assert_eq!(forwarding_sockets(&fx.root), Vec::<PathBuf>::new(), "forwarding sockets left behind");

    // A required agent that was not given, and a key file instead of a socket: clear errors.
    let ctx2 = fx.context("ssh-required", "FROM busybox\nRUN --mount=type=ssh,required true\n", &[]);
    let out = rbuild(&fx.root, &["build", "-t", "ssh:2", ctx2.to_str().expect("utf8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("ssh agent default is required"), "{stderr}");
    let key = format!("default={}", fx.dir.path().join("id_ed25519").display());
    let out = rbuild(&fx.root, &["build", "--ssh", &key, "-t", "ssh:2", ctx2.to_str().expect("utf8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("is not an agent socket"), "{stderr}");
}

#[test]
fn a_cache_mount_is_keyed_by_its_id_and_its_from_source() {
    let Some(fx) = Fixture::new() else { return };
    // As BuildKit: the same target (so the same default id) seeded from another stage is
    // another cache; without `from` the earlier plain cache is not reused either.
    let ctx = fx.context(
        "cachefrom",
        "FROM busybox AS a\n\
         RUN mkdir /seed && echo a > /seed/which\n\
         FROM busybox AS b\n\
         RUN mkdir /seed && echo b > /seed/which\n\
         FROM busybox\n\
         RUN --mount=type=cache,from=a,source=/seed,target=/cache cat /cache/which > /from-a\n\
         RUN --mount=type=cache,from=b,source=/seed,target=/cache cat /cache/which > /from-b\n\
         RUN --mount=type=cache,target=/cache ls /cache > /plain\n",
        &[],
    );
    fx.build_json(&ctx, "cachefrom", &[]);
    let root = fx.rootfs("cachefrom");
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!((read("from-a"), read("from-b"), read("plain")), ("a\n".into(), "b\n".into(), String::new()));
}
