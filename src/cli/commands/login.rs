//! `rbuild login [-u USER] [-p PASS | --password-stdin] [SERVER]` and `rbuild logout [SERVER]`,
//! as docker's: the credentials are checked against the registry before they are stored.

use crate::cli::Printer;
use crate::registry::auth::{credentials_for, StoredIn};
use crate::registry::login::{login, logout, server_registry};
use crate::registry::RegistryOptions;
use anyhow::{bail, Context};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

const WHERE: &str = "Credentials are checked against the registry's /v2/ and then stored as docker stores them: \
in the credential helper that credsStore or credHelpers.<server> names in $DOCKER_CONFIG/config.json \
(else ~/.docker/config.json), otherwise base64 in its auths.<server>.auth. Extra CAs for a TLS registry: \
<cert dir>/<host:port>/*.crt, the cert dir being --cert-dir, $RBUILD_CERTS_DIR, /etc/containers/certs.d \
or /etc/docker/certs.d.";

#[derive(clap::Args, Debug)]
#[command(after_help = WHERE)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (visible to other users in the process list: prefer --password-stdin)
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Require HTTPS and verify certificates (false: plain HTTP; default: plain HTTP only to
    /// localhost, 127.0.0.0/8 and RBUILD_INSECURE_REGISTRIES)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// Directory of <host:port>/*.crt CA files (default: $RBUILD_CERTS_DIR, else the system's)
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// The registry (HOST[:PORT]); default Docker Hub
    pub server: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    /// The registry (HOST[:PORT]); default Docker Hub
    pub server: Option<String>,
}

/// Registry options from `--tls-verify`, `--cert-dir` and the environment.
pub fn registry_options(tls_verify: Option<bool>, cert_dir: Option<PathBuf>) -> RegistryOptions {
    let mut opts = RegistryOptions::from_env(tls_verify);
    if cert_dir.is_some() {
        opts.cert_dir = cert_dir;
    }
    opts
}

/// A value typed at the terminal, or an error naming the flag when stdin is not one.
fn prompt(label: &str, secret: bool, flag: &str) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("cannot ask for the {label} without a terminal: give {flag}");
    }
    let value = if secret {
        rpassword::prompt_password(format!("{}: ", capitalised(label)))?
    } else {
        eprint!("{}: ", capitalised(label));
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim().to_owned()
    };
    Ok(value)
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

pub fn run(args: LoginArgs, p: &mut Printer) -> anyhow::Result<()> {
    let registry = server_registry(args.server.as_deref())?;
    let opts = registry_options(args.tls_verify, args.cert_dir.clone());
    // As docker: with neither a user nor a password given, the stored credentials are checked
    // first, and asked for only when there are none or the registry refuses them.
    if args.username.is_none() && args.password.is_none() && !args.password_stdin {
        if let Some(stored) = credentials_for(&registry)? {
            p.line("Authenticating with existing credentials...")?;
            match login(&registry, &stored.username, &stored.password, &opts) {
                Ok(_) => {
                    p.line("Login Succeeded")?;
                    return Ok(());
                }
                Err(err) => p.warn(format!("Login did not succeed, error: {err}")),
            }
        }
    }
    let password = if args.password_stdin {
        if args.username.is_none() {
            bail!("--password-stdin needs --username (-u)");
        }
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading the password from stdin")?;
        Some(text.trim_end_matches(['\n', '\r']).to_owned())
    } else {
        if args.password.is_some() {
            p.warn("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        }
        args.password
    };
    let username = match args.username {
        Some(u) => u,
        None => prompt("username", false, "--username")?,
    };
    let password = match password {
        Some(pw) => pw,
        None => prompt("password", true, "--password-stdin")?,
    };
    match login(&registry, &username, &password, &opts)? {
        StoredIn::File(path) => p.warn(format!(
            "WARNING! Your password will be stored unencrypted in {}.\nConfigure a credential helper to remove this warning. See\nhttps://docs.docker.com/engine/reference/commandline/login/#credentials-store",
            path.display()
        )),
        StoredIn::Helper(_) => {}
    }
    p.line("Login Succeeded")?;
    Ok(())
}

pub fn run_logout(args: LogoutArgs, p: &mut Printer) -> anyhow::Result<()> {
    let registry = server_registry(args.server.as_deref())?;
    if logout(&registry)? {
        p.line(format!("Removing login credentials for {registry}"))?;
    } else {
        p.line(format!("Not logged in to {registry}"))?;
    }
    Ok(())
}
