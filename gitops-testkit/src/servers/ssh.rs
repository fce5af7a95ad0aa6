//! `sshd` (openssh-server) serving git over SSH with its own configuration, host key, port and
//! a generated client key.

use std::ffi::OsString;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::process::{
    GIT, Package, ServerProcess, resolve_binary, run_command, start_with_port_retry, temp_dir,
    write_file,
};
use super::{LOCALHOST, ServerError};

const READY_TIMEOUT: Duration = Duration::from_secs(15);
const OPENSSH_SERVER: Package = Package::debian("openssh-server");
const OPENSSH_CLIENT: Package = Package::debian("openssh-client");

/// The algorithm of a generated SSH key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SshKeyType {
    /// Ed25519 (the default).
    #[default]
    Ed25519,
    /// ECDSA on NIST P-256 (`ecdsa-sha2-nistp256`).
    EcdsaP256,
    /// RSA, 3072 bits (signatures `rsa-sha2-256`/`-512`).
    Rsa,
}

impl SshKeyType {
    fn keygen_args(self) -> &'static [&'static str] {
        match self {
            SshKeyType::Ed25519 => &["-t", "ed25519"],
            SshKeyType::EcdsaP256 => &["-t", "ecdsa", "-b", "256"],
            SshKeyType::Rsa => &["-t", "rsa", "-b", "3072"],
        }
    }

    fn file_stem(self) -> &'static str {
        match self {
            SshKeyType::Ed25519 => "ed25519",
            SshKeyType::EcdsaP256 => "ecdsa",
            SshKeyType::Rsa => "rsa",
        }
    }
}

/// Configures an [`SshGitServer`].
#[derive(Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct SshGitServerBuilder {
    sshd: PathBuf,
    ssh_keygen: PathBuf,
    git: PathBuf,
    passphrase: Option<String>,
    host_key_type: SshKeyType,
    client_key_type: SshKeyType,
}

impl std::fmt::Debug for SshGitServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshGitServerBuilder")
            .field("sshd", &self.sshd)
            .field("ssh_keygen", &self.ssh_keygen)
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("host_key_type", &self.host_key_type)
            .field("client_key_type", &self.client_key_type)
            .finish()
    }
}

impl Default for SshGitServerBuilder {
    fn default() -> Self {
        SshGitServerBuilder {
            sshd: PathBuf::from("/usr/sbin/sshd"),
            ssh_keygen: PathBuf::from("ssh-keygen"),
            git: PathBuf::from("git"),
            passphrase: None,
            host_key_type: SshKeyType::Ed25519,
            client_key_type: SshKeyType::Ed25519,
        }
    }
}

impl SshGitServerBuilder {
    /// Encrypts the generated client key with this passphrase.
    pub fn client_key_passphrase(mut self, passphrase: impl Into<String>) -> Self {
        self.passphrase = Some(passphrase.into());
        self
    }

    /// The algorithm of the server's host key (default Ed25519).
    pub fn host_key_type(mut self, key_type: SshKeyType) -> Self {
        self.host_key_type = key_type;
        self
    }

    /// The algorithm of the generated client key (default Ed25519).
    pub fn client_key_type(mut self, key_type: SshKeyType) -> Self {
        self.client_key_type = key_type;
        self
    }

    /// Uses this `sshd` (an absolute path: sshd refuses to re-execute itself otherwise)
    /// instead of `/usr/sbin/sshd`.
    pub fn sshd_binary(mut self, sshd: impl Into<PathBuf>) -> Self {
        self.sshd = sshd.into();
        self
    }

    /// Uses this `git` (a path, or a name on `PATH`) for the served commands.
    pub fn git_binary(mut self, git: impl Into<PathBuf>) -> Self {
        self.git = git.into();
        self
    }

    /// Uses this `ssh-keygen` (a path, or a name on `PATH`).
    pub fn ssh_keygen_binary(mut self, ssh_keygen: impl Into<PathBuf>) -> Self {
        self.ssh_keygen = ssh_keygen.into();
        self
    }

