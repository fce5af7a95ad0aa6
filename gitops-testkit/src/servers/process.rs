//! Spawning, watching and stopping server processes; finding binaries; probing ports.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ServerError;

/// How often readiness probes poll.
const POLL: Duration = Duration::from_millis(25);
/// How long a stopping server gets after `SIGTERM` before `SIGKILL`.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How many log lines an error carries.
const TAIL_LINES: usize = 40;

/// Returns a port on `127.0.0.1` that was free a moment ago.
///
/// It binds `127.0.0.1:0` and releases the port, so another process may take it before the
/// caller binds it; the launchers that use it retry with a fresh port when their server reports
/// the address in use.
pub fn free_port() -> Result<u16, ServerError> {
    let listener = TcpListener::bind((super::LOCALHOST, 0)).map_err(|source| ServerError::Os {
        what: "bind 127.0.0.1:0 to find a free port".into(),
        source,
    })?;
    let port = listener
        .local_addr()
        .map_err(|source| ServerError::Os {
            what: "read the address of a bound socket".into(),
            source,
        })?
        .port();
    Ok(port)
}

/// Where a missing binary comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Package {
    pub name: &'static str,
    pub installer: &'static str,
}

impl Package {
    pub(crate) const fn debian(name: &'static str) -> Self {
        Package {
            name,
            installer: "apt-get install",
        }
    }

    pub(crate) const fn pypi(name: &'static str) -> Self {
        Package {
            name,
            installer: "pip install",
        }
    }

    pub(crate) fn missing(&self, binary: impl Into<String>) -> ServerError {
        ServerError::MissingBinary {
            binary: binary.into(),
            package: self.name.to_string(),
            installer: self.installer,
        }
    }
}

pub(crate) const GIT: Package = Package::debian("git");

/// Finds `binary`: a path containing `/` must be an executable file; a bare name is searched on
/// `PATH`. A miss is [`ServerError::MissingBinary`] naming `package`.
pub(crate) fn resolve_binary(binary: &Path, package: Package) -> Result<PathBuf, ServerError> {
    let is_exec = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if binary.components().count() > 1 || binary.is_absolute() {
        return if is_exec(binary) {
            Ok(binary.to_path_buf())
        } else {
            Err(package.missing(binary.display().to_string()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| is_exec(candidate))
        .ok_or_else(|| package.missing(binary.display().to_string()))
}

/// Runs a helper command to completion; a non-zero exit is [`ServerError::Command`].
/// Returns its stdout.
pub(crate) fn run_command(cmd: &mut Command) -> Result<Vec<u8>, ServerError> {
    let shown = describe(cmd);
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ServerError::Os {
            what: format!("run `{shown}`"),
            source,
        })?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(ServerError::Command {
            command: shown,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// A command line for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut shown = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        shown.push(' ');
        shown.push_str(&arg.to_string_lossy());
    }
    shown
}

/// The last `TAIL_LINES` lines of a log file (empty when it cannot be read).
pub(crate) fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_ok() {
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    lines[start..].join("\n")
}

/// Writes a file, mapping the error to [`ServerError::Io`].
pub(crate) fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), ServerError> {
    std::fs::write(path, contents).map_err(|e| ServerError::io("write", path, e))
}

/// Creates a temporary directory for one server.
pub(crate) fn temp_dir(prefix: &str) -> Result<tempfile::TempDir, ServerError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| ServerError::io("create temporary directory in", std::env::temp_dir(), e))
}

/// A running server process in its own process group, with stdout and stderr going to a log
/// file. Dropping it stops the whole group: `SIGTERM`, a grace period, then `SIGKILL`.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    server: &'static str,
    child: Child,
    log_path: PathBuf,
}

impl ServerProcess {
    /// Spawns `cmd` in a new process group with stdin closed and output appended to `log_path`.
    pub(crate) fn spawn(
        server: &'static str,
        cmd: &mut Command,
        log_path: &Path,
    ) -> Result<Self, ServerError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|e| ServerError::io("open log file", log_path, e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| ServerError::io("duplicate log file handle for", log_path, e))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|source| ServerError::Spawn {
                server,
                binary: PathBuf::from(cmd.get_program()),
                source,
            })?;
        tracing::debug!(server, pid = child.id(), log = %log_path.display(), "spawned server");
        Ok(ServerProcess {
            server,
            child,
            log_path: log_path.to_path_buf(),
        })
    }

    /// The process id (also the process group id).
    #[cfg(test)]
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's log so far, last lines only.
    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.log_path)
    }

    /// Whether the log mentions that the address was taken (a port race lost).
    pub(crate) fn lost_port_race(&self) -> bool {
        let tail = self.log_tail().to_ascii_lowercase();
        tail.contains("address already in use")
            || tail.contains("address in use")
            || tail.contains("unable to allocate any listen sockets")
    }

    /// Fails with [`ServerError::Exited`] if the process has exited.
    pub(crate) fn check_alive(&mut self) -> Result<(), ServerError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(ServerError::Exited {
                server: self.server,
                status,
                log_tail: self.log_tail(),
            }),
            Ok(None) => Ok(()),
            Err(source) => Err(ServerError::Os {
                what: format!("{}: wait for pid {}", self.server, self.child.id()),
                source,
            }),
        }
    }

    /// Polls `ready` until it returns true, the process exits, or `timeout` passes.
    pub(crate) fn wait_ready(
        &mut self,
        addr: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), ServerError> {
        let started = Instant::now();
        loop {
            self.check_alive()?;
            if ready() {
                // A server that accepted the probe and then died (a config error found late)
                // is not ready.
                return self.check_alive();
            }
            if started.elapsed() >= timeout {
                return Err(ServerError::StartTimeout {
                    server: self.server,
                    addr: addr.to_string(),
                    waited: started.elapsed(),
                    log_tail: self.log_tail(),
                });
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        // The group may already be gone; nothing more to do then.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        // Children of the leader (per-connection forks) that ignored or outlived SIGTERM.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        tracing::debug!(
            server = self.server,
            pid = self.child.id(),
            "stopped server"
        );
    }
}

