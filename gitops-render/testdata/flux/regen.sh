#!/usr/bin/env bash
# Regenerates expected.yaml of every Flux fixture with kubectl kustomize (kustomize v5.5.0).
#
# Each case holds input/ (the artifact root), flux.yaml (a Flux Kustomization) and
# kustomization.flux.yaml: the kustomization Flux's generator writes into spec.path (the
# generated one, or the existing one with the spec's overrides merged), written by hand from
# Flux's rules. This script puts that file in place in a copy of input/ and builds it as Flux's
# SecureBuild does (LoadRestrictionsNone). spec.commonMetadata, which Flux sets on metadata
# after the build, is reproduced by an outer kustomization whose LabelTransformer and
# AnnotationsTransformer touch metadata/labels and metadata/annotations only.
# Requires kubectl (kustomize v5.5.0) and python3 with PyYAML.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for case in "$here"/*/; do
  case="${case%/}"
  [ -f "$case/kustomization.flux.yaml" ] || continue
  tmp="$(mktemp -d)"
  cp -r "$case/input" "$tmp/root"
  read -r path common < <(python3 - "$case/flux.yaml" <<'PY'
import sys, yaml, json
spec = yaml.safe_load(open(sys.argv[1]))["spec"]
print(spec.get("path", "."), json.dumps(spec.get("commonMetadata") or {}, separators=(",", ":")))
PY
)
  dir="$tmp/root/$path"
  existing="$(ls "$dir"/kustomization.yaml "$dir"/kustomization.yml "$dir"/Kustomization 2>/dev/null | head -n1 || true)"
  target="${existing:-$dir/kustomization.yaml}"
  cp "$case/kustomization.flux.yaml" "$target"
  build="$dir"
  if [ "$common" != "{}" ]; then
    mkdir -p "$tmp/root/.common-metadata"
    python3 - "$tmp/root/.common-metadata/kustomization.yaml" "$(realpath --relative-to="$tmp/root/.common-metadata" "$dir")" "$common" <<'PY'
import sys, json, yaml
out, rel, cm = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
k = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
     "resources": [rel], "transformers": []}
if cm.get("labels"):
    k["transformers"].append(yaml.safe_dump({"apiVersion": "builtin", "kind": "LabelTransformer",
        "metadata": {"name": "common-labels"}, "labels": cm["labels"],
        "fieldSpecs": [{"path": "metadata/labels", "create": True}]}))
if cm.get("annotations"):
    k["transformers"].append(yaml.safe_dump({"apiVersion": "builtin", "kind": "AnnotationsTransformer",
        "metadata": {"name": "common-annotations"}, "annotations": cm["annotations"],
        "fieldSpecs": [{"path": "metadata/annotations", "create": True}]}))
yaml.safe_dump(k, open(out, "w"))
PY
    build="$tmp/root/.common-metadata"
  fi
  kubectl kustomize --load-restrictor LoadRestrictionsNone "$build" > "$case/expected.yaml"
  rm -rf "$tmp"
  echo "regenerated $(basename "$case")/expected.yaml"
done
