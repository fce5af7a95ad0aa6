#!/bin/sh
# Regenerates expected.yaml of the helm-* fixtures with the oracle:
# kubectl kustomize (kustomize v5.5.0) running helm 3.17.3.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
helm=${HELM:-$here/../../../.tools/helm}
for d in "$here"/helm-*/; do
    kubectl kustomize --enable-helm --helm-command "$helm" "$d/input" > "$d/expected.yaml"
done