    /// Generates the keys and configuration and starts `sshd` for the bare repositories under
    /// `repos_dir`. Returns once the server sends its SSH banner.
    pub fn start(self, repos_dir: impl AsRef<Path>) -> Result<SshGitServer, ServerError> {
        let sshd = resolve_binary(&self.sshd, OPENSSH_SERVER)?;
        let keygen = resolve_binary(&self.ssh_keygen, OPENSSH_CLIENT)?;
        let git = resolve_binary(&self.git, GIT)?;
        let repos_dir = repos_dir.as_ref();
        let root = repos_dir
            .canonicalize()
            .map_err(|e| ServerError::io("open repositories directory", repos_dir, e))?;
        let dir = temp_dir("testkit-sshd-")?;
        let user = current_user()?;

        let host_key = dir
            .path()
            .join(format!("ssh_host_{}_key", self.host_key_type.file_stem()));
        generate_key(
            &keygen,
            self.host_key_type,
            &host_key,
            "gitops-testkit host",
            None,
        )?;
        let host_public_key = read_public_key(&host_key)?;
        let client_key = dir
            .path()
            .join(format!("id_{}", self.client_key_type.file_stem()));
        generate_key(
            &keygen,
            self.client_key_type,
            &client_key,
            "gitops-testkit client",
            self.passphrase.as_deref(),
        )?;
        let client_public_key = read_public_key(&client_key)?;
        let authorized_keys = dir.path().join("authorized_keys");
        write_file(&authorized_keys, format!("{client_public_key}\n"))?;
        let askpass = match &self.passphrase {
            Some(passphrase) => Some(write_askpass(dir.path(), passphrase)?),
            None => None,
        };
        let git_shell = write_git_shell(dir.path(), &root, &git)?;
        ensure_privsep_dir();

        let (process, port) = start_with_port_retry(|port| {
            let config = dir.path().join(format!("sshd_config-{port}"));
            write_file(
                &config,
                sshd_config(
                    port,
                    &host_key,
                    &authorized_keys,
                    &dir.path().join("sshd.pid"),
                    &user,
                    &git_shell,
                ),
            )
            .map_err(|e| (e, false))?;
            let mut cmd = Command::new(&sshd);
            cmd.arg("-D").arg("-e").arg("-f").arg(&config);
            let log = dir.path().join(format!("sshd-{port}.log"));
            let mut process =
                ServerProcess::spawn("sshd", &mut cmd, &log).map_err(|e| (e, false))?;
            let addr = SocketAddr::from((LOCALHOST, port));
            match process.wait_ready(&addr.to_string(), READY_TIMEOUT, || sends_banner(addr)) {
                Ok(()) => Ok((process, port)),
                Err(e) => {
                    let raced = process.lost_port_race();
                    Err((e, raced))
                }
            }
        })?;

        let (key_type, key_data) = split_public_key(&host_public_key)?;
        let known_hosts_line = format!("[{LOCALHOST}]:{port} {key_type} {key_data}");
        let known_hosts = dir.path().join("known_hosts");
        write_file(&known_hosts, format!("{known_hosts_line}\n"))?;
        tracing::debug!(port, user = %user, root = %root.display(), "sshd ready");
        Ok(SshGitServer {
            process,
            port,
            root,
            user,
            host_public_key,
            known_hosts_line,
            known_hosts,
            client_key,
            client_public_key,
            passphrase: self.passphrase,
            askpass,
            _dir: dir,
        })
    }
}