/// Whether a TCP connection to `addr` succeeds now.
pub(crate) fn port_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok()
}

/// Sends one HTTP/1.1 request over plain TCP and returns the status code and the body.
///
/// Only for readiness checks and setup calls against servers we started ourselves; tests use a
/// real HTTP client.
pub(crate) fn raw_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: gitops-testkit\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of HTTP headers in the response"))?;
    let status_line = String::from_utf8_lossy(&response[..text_end]);
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP status line: {status_line}")))?;
    Ok((status, response[text_end + 4..].to_vec()))
}

/// Starts a process-based server, retrying with a fresh port when it loses the race for the
/// port that [`free_port`] returned.
pub(crate) fn start_with_port_retry<T>(
    mut attempt: impl FnMut(u16) -> Result<T, (ServerError, bool)>,
) -> Result<T, ServerError> {
    const ATTEMPTS: usize = 4;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let port = free_port()?;
        match attempt(port) {
            Ok(server) => return Ok(server),
            Err((err, true)) => {
                tracing::debug!(port, error = %err, "port taken while starting; retrying");
                last = Some(err);
            }
            Err((err, false)) => return Err(err),
        }
    }
    Err(last.unwrap_or_else(|| ServerError::Os {
        what: "start a server".into(),
        source: std::io::Error::other("no attempt made"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_binary_finds_sh_on_path_and_names_the_package_otherwise() {
        assert!(resolve_binary(Path::new("sh"), Package::debian("dash")).is_ok());
        let err = resolve_binary(
            Path::new("/nonexistent/testkit-binary"),
            Package::debian("some-package"),
        )
        .expect_err("a nonexistent path is not a binary");
        let text = err.to_string();
        assert!(text.contains("some-package"), "{text}");
        assert!(text.contains("/nonexistent/testkit-binary"), "{text}");
        let err = resolve_binary(
            Path::new("testkit-no-such-binary-on-path"),
            Package::pypi("moto[server]"),
        )
        .expect_err("not on PATH");
        assert!(
            err.to_string().contains("pip install moto[server]"),
            "{err}"
        );
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port().expect("free port");
        assert_ne!(port, 0);
        TcpListener::bind((super::super::LOCALHOST, port)).expect("the port is free");
    }

    #[test]
    fn dropping_a_server_process_kills_its_group() {
        let dir = temp_dir("testkit-proc-").expect("temp dir");
        let log = dir.path().join("log");
        // The shell forks a child that would outlive a kill of the leader alone.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 300 & echo started; wait"]);
        let mut proc = ServerProcess::spawn("sleeper", &mut cmd, &log).expect("spawn");
        proc.wait_ready("none", Duration::from_secs(5), || {
            log_tail(&log).contains("started")
        })
        .expect("ready");
        let pgid = proc.pid().to_string();
        let before = live_processes_in_group(&pgid);
        assert!(before.len() >= 2, "the shell and its sleep: {before:?}");
        drop(proc);
        // Killed processes linger as zombies until reaped by init: count live ones only, and
        // give the kernel a moment to finish the kill.
        let live = || live_processes_in_group(&pgid);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !live().is_empty() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        assert!(
            live().is_empty(),
            "processes left in group {pgid}: {:?}",
            live()
        );
    }

    /// Live (not zombie) processes whose process group is `pgid`, from `/proc`.
    fn live_processes_in_group(pgid: &str) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.len() > 2 && fields[2] == pgid && fields[0] != "Z" && fields[0] != "X" {
                found.push(stat);
            }
        }
        found
    }

    #[test]
    fn a_server_that_exits_while_starting_reports_its_log() {
        let dir = temp_dir("testkit-exit-").expect("temp dir");
        let log = dir.path().join("log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'bad config line 3' >&2; exit 3"]);
        let mut proc = ServerProcess::spawn("failing", &mut cmd, &log).expect("spawn");
        let err = proc
            .wait_ready("127.0.0.1:1", Duration::from_secs(10), || false)
            .expect_err("it exits");
        match &err {
            ServerError::Exited {
                server, log_tail, ..
            } => {
                assert_eq!(*server, "failing");
                assert!(log_tail.contains("bad config line 3"), "{log_tail}");
            }
            other => panic!("expected Exited, got {other}"),
        }
    }

    #[test]
    fn a_server_that_never_becomes_ready_times_out_with_its_log() {
        let dir = temp_dir("testkit-slow-").expect("temp dir");
        let log = dir.path().join("log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'still loading'; sleep 30"]);
        let mut proc = ServerProcess::spawn("slow", &mut cmd, &log).expect("spawn");
        let err = proc
            .wait_ready("127.0.0.1:9", Duration::from_millis(300), || false)
            .expect_err("never ready");
        match &err {
            ServerError::StartTimeout { addr, log_tail, .. } => {
                assert_eq!(addr, "127.0.0.1:9");
                assert!(log_tail.contains("still loading"), "{log_tail}");
            }
            other => panic!("expected StartTimeout, got {other}"),
        }
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = temp_dir("testkit-tail-").expect("temp dir");
        let log = dir.path().join("log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, text).expect("write");
        let tail = log_tail(&log);
        assert!(tail.starts_with("line 60\n"), "{tail}");
        assert!(tail.ends_with("line 99"), "{tail}");
    }
}
