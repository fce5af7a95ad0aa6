//! An S3-compatible server: moto in server mode (PyPI `moto[server]`), with a bucket created
//! and, on request, moto's IAM authentication enforced with a generated access key and a TLS
//! front (optionally requiring client certificates) before it.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::http::TlsMode;
use super::process::{
    Package, ServerProcess, raw_http, resolve_binary, start_with_port_retry, temp_dir,
};
use super::tls::TestCa;
use super::tls_front::TlsFront;
use super::{LOCALHOST, ServerError};

/// moto imports a lot of Python before it listens.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const PYTHON: Package = Package::debian("python3");
const MOTO: Package = Package::pypi("moto[server]");

/// Configures an [`S3Server`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct S3ServerBuilder {
    python: PathBuf,
    bucket: String,
    region: String,
    require_auth: bool,
    tls: TlsMode,
    client_auth: bool,
    /// The module run with `python -m`; tests swap it to exercise the missing-module path.
    module: &'static str,
}

impl Default for S3ServerBuilder {
    fn default() -> Self {
        S3ServerBuilder {
            module: "moto.server",
            python: PathBuf::from("python3"),
            bucket: "testkit".to_string(),
            region: "us-east-1".to_string(),
            require_auth: false,
            tls: TlsMode::Off,
            client_auth: false,
        }
    }
}

impl S3ServerBuilder {
    /// The bucket to create (default `testkit`).
    pub fn bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = bucket.into();
        self
    }

    /// The region clients should sign for (default `us-east-1`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// Enforces authentication: an IAM user with an access key allowed `s3:*` is created, then
    /// moto checks every request's SigV4 signature against its IAM (`/moto-api/reset-auth`).
    /// [`S3Server::access_key`] and [`S3Server::secret_key`] return that key; any other key or
    /// secret, and unsigned requests, are refused with `403` (`InvalidAccessKeyId`,
    /// `SignatureDoesNotMatch`). [`S3Server::put_object`] still works: it lets exactly one
    /// unauthenticated action through, so do not race it with other requests.
    pub fn require_auth(mut self) -> Self {
        self.require_auth = true;
        self
    }

    /// Serves HTTPS with a certificate from a CA generated for this server: clients reach moto
    /// through a TLS front ([`endpoint`](S3Server::endpoint) is `https://…`).
    pub fn tls(mut self) -> Self {
        self.tls = TlsMode::Generate;
        self
    }

    /// Serves HTTPS with a certificate from `ca`.
    pub fn tls_with_ca(mut self, ca: &TestCa) -> Self {
        self.tls = TlsMode::WithCa(ca.clone());
        self
    }

    /// Requires clients to present a certificate issued by the server's CA (mutual TLS).
    pub fn require_client_cert(mut self) -> Self {
        self.client_auth = true;
        self
    }

    /// Uses this Python (a path, or a name on `PATH`) instead of `python3`.
    pub fn python_binary(mut self, python: impl Into<PathBuf>) -> Self {
        self.python = python.into();
        self
    }

    /// Starts moto and creates the bucket. Returns once the bucket exists.
    pub fn start(self) -> Result<S3Server, ServerError> {
        let ca = match &self.tls {
            TlsMode::Off => None,
            TlsMode::Generate => Some(TestCa::generate()?),
            TlsMode::WithCa(ca) => Some(ca.clone()),
        };
        if self.client_auth && ca.is_none() {
            return Err(ServerError::InvalidArgument(
                "moto: client certificates need TLS: call .tls() or .tls_with_ca()".to_string(),
            ));
        }
        let bucket_ok = (3..=63).contains(&self.bucket.len())
            && self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(ServerError::InvalidArgument(format!(
                "bucket name {:?}: 3-63 lowercase letters, digits, '-' and '.'",
                self.bucket
            )));
        }
        let python = resolve_binary(&self.python, PYTHON)?;
        let dir = temp_dir("testkit-s3-")?;
        let (process, port) = start_with_port_retry(|port| {
            let mut cmd = Command::new(&python);
            cmd.args([
                "-m",
                self.module,
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .current_dir(dir.path())
            .env("PYTHONUNBUFFERED", "1")
            .env("AWS_DEFAULT_REGION", &self.region);
            let log = dir.path().join(format!("moto-{port}.log"));
            let mut process =
                ServerProcess::spawn("moto", &mut cmd, &log).map_err(|e| (e, false))?;
            let addr = SocketAddr::from((LOCALHOST, port));
            let ready = || matches!(raw_http(addr, "GET", "/", b""), Ok((200, _)));
            match process.wait_ready(&addr.to_string(), READY_TIMEOUT, ready) {
                Ok(()) => Ok((process, port)),
                Err(e) => {
                    let tail = process.log_tail();
                    if tail.contains("No module named") {
                        // moto itself or one of its server extras (flask, flask_cors).
                        return Err((
                            MOTO.missing(format!("{} -m {}", python.display(), self.module)),
                            false,
                        ));
                    }
                    let raced = process.lost_port_race();
                    Err((e, raced))
                }
            }
        })?;
        let addr = SocketAddr::from((LOCALHOST, port));
        let body = if self.region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            )
        };
        match raw_http(addr, "PUT", &format!("/{}", self.bucket), body.as_bytes()) {
            Ok((200, _)) => {}
            Ok((status, body)) => {
                return Err(ServerError::Setup {
                    server: "moto",
                    what: format!("create bucket {}", self.bucket),
                    detail: format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
                });
            }
            Err(e) => {
                return Err(ServerError::Setup {
                    server: "moto",
                    what: format!("create bucket {}", self.bucket),
                    detail: e.to_string(),
                });
            }
        }
        let keys = if self.require_auth {
            Some(enforce_auth(addr, &self.region)?)
        } else {
            None
        };
        let tls = match ca {
            Some(ca) => Some((TlsFront::start("moto", &ca, self.client_auth, addr)?, ca)),
            None => None,
        };
        tracing::debug!(port, bucket = %self.bucket, auth = keys.is_some(), tls = tls.is_some(), "moto S3 server ready");
        Ok(S3Server {
            process,
            tls,
            port,
            bucket: self.bucket,
            region: self.region,
            keys,
            _dir: dir,
        })
    }
}

