//! `login`/`logout` as docker: checked against the registry before anything is written,
//! `auths.<host>.auth` in `$DOCKER_CONFIG/config.json` (mode 0600) or a credential helper,
//! then used by `push` and `search`; TLS with a CA from `RBUILD_CERTS_DIR`.

use super::{ready, store_with_busybox, TestCa};
use crate::registry::{ok, rb, Registry};
use base64::Engine as _;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// rbuild with `password` on stdin.
fn with_stdin(root: &Path, envs: &[(&str, &Path)], args: &[&str], password: &str) -> Output {
    let mut cmd = crate::fixture::rbuild_command();
    cmd.env("RBUILD_ROOT", root).env_remove("REGISTRY_AUTH_FILE").env_remove("XDG_RUNTIME_DIR").env_remove("CI");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn login_then_push_to_an_htpasswd_registry_behind_tls() {
    if !ready() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(root) = store_with_busybox(t.path()) else { return };
    let ca = TestCa::new();
    let reg = Registry::start_with(true, Some((&ca.cert(), &ca.key())));
    let host = reg.host();
    let docker = t.path().join("docker");
    let no_certs = t.path().join("no-certs");
    std::fs::create_dir(&no_certs).unwrap();
    let config = docker.join("config.json");

    // Without the CA, TLS is required (--tls-verify) and the certificate is refused.
    let envs = [("DOCKER_CONFIG", docker.as_path()), ("RBUILD_CERTS_DIR", no_certs.as_path())];
    let out = with_stdin(&root, &envs, &["login", "--tls-verify", "-u", "user", "--password-stdin", &host], "pass");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).to_lowercase().contains("certificate"), "{}", stderr(&out));
    assert!(!config.exists(), "a failed login wrote {}", config.display());

    let certs = ca.certs_dir_for(&host);
    let envs = [("DOCKER_CONFIG", docker.as_path()), ("RBUILD_CERTS_DIR", certs.as_path())];
    // A wrong password is refused by the registry before anything is written.
    let out = with_stdin(&root, &envs, &["login", "-u", "user", "--password-stdin", &host], "wrong\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), format!("Error: login to {host}: unauthorized: incorrect username or password\n"));
    assert!(!config.exists());
    // Without credentials, push is refused and names where it looked.
    let out = rb(&root, &envs, &["push", "busybox", &format!("{host}/busybox:1")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));

    let out =
        with_stdin(&root, &envs, &["login", "-u", "user", "--password-stdin", &format!("https://{host}/")], "pass\n");
    let stdout = ok(out, "login");
    assert_eq!(stdout, "Login Succeeded\n");
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("user:pass");
    assert_eq!(written, serde_json::json!({"auths": {host.clone(): {"auth": auth}}}));
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);

    let pushed = ok(rb(&root, &envs, &["push", "busybox", &format!("{host}/busybox:1")]), "push");
    assert!(pushed.contains("1: digest: sha256:"), "{pushed}");
    let inspect = Command::new("skopeo")
        .args(["inspect", "--creds", "user:pass", "--cert-dir"])
        .arg(certs.join(&host))
        .arg(format!("docker://{host}/busybox:1"))
        .output()
        .unwrap();
    assert!(inspect.status.success(), "skopeo: {}", String::from_utf8_lossy(&inspect.stderr));
    let listed = ok(rb(&root, &envs, &["search", &format!("{host}/busy")]), "search");
    assert_eq!(listed, format!("NAME\n{host}/busybox\n"));
    // As docker: `login SERVER` alone checks the stored credentials instead of asking.
    let again = ok(with_stdin(&root, &envs, &["login", &host], ""), "login with stored credentials");
    assert_eq!(again, "Authenticating with existing credentials...\nLogin Succeeded\n");

    let out = ok(rb(&root, &envs, &["logout", &host]), "logout");
    assert_eq!(out, format!("Removing login credentials for {host}\n"));
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(written, serde_json::json!({"auths": {}}));
    assert_eq!(ok(rb(&root, &envs, &["logout", &host]), "logout"), format!("Not logged in to {host}\n"));
    let out = rb(&root, &envs, &["search", &format!("{host}/busy")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("rbuild login {host}")), "{}", stderr(&out));
    // Stored credentials the registry refuses: said, then asked for (no terminal here: an error
    // naming the flag).
    let wrong = base64::engine::general_purpose::STANDARD.encode("user:stale");
    std::fs::write(&config, serde_json::json!({"auths": {host.clone(): {"auth": wrong}}}).to_string()).unwrap();
    let out = with_stdin(&root, &envs, &["login", &host], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Login did not succeed, error: login to"), "{}", stderr(&out));
    assert!(stderr(&out).contains("give --username"), "{}", stderr(&out));
}