/// `sshd` on `127.0.0.1` with its own configuration, host key and port, and an authorized
/// client key (optionally passphrase-protected) generated for the test; both keys are Ed25519
/// unless [`SshKeyType`] says otherwise.
///
/// Clients log in as the user running the tests (root in CI) and reach repositories by their
/// path under the served directory, as on a Git host: `ssh://root@127.0.0.1:PORT/app.git`
/// ([`url_for`](Self::url_for) builds it; the absolute path
/// `ssh://root@127.0.0.1:PORT/<repos_dir>/app.git` works too). A forced command serves only
/// `git-upload-pack`, `git-receive-pack` and `git-upload-archive` on paths inside that
/// directory; anything else is refused.
/// Clients must check the host key: [`known_hosts_line`](Self::known_hosts_line) /
/// [`known_hosts_path`](Self::known_hosts_path). Works as root (the configuration sets
/// `PermitRootLogin prohibit-password`, `StrictModes no`, `UsePAM no`, and `/run/sshd` is
/// created when missing). Stops, with its per-connection children, when dropped.
pub struct SshGitServer {
    process: ServerProcess,
    port: u16,
    root: PathBuf,
    user: String,
    host_public_key: String,
    known_hosts_line: String,
    known_hosts: PathBuf,
    client_key: PathBuf,
    client_public_key: String,
    passphrase: Option<String>,
    askpass: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for SshGitServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshGitServer")
            .field("port", &self.port)
            .field("root", &self.root)
            .field("user", &self.user)
            .field("known_hosts_line", &self.known_hosts_line)
            .field("client_key", &self.client_key)
            .finish_non_exhaustive()
    }
}

impl SshGitServer {
    /// A builder: client key passphrase, binaries.
    pub fn builder() -> SshGitServerBuilder {
        SshGitServerBuilder::default()
    }

    /// Starts `sshd` with an unencrypted client key for the bare repositories under `repos_dir`.
    pub fn start(repos_dir: impl AsRef<Path>) -> Result<Self, ServerError> {
        Self::builder().start(repos_dir)
    }

    /// The URL of one repository: `ssh://USER@127.0.0.1:PORT/<repo>`.
    pub fn url_for(&self, repo: &str) -> String {
        format!(
            "ssh://{}@{}:{}/{}",
            self.user,
            LOCALHOST,
            self.port,
            repo.trim_start_matches('/')
        )
    }

    /// The URL of one repository by absolute path:
    /// `ssh://USER@127.0.0.1:PORT/<repos_dir>/<repo>`.
    pub fn absolute_url_for(&self, repo: &str) -> String {
        format!(
            "ssh://{}@{}:{}{}/{}",
            self.user,
            LOCALHOST,
            self.port,
            self.root.display(),
            repo.trim_start_matches('/')
        )
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((LOCALHOST, self.port))
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user clients log in as (the user running the tests).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The directory of bare repositories being served (canonical path).
    pub fn repos_dir(&self) -> &Path {
        &self.root
    }

    /// The `known_hosts` line for this server: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self) -> &str {
        &self.known_hosts_line
    }

    /// A `known_hosts` file holding [`known_hosts_line`](Self::known_hosts_line).
    pub fn known_hosts_path(&self) -> &Path {
        &self.known_hosts
    }

    /// The server's host public key (`ssh-ed25519 AAAA... comment`).
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }

    /// The client private key file (OpenSSH format; encrypted when a passphrase was set).
    pub fn client_key_path(&self) -> &Path {
        &self.client_key
    }

    /// The client private key (OpenSSH PEM text), as a Flux `identity` would hold it.
    pub fn client_key_pem(&self) -> Result<String, ServerError> {
        std::fs::read_to_string(&self.client_key)
            .map_err(|e| ServerError::io("read", &self.client_key, e))
    }

    /// The authorized client public key (`ssh-ed25519 AAAA... comment`).
    pub fn client_public_key(&self) -> &str {
        &self.client_public_key
    }

    /// The client key's passphrase, if one was set.
    pub fn client_key_passphrase(&self) -> Option<&str> {
        self.passphrase.as_deref()
    }

    /// An `ssh` command line for `GIT_SSH_COMMAND` that uses the client key and accepts only
    /// this server's host key (`StrictHostKeyChecking=yes`, no user or global configuration).
    pub fn git_ssh_command(&self) -> String {
        ssh_command(
            &self.client_key,
            &self.known_hosts,
            self.passphrase.is_none(),
        )
    }

    /// Environment for the git CLI: `GIT_SSH_COMMAND`, and with a passphrase an `SSH_ASKPASS`
    /// helper that answers it (`SSH_ASKPASS_REQUIRE=force`).
    pub fn git_env(&self) -> Vec<(String, OsString)> {
        let mut env = vec![("GIT_SSH_COMMAND".to_string(), self.git_ssh_command().into())];
        if let Some(askpass) = &self.askpass {
            env.push(("SSH_ASKPASS".to_string(), askpass.clone().into()));
            env.push(("SSH_ASKPASS_REQUIRE".to_string(), "force".into()));
            env.push(("DISPLAY".to_string(), ":0".into()));
        }
        env
    }

    /// sshd's log so far (last lines).
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

