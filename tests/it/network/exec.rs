//! `top` and `exec` on the running static_web container: top lists httpd; exec runs in the
//! container's mount, PID and network namespaces (its files, its processes, its localhost
//! service), with -u, -w, -e and the command's exit code.

use crate::fixture::{rbuild, rbuild_ok};

#[test]
fn top_lists_the_containers_processes_and_exec_joins_its_namespaces() {
    let Some(fx) = super::fixture() else { return };
    super::ports::build_static_web(&fx);
    rbuild_ok(&fx.root, &["run", "-d", "--name", "web", "static_web:v1"]);
    let top = rbuild_ok(&fx.root, &["top", "web"]);
    let mut lines = top.lines();
    assert!(lines.next().is_some_and(|h| h.contains("PID") && h.contains("CMD")), "{top}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "{top}");
    assert!(rows[0].ends_with("httpd -f -p 80 -h /www"), "{top}");
    let custom = rbuild_ok(&fx.root, &["top", "web", "-o", "pid,comm"]);
    assert!(custom.lines().nth(1).is_some_and(|l| l.trim_end().ends_with("httpd")), "{custom}");

    let script = "cat /www/index.html; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 80 | head -1; \
                  ps -o comm | grep -c httpd; echo $$";
    let seen = rbuild_ok(&fx.root, &["exec", "web", "sh", "-c", script]);
    let seen: Vec<&str> = seen.lines().map(str::trim).collect();
    assert_eq!(seen[0], "<h1>static_web</h1>", "{seen:?}");
    assert!(seen[1].starts_with("HTTP/1.") && seen[1].contains("200"), "{seen:?}");
    assert_eq!(seen[2], "1", "httpd is not in exec's PID namespace: {seen:?}");
    assert_ne!(seen[3], "1", "exec must not be the container's PID 1");
    let out = rbuild(&fx.root, &["exec", "-w", "/www", "-e", "X=from-exec", "web", "sh", "-c", "pwd; echo $X; exit 4"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/www\nfrom-exec\n");
    let missing = rbuild(&fx.root, &["exec", "web", "no-such-command"]);
    assert_eq!(missing.status.code(), Some(127));
    rbuild_ok(&fx.root, &["stop", "-t", "1", "web"]);
    let stopped = rbuild(&fx.root, &["exec", "web", "true"]);
    assert!(String::from_utf8_lossy(&stopped.stderr).contains("is not running"));
}

/// `exec -t`: the command gets a pseudo-terminal of its own (stdin, stdout and controlling
/// terminal), without it none; `exec -it` from a terminal (`script` gives rbuild one) forwards
/// what is typed and returns the shell's exit code.
#[test]
fn exec_t_gives_the_command_a_terminal_and_it_forwards_stdin() {
    let Some(fx) = super::fixture() else { return };
    if !crate::fixture::require(crate::fixture::have_tool("script"), "script (util-linux)") {
        return;
    }
    super::ports::build_static_web(&fx);
    rbuild_ok(&fx.root, &["run", "-d", "--name", "webt", "static_web:v1"]);
    let probe = "tty; test -t 0 && echo stdin-tty; test -t 1 && echo stdout-tty; echo done";
    let with = rbuild_ok(&fx.root, &["exec", "-t", "webt", "sh", "-c", probe]);
    let lines: Vec<&str> = with.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(lines[0].starts_with("/dev/pts/"), "{with:?}");
    assert_eq!(&lines[1..], ["stdin-tty", "stdout-tty", "done"], "{with:?}");
    let without = rbuild(&fx.root, &["exec", "webt", "sh", "-c", probe]);
    let text = String::from_utf8_lossy(&without.stdout);
    assert!(text.starts_with("not a tty") && !text.contains("stdin-tty") && text.ends_with("done\n"), "{text}");

    let command = format!("{} exec -it webt sh", crate::fixture::RBUILD);
    let typed = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("(sleep 1; printf 'echo typed-$((6*7)); tty; exit 3\\n') | script -qec '{command}' /dev/null"))
        .env("RBUILD_ROOT", &fx.root)
        .env_remove("CI")
        .output()
        .expect("script");
    let out = String::from_utf8_lossy(&typed.stdout);
    assert!(out.contains("typed-42") && out.contains("/dev/pts/"), "{out}");
    assert_eq!(typed.status.code(), Some(3), "{out} {}", String::from_utf8_lossy(&typed.stderr));
    rbuild_ok(&fx.root, &["stop", "-t", "1", "webt"]);
}
