//! An S3-compatible server: moto in server mode (PyPI `moto[server]`), with a bucket created.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::process::{
    Package, ServerProcess, raw_http, resolve_binary, start_with_port_retry, temp_dir,
};
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

    /// Uses this Python (a path, or a name on `PATH`) instead of `python3`.
    pub fn python_binary(mut self, python: impl Into<PathBuf>) -> Self {
        self.python = python.into();
        self
    }

    /// Starts moto and creates the bucket. Returns once the bucket exists.
    pub fn start(self) -> Result<S3Server, ServerError> {
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
        tracing::debug!(port, bucket = %self.bucket, "moto S3 server ready");
        Ok(S3Server {
            process,
            port,
            bucket: self.bucket,
            region: self.region,
            _dir: dir,
        })
    }
}

/// moto's S3 server on `127.0.0.1` with one bucket created. moto keeps everything in memory
/// and accepts any credentials; clients must use path-style requests against
/// [`endpoint`](Self::endpoint). Stops when dropped.
#[derive(Debug)]
pub struct S3Server {
    process: ServerProcess,
    port: u16,
    bucket: String,
    region: String,
    _dir: tempfile::TempDir,
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

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// `127.0.0.1:PORT`, as Flux's `Bucket` `spec.endpoint` takes it (with `insecure: true`).
    pub fn host(&self) -> String {
        self.addr().to_string()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((LOCALHOST, self.port))
    }

    /// The region to sign requests for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The bucket that was created.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// An access key id moto accepts.
    pub fn access_key(&self) -> &str {
        "testkit-access-key"
    }

    /// The secret access key to go with [`access_key`](Self::access_key).
    pub fn secret_key(&self) -> &str {
        "testkit-secret-key"
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
        match raw_http(self.addr(), "PUT", &format!("/{}/{key}", self.bucket), data) {
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