/// An `ssh` command line using `key` and trusting only the hosts in `known_hosts`.
fn ssh_command(key: &Path, known_hosts: &Path, batch: bool) -> String {
    let mut cmd = format!(
        "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o IdentityAgent=none \
         -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null \
         -o StrictHostKeyChecking=yes -o PasswordAuthentication=no \
         -o KbdInteractiveAuthentication=no -o ConnectTimeout=10",
        key.display(),
        known_hosts.display()
    );
    if batch {
        cmd.push_str(" -o BatchMode=yes");
    }
    cmd
}

fn sshd_config(
    port: u16,
    host_key: &Path,
    authorized_keys: &Path,
    pid_file: &Path,
    user: &str,
    force_command: &Path,
) -> String {
    format!(
        "# Written by gitops-testkit for one test.\n\
         Port {port}\n\
         ListenAddress {LOCALHOST}\n\
         HostKey {host_key}\n\
         PidFile {pid_file}\n\
         AuthorizedKeysFile {authorized_keys}\n\
         AllowUsers {user}\n\
         PermitRootLogin prohibit-password\n\
         StrictModes no\n\
         UsePAM no\n\
         PubkeyAuthentication yes\n\
         AuthenticationMethods publickey\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UseDNS no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         X11Forwarding no\n\
         AllowTcpForwarding no\n\
         AllowAgentForwarding no\n\
         PermitTTY no\n\
         AcceptEnv GIT_PROTOCOL\n\
         ForceCommand {force_command}\n\
         MaxStartups 64\n\
         LogLevel VERBOSE\n",
        host_key = host_key.display(),
        pid_file = pid_file.display(),
        authorized_keys = authorized_keys.display(),
        force_command = force_command.display(),
    )
}

