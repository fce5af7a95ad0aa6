#!/usr/bin/env bash
# Regenerates expected.yaml of every case with kubectl kustomize (kustomize v5.5.0).
#
# Each case holds input/ (a local directory tree), flux.yaml (a Flux Kustomization, whose
# spec.path is built), optionally ignore-paths.txt (flux build kustomization --ignore-paths, one
# pattern per line) and kustomization.flux.yaml: the kustomization Flux's generator with ignore
# rules (fluxcd/pkg kustomize.NewGeneratorWithIgnore, as `flux build kustomization` uses it)
# writes into spec.path, written by hand from its rules: .sourceignore files and the ignore
# list skip files while generating, and the resources/components/crds they exclude are
# dropped. This script puts that file in place in a copy of input/ and builds it as Flux does
# (LoadRestrictionsNone). Requires kubectl and python3 with PyYAML.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for case in "$here"/*/; do
  case="${case%/}"
  [ -f "$case/kustomization.flux.yaml" ] || continue
  tmp="$(mktemp -d)"
  cp -r "$case/input" "$tmp/root"
  path="$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["spec"].get("path", "."))' "$case/flux.yaml")"
  dir="$tmp/root/$path"
  existing="$(ls "$dir"/kustomization.yaml "$dir"/kustomization.yml "$dir"/Kustomization 2>/dev/null | head -n1 || true)"
  cp "$case/kustomization.flux.yaml" "${existing:-$dir/kustomization.yaml}"
  kubectl kustomize --load-restrictor LoadRestrictionsNone "$dir" > "$case/expected.yaml"
  rm -rf "$tmp"
  echo "regenerated $(basename "$case")/expected.yaml"
done