/// With `credsStore` set, the password goes to `docker-credential-<name> store` (the file keeps
/// an empty entry, as docker leaves it), push reads it back with `get`, logout calls `erase`.
#[test]
fn login_uses_the_configured_credential_helper() {
    if !ready() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let Some(root) = store_with_busybox(t.path()) else { return };
    let reg = Registry::start(true);
    let host = reg.host();
    let bin = t.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let vault = t.path().join("vault");
    let helper = format!(
        r#"#!/bin/sh
# A credential helper keeping one entry per server in {vault}/<server>.
mkdir -p {vault}
case "$1" in
  store) json=$(cat); server=$(printf '%s' "$json" | sed 's/.*"ServerURL":"\([^"]*\)".*/\1/')
         printf '%s' "$json" > "{vault}/$server" ;;
  get) read server; [ -f "{vault}/$server" ] || {{ echo "credentials not found in native keychain"; exit 1; }}
       cat "{vault}/$server" ;;
  erase) read server; [ -f "{vault}/$server" ] || {{ echo "credentials not found in native keychain"; exit 1; }}
         rm "{vault}/$server" ;;
esac
"#,
        vault = vault.display()
    );
    let script = bin.join("docker-credential-rbtest");
    std::fs::write(&script, helper).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let docker = t.path().join("docker");
    std::fs::create_dir(&docker).unwrap();
    std::fs::write(docker.join("config.json"), r#"{"credsStore": "rbtest", "experimental": "enabled"}"#).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let path = Path::new(&path);
    let envs = [("DOCKER_CONFIG", docker.as_path()), ("PATH", path)];
    ok(with_stdin(&root, &envs, &["login", "-u", "user", "--password-stdin", &host], "pass"), "login");
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(vault.join(&host)).unwrap()).unwrap();
    assert_eq!(stored, serde_json::json!({"ServerURL": host, "Username": "user", "Secret": "pass"}));
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(docker.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        written,
        serde_json::json!({"credsStore": "rbtest", "experimental": "enabled", "auths": {host.clone(): {}}})
    );
    ok(rb(&root, &envs, &["push", "busybox", &format!("{host}/busybox:helper")]), "push with the helper's credentials");
    assert_eq!(ok(rb(&root, &envs, &["logout", &host]), "logout"), format!("Removing login credentials for {host}\n"));
    assert!(!vault.join(&host).exists(), "erase was not called");
}

#[test]
fn login_refuses_bad_input_without_writing() {
    let t = tempfile::tempdir().unwrap();
    let docker = t.path().join("docker");
    let envs = [("DOCKER_CONFIG", docker.as_path())];
    let root = t.path().join("store");
    let out = with_stdin(&root, &envs, &["login", "--password-stdin", "127.0.0.1:1"], "pass");
    assert_eq!((out.status.code(), stderr(&out)), (Some(1), "Error: --password-stdin needs --username (-u)\n".into()));
    let out = with_stdin(&root, &envs, &["login", "-u", "u", "--password-stdin", "bad host"], "pass");
    assert!(stderr(&out).contains("not a registry address"), "{}", stderr(&out));
    let out = with_stdin(&root, &envs, &["login", "-u", "u", "127.0.0.1:1"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot ask for the password without a terminal: give --password-stdin"),
        "{}",
        stderr(&out)
    );
    // Nothing listens on port 1: the error names the registry.
    let out = with_stdin(&root, &envs, &["login", "-u", "u", "--password-stdin", "127.0.0.1:1"], "p");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("127.0.0.1:1"), "{}", stderr(&out));
    assert!(!docker.exists(), "a refused login wrote {}", docker.display());
}