/// Runs `ssh-keygen` for an ed25519 key at `path`. The passphrase is an argument of
/// ssh-keygen, so a failure is reported without the command line.
fn generate_key(
    keygen: &Path,
    key_type: SshKeyType,
    path: &Path,
    comment: &str,
    passphrase: Option<&str>,
) -> Result<(), ServerError> {
    let output = Command::new(keygen)
        .arg("-q")
        .args(key_type.keygen_args())
        .args(["-C", comment, "-N", passphrase.unwrap_or("")])
        .arg("-f")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ServerError::Os {
            what: format!("run {}", keygen.display()),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(ServerError::Command {
            command: format!(
                "{} {} -f {}",
                keygen.display(),
                key_type.keygen_args().join(" "),
                path.display()
            ),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

fn read_public_key(private_key: &Path) -> Result<String, ServerError> {
    let mut path = private_key.as_os_str().to_owned();
    path.push(".pub");
    let path = PathBuf::from(path);
    let text = std::fs::read_to_string(&path).map_err(|e| ServerError::io("read", &path, e))?;
    Ok(text.trim().to_string())
}

fn split_public_key(public_key: &str) -> Result<(&str, &str), ServerError> {
    let mut fields = public_key.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(key_type), Some(data)) => Ok((key_type, data)),
        _ => Err(ServerError::Setup {
            server: "sshd",
            what: "read the host public key".into(),
            detail: format!("unexpected format: {public_key:?}"),
        }),
    }
}

/// An `SSH_ASKPASS` program that prints the passphrase (mode 0700, in the server's directory).
fn write_askpass(dir: &Path, passphrase: &str) -> Result<PathBuf, ServerError> {
    use std::os::unix::fs::PermissionsExt;
    let secret = dir.join("passphrase");
    write_file(&secret, passphrase)?;
    let script = dir.join("askpass.sh");
    write_file(&script, format!("#!/bin/sh\ncat '{}'\n", secret.display()))?;
    for (path, mode) in [(&secret, 0o600), (&script, 0o700)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| ServerError::io("set permissions of", path, e))?;
    }
    Ok(script)
}

/// Writes the forced command: it runs git's transport commands, and only on repositories under
/// `root` (a path relative to `root`, or an absolute one inside it).
fn write_git_shell(dir: &Path, root: &Path, git: &Path) -> Result<PathBuf, ServerError> {
    use std::os::unix::fs::PermissionsExt;
    let quoted = |p: &Path| -> Result<String, ServerError> {
        let text = p.display().to_string();
        if text.contains('\'') || text.contains('\n') {
            return Err(ServerError::InvalidArgument(format!(
                "path {text:?} cannot be used by the SSH forced command (quote or newline)"
            )));
        }
        Ok(format!("'{text}'"))
    };
    let script = format!(
        r#"#!/bin/sh
# Written by gitops-testkit: serve git's transport commands for repositories under one directory.
set -f
root={root}
case "$SSH_ORIGINAL_COMMAND" in
  "git-upload-pack '"*"'" | "git-receive-pack '"*"'" | "git-upload-archive '"*"'") ;;
  *) echo "gitops-testkit: only git-upload-pack, git-receive-pack and git-upload-archive are served" >&2; exit 1 ;;
esac
cmd=${{SSH_ORIGINAL_COMMAND%% *}}
path=${{SSH_ORIGINAL_COMMAND#* }}
path=${{path#"'"}}
path=${{path%"'"}}
case "$path" in
  *"'"* | *..*) echo "gitops-testkit: refused repository path" >&2; exit 1 ;;
esac
case "$path" in
  "$root"/*) ;;
  *) path="$root/${{path#/}}" ;;
esac
exec {git} "${{cmd#git-}}" "$path"
"#,
        root = quoted(root)?,
        git = quoted(git)?,
    );
    let path = dir.join("git-shell.sh");
    write_file(&path, script)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| ServerError::io("set permissions of", &path, e))?;
    Ok(path)
}

/// The user running the tests (the one clients log in as).
fn current_user() -> Result<String, ServerError> {
    let out = run_command(Command::new("id").arg("-un"))?;
    let user = String::from_utf8_lossy(&out).trim().to_string();
    if user.is_empty() {
        return Err(ServerError::Setup {
            server: "sshd",
            what: "find the current user name".into(),
            detail: "`id -un` printed nothing".into(),
        });
    }
    Ok(user)
}

/// sshd (as root) insists on its privilege separation directory; create it when we can.
fn ensure_privsep_dir() {
    let dir = Path::new("/run/sshd");
    if !dir.exists()
        && let Err(error) = std::fs::create_dir_all(dir)
    {
        // Not root: sshd runs without privilege separation and does not need it.
        tracing::debug!(%error, "cannot create /run/sshd");
    }
}

/// Whether the server at `addr` sends an SSH identification string.
fn sends_banner(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(250)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 8];
    stream.read_exact(&mut buf).is_ok() && buf.starts_with(b"SSH-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_allows_root_with_keys_only() {
        let text = sshd_config(
            2222,
            Path::new("/k"),
            Path::new("/a"),
            Path::new("/p"),
            "root",
            Path::new("/f"),
        );
        assert!(text.contains("Port 2222\n"));
        assert!(text.contains("ListenAddress 127.0.0.1\n"));
        assert!(text.contains("PermitRootLogin prohibit-password\n"));
        assert!(text.contains("PasswordAuthentication no\n"));
        assert!(text.contains("AuthorizedKeysFile /a\n"));
        assert!(text.contains("ForceCommand /f\n"));
    }

    #[test]
    fn ssh_command_checks_host_keys_strictly() {
        let cmd = ssh_command(Path::new("/k"), Path::new("/kh"), true);
        assert!(cmd.contains("StrictHostKeyChecking=yes"));
        assert!(cmd.contains("UserKnownHostsFile=/kh"));
        assert!(cmd.contains("BatchMode=yes"));
        assert!(!ssh_command(Path::new("/k"), Path::new("/kh"), false).contains("BatchMode"));
    }
}
