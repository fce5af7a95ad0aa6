//! `gitops build DIR` in Flux's mode (`--kustomization-file`, `--ignore-paths`), as
//! `flux build kustomization --path DIR --dry-run` builds a local checkout: the Flux
//! Kustomization's spec shapes the build, a kustomization file is generated for a plain
//! directory (and removed again), `.sourceignore` files and the ignore patterns skip files,
//! postBuild.substitute applies, and loads reach the rest of the Git work tree.

use std::path::Path;
use std::process::{Command, Output};

const GITOPS: &str = env!("CARGO_BIN_EXE_gitops");

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn gitops(args: &[&str], cwd: &Path) -> Output {
    Command::new(GITOPS)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run gitops")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const FLUX_KUSTOMIZATION: &str = "\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: app
  namespace: flux-system
spec:
  interval: 10m
  path: ./apps/app
  prune: true
  sourceRef:
    kind: GitRepository
    name: repo
  targetNamespace: prod
  namePrefix: p-
  commonMetadata:
    labels:
      team: blue
  postBuild:
    substitute:
      greeting: hello
    substituteFrom:
      - kind: ConfigMap
        name: vars
";

/// A Git work tree: `apps/app` is plain YAML (no kustomization file) with a `.sourceignore`.
fn repo() -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(repo.path().join(".git")).expect("a .git directory marks the work tree");
    write(
        repo.path(),
        "apps/app/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  greeting: ${greeting}\n  colour: ${colour:=blue}\n",
    );
    write(
        repo.path(),
        "apps/app/extra.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n",
    );
    write(
        repo.path(),
        "apps/app/scratch/notes.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: scratch\n",
    );
    write(repo.path(), "apps/app/.sourceignore", "scratch/\n");
    write(repo.path(), "ks.yaml", FLUX_KUSTOMIZATION);
    repo
}

#[test]
fn a_flux_kustomization_file_shapes_the_build_of_a_plain_directory() {
    let repo = repo();
    let out = gitops(
        &[
            "build",
            "apps/app",
            "--kustomization-file",
            "ks.yaml",
            "--ignore-paths",
            "extra.yaml,*.md",
        ],
        repo.path(),
    );
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout,
        "apiVersion: v1\ndata:\n  colour: blue\n  greeting: hello\nkind: ConfigMap\nmetadata:\n  labels:\n    team: blue\n  name: p-settings\n  namespace: prod\n",
        "{stderr}"
    );
    assert!(stderr.contains("substituteFrom skipped"), "{stderr}");
    assert!(
        !repo.path().join("apps/app/kustomization.yaml").exists(),
        "the generated kustomization file is removed after the build"
    );

    // Without --ignore-paths, extra.yaml is built; scratch/ stays out (.sourceignore).
    let out = gitops(
        &["build", "apps/app", "--kustomization-file", "ks.yaml"],
        repo.path(),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("name: p-extra"), "{stdout}");
    assert!(!stdout.contains("scratch"), "{stdout}");
}

#[test]
fn an_overlay_reaches_its_base_elsewhere_in_the_work_tree() {
    let repo = repo();
    write(
        repo.path(),
        "base/kustomization.yaml",
        "resources:\n  - cm.yaml\n",
    );
    write(
        repo.path(),
        "base/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: base\n",
    );
    write(
        repo.path(),
        "overlays/prod/kustomization.yaml",
        "resources:\n  - ../../base\nnameSuffix: -x\n",
    );
    let before = std::fs::read(repo.path().join("overlays/prod/kustomization.yaml")).expect("read");
    let out = gitops(
        &["build", "overlays/prod", "--kustomization-file", "ks.yaml"],
        repo.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("name: p-base-x"), "{stdout}");
    assert!(stdout.contains("namespace: prod"), "{stdout}");
    assert_eq!(
        std::fs::read(repo.path().join("overlays/prod/kustomization.yaml")).expect("read"),
        before,
        "the directory's own kustomization file is restored"
    );
}

#[test]
fn a_file_that_is_not_a_flux_kustomization_is_refused_by_name() {
    let repo = repo();
    write(
        repo.path(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
    );
    let out = gitops(
        &["build", "apps/app", "--kustomization-file", "cm.yaml"],
        repo.path(),
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--kustomization-file cm.yaml") && stderr.contains("ConfigMap"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
