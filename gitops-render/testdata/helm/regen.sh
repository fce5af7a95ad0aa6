#!/usr/bin/env bash
# Re-creates expected.yaml / expected-error.txt of every fixture with helm 3.17.3 (the oracle).
# HELM defaults to the binary scripts/install-deps (../shared/tools/fetch-helm.sh) puts in .tools/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
HELM="${HELM:-$here/../../../.tools/helm}"
"$HELM" version --short | grep -q '^v3.17.3' || { echo "need helm v3.17.3, got $("$HELM" version --short)" >&2; exit 1; }
for args in "$here"/*/args.json; do
  dir="$(dirname "$args")"
  cmd=("$HELM" template)
  cmd+=("$(jq -r .release "$args")" "$(jq -r '.chartDir // "chart"' "$args")")
  cmd+=(-n "$(jq -r .namespace "$args")" --kube-version "$(jq -r .kubeVersion "$args")")
  [ "$(jq -r '.includeCrds // false' "$args")" = true ] && cmd+=(--include-crds)
  [ "$(jq -r '.skipTests // false' "$args")" = true ] && cmd+=(--skip-tests)
  while read -r f; do [ -n "$f" ] && cmd+=(-f "$f"); done < <(jq -r '.values // [] | .[]' "$args")
  while read -r s; do [ -n "$s" ] && cmd+=(--set-json "$s"); done < <(jq -r '.setJson // [] | .[]' "$args")
  while read -r s; do [ -n "$s" ] && cmd+=(--set "$s"); done < <(jq -r '.set // [] | .[]' "$args")
  while read -r s; do [ -n "$s" ] && cmd+=(--set-string "$s"); done < <(jq -r '.setString // [] | .[]' "$args")
  rm -f "$dir/expected.yaml" "$dir/expected-error.txt"
  if (cd "$dir" && HELM_CACHE_HOME="$(mktemp -d)" HELM_CONFIG_HOME="$(mktemp -d)" HELM_DATA_HOME="$(mktemp -d)" \
      "${cmd[@]}" > expected.yaml 2> stderr.txt); then
    rm -f "$dir/stderr.txt"
  else
    rm -f "$dir/expected.yaml"; mv "$dir/stderr.txt" "$dir/expected-error.txt"
  fi
  echo "$(basename "$dir"): $(ls "$dir" | grep expected)"
done
