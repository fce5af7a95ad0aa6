//! `gitops notify` against `gitops receive`, as two real processes over HTTP on 127.0.0.1.
//!
//! A generic-hmac provider signs the event with the token; the generic-hmac receiver checks the
//! signature and prints a trigger for its resources. A wrong token must be refused with 401 and
//! make `gitops notify` exit non-zero with the receiver's answer.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const GITOPS: &str = env!("CARGO_BIN_EXE_gitops");

/// A running `gitops receive`, killed on drop.
struct Receiver {
    child: Child,
    url: String,
    stdout: mpsc::Receiver<String>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_receiver(token: &str) -> Receiver {
    let mut child = Command::new(GITOPS)
        .args([
            "receive",
            "--type",
            "generic-hmac",
            "--name",
            "hooks",
            "--namespace",
            "flux-system",
            "--addr",
            "127.0.0.1:0",
            "--resource",
            "GitRepository/flux-system/podinfo",
        ])
        .env("GITOPS_RECEIVER_TOKEN", token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gitops receive starts");
    // The receiver announces its webhook URL on stderr once it listens.
    let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let (url_tx, url_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                let _ = url_tx.send(url.to_string());
            }
        }
    });
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let (out_tx, out_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = out_tx.send(line);
        }
    });
    let url = url_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("gitops receive announces its URL");
    Receiver {
        child,
        url,
        stdout: out_rx,
    }
}

fn notify(url: &str, token: &str) -> std::process::Output {
    Command::new(GITOPS)
        .args([
            "notify",
            "--type",
            "generic-hmac",
            "--address",
            url,
            "--severity",
            "info",
            "--reason",
            "ReconciliationSucceeded",
            "--message",
            "Applied revision main@sha1:0c9c2e41d2f94f9b9c419b6f0c6b5a8e01234567",
            "--object",
            "Kustomization/flux-system/apps",
            "--revision",
            "main@sha1:0c9c2e41d2f94f9b9c419b6f0c6b5a8e01234567",
        ])
        .env("GITOPS_NOTIFY_TOKEN", token)
        .output()
        .expect("gitops notify runs")
}

#[test]
fn a_signed_event_triggers_the_receivers_resources() {
    let receiver = start_receiver("s3cr3t-token");
    let out = notify(&receiver.url, "s3cr3t-token");
    assert!(
        out.status.success(),
        "notify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trigger = receiver
        .stdout
        .recv_timeout(Duration::from_secs(10))
        .expect("the receiver prints the accepted trigger");
    assert!(
        trigger.contains("GitRepository") && trigger.contains("podinfo"),
        "unexpected trigger line: {trigger}"
    );
}

#[test]
fn a_wrong_token_is_refused_and_notify_fails_with_the_answer() {
    let receiver = start_receiver("the-right-token");
    let out = notify(&receiver.url, "a-wrong-token");
    assert!(!out.status.success(), "notify must fail on a 401");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("401"),
        "the error names the answer: {stderr}"
    );
    assert!(
        !stderr.contains("a-wrong-token"),
        "the token is never printed: {stderr}"
    );
    assert!(
        receiver
            .stdout
            .recv_timeout(Duration::from_millis(500))
            .is_err(),
        "nothing is triggered"
    );
}