/// moto's S3 server on `127.0.0.1` with one bucket created. moto keeps everything in memory
/// and accepts any credentials; clients must use path-style requests against
/// [`endpoint`](Self::endpoint). Stops when dropped.
pub struct S3Server {
    process: ServerProcess,
    /// The TLS front and its CA, when serving HTTPS.
    tls: Option<(TlsFront, TestCa)>,
    /// moto's own (plain HTTP) port.
    port: u16,
    bucket: String,
    region: String,
    /// The IAM access key and secret, when authentication is enforced.
    keys: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("port", &self.port)
            .field("tls", &self.tls.as_ref().map(|(front, _)| front.addr()))
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.keys.as_ref().map(|(a, _)| a))
            .finish_non_exhaustive()
    }
}

impl S3Server {
    /// A builder: bucket, region, Python binary.
    pub fn builder() -> S3ServerBuilder {
        S3ServerBuilder::default()
    }

    /// Starts moto with the bucket `testkit` in `us-east-1`.
    pub fn start() -> Result<Self, ServerError> {
        Self::builder().start()
    }

    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` (the TLS front) with TLS.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr())
    }

    /// `127.0.0.1:PORT`, as Flux's `Bucket` `spec.endpoint` takes it (with `insecure: true`
    /// unless the server speaks TLS).
    pub fn host(&self) -> String {
        self.addr().to_string()
    }

    /// The address clients connect to: the TLS front with TLS, moto itself otherwise.
    pub fn addr(&self) -> SocketAddr {
        match &self.tls {
            Some((front, _)) => front.addr(),
            None => self.moto_addr(),
        }
    }

    /// moto's own plain-HTTP address (behind the TLS front when there is one).
    fn moto_addr(&self) -> SocketAddr {
        SocketAddr::from((LOCALHOST, self.port))
    }

    /// The CA that issued the server certificate, with TLS.
    pub fn ca(&self) -> Option<&TestCa> {
        self.tls.as_ref().map(|(_, ca)| ca)
    }

    /// The region to sign requests for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The bucket that was created.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// An access key id moto accepts: any, unless
    /// [`require_auth`](S3ServerBuilder::require_auth) made it check them, then the generated
    /// IAM key.
    pub fn access_key(&self) -> &str {
        match &self.keys {
            Some((access, _)) => access,
            None => "testkit-access-key",
        }
    }

    /// Whether moto checks signatures ([`require_auth`](S3ServerBuilder::require_auth)).
    pub fn requires_auth(&self) -> bool {
        self.keys.is_some()
    }

    /// The secret access key to go with [`access_key`](Self::access_key).
    pub fn secret_key(&self) -> &str {
        match &self.keys {
            Some((_, secret)) => secret,
            None => "testkit-secret-key",
        }
    }

    /// Stores an object in the bucket (an unsigned path-style `PUT`, which moto accepts), for
    /// seeding fixtures from synchronous test code. `key` is used as given: keep it to URL-safe
    /// characters (`a-z0-9/._-`).
    pub fn put_object(&self, key: &str, data: &[u8]) -> Result<(), ServerError> {
        let key = key.trim_start_matches('/');
        let safe = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
        if !safe {
            return Err(ServerError::InvalidArgument(format!(
                "object key {key:?}: use letters, digits and / . _ -"
            )));
        }
        let what = format!("put object {}/{key}", self.bucket);
        if self.keys.is_some() {
            // One unauthenticated action, this PUT; enforcement resumes after it.
            reset_auth(self.moto_addr(), "1")?;
        }
        match raw_http(
            self.moto_addr(),
            "PUT",
            &format!("/{}/{key}", self.bucket),
            data,
        ) {
            Ok((200, _)) => Ok(()),
            Ok((status, body)) => Err(ServerError::Setup {
                server: "moto",
                what,
                detail: format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
            }),
            Err(e) => Err(ServerError::Setup {
                server: "moto",
                what,
                detail: e.to_string(),
            }),
        }
    }

    /// moto's log so far (last lines).
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

/// One HTTP/1.1 request with extra headers; the status and body of the answer.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of HTTP headers in the response"))?;
    let status = String::from_utf8_lossy(&response[..end])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad HTTP status line"))?;
    Ok((status, response[end + 4..].to_vec()))
}

fn setup_error(what: &str, detail: impl std::fmt::Display) -> ServerError {
    ServerError::Setup {
        server: "moto",
        what: what.to_owned(),
        detail: detail.to_string(),
    }
}

/// Sets how many actions moto lets through before it checks signatures again (`0`: from now
/// on; `inf`: never).
fn reset_auth(addr: SocketAddr, count: &str) -> Result<(), ServerError> {
    match request(
        addr,
        "POST",
        "/moto-api/reset-auth",
        &[("Content-Type", "text/plain")],
        count.as_bytes(),
    ) {
        Ok((200, _)) => Ok(()),
        Ok((status, body)) => Err(setup_error(
            "reset moto auth",
            format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
        )),
        Err(e) => Err(setup_error("reset moto auth", e)),
    }
}

/// The text of `<tag>…</tag>` in an XML answer.
fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..start + len])
}

/// Creates an IAM user allowed `s3:*` with an access key (while moto still lets everything
/// through), then makes moto check every request. Returns the key id and secret.
fn enforce_auth(addr: SocketAddr, region: &str) -> Result<(String, String), ServerError> {
    // moto routes by the credential scope's service; the signature is not checked yet.
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/{region}/iam/aws4_request, \
         SignedHeaders=host, Signature=0"
    );
    let iam = |action: &str, params: &str| -> Result<String, ServerError> {
        let body = format!("Action={action}&Version=2010-05-08&{params}");
        match request(
            addr,
            "POST",
            "/",
            &[
                ("Authorization", authorization.as_str()),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            body.as_bytes(),
        ) {
            Ok((200, body)) => Ok(String::from_utf8_lossy(&body).into_owned()),
            Ok((status, body)) => Err(setup_error(
                &format!("IAM {action}"),
                format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
            )),
            Err(e) => Err(setup_error(&format!("IAM {action}"), e)),
        }
    };
    iam("CreateUser", "UserName=testkit")?;
    let created = iam("CreateAccessKey", "UserName=testkit")?;
    let (Some(access), Some(secret)) = (
        xml_text(&created, "AccessKeyId"),
        xml_text(&created, "SecretAccessKey"),
    ) else {
        return Err(setup_error("IAM CreateAccessKey", "no key in the answer"));
    };
    // {"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}
    let policy = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A\
                  %22Allow%22%2C%22Action%22%3A%22s3%3A%2A%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D";
    iam(
        "PutUserPolicy",
        &format!("UserName=testkit&PolicyName=s3&PolicyDocument={policy}"),
    )?;
    reset_auth(addr, "0")?;
    Ok((access.to_owned(), secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_python_module_names_the_pypi_package() {
        let builder = S3ServerBuilder {
            module: "testkit_no_such_module.server",
            ..S3ServerBuilder::default()
        };
        let err = builder.start().expect_err("no such module");
        match &err {
            ServerError::MissingBinary {
                package, installer, ..
            } => {
                assert_eq!(package, "moto[server]");
                assert_eq!(*installer, "pip install");
            }
            other => panic!("expected MissingBinary, got {other}"),
        }
    }

    #[test]
    fn bad_bucket_names_are_refused_before_starting() {
        let err = S3Server::builder()
            .bucket("No_Such")
            .start()
            .expect_err("bad name");
        assert!(matches!(err, ServerError::InvalidArgument(_)), "{err}");
    }
}
