#!/usr/bin/env python3
"""Generates kubernetes_v1_21_2.json: the parts of kustomize's built-in Kubernetes OpenAPI
schema that a build uses.

kustomize v5.5 (kyaml) embeds the Kubernetes v1.21.2 OpenAPI v2 document as a gzipped
gnostic protobuf (`kyaml/openapi/kubernetesapi/v1_21_2/swagger.pb`). `kubectl` embeds the
same kustomize, so this script finds that gzip stream in a kubectl binary, decodes the
protobuf and keeps, for every definition, only what kyaml's schema walker reads:
`type`, `$ref`, `properties`, `items`, `additionalProperties` and the extensions
`x-kubernetes-group-version-kind`, `x-kubernetes-patch-strategy`,
`x-kubernetes-patch-merge-key` and `x-kubernetes-list-map-keys`.

Usage: gen_builtin.py [KUBECTL] > kubernetes_v1_21_2.json
"""

import gzip
import json
import re
import shutil
import sys
import zlib


def varint(b, i):
    shift = 0
    out = 0
    while True:
        c = b[i]
        i += 1
        out |= (c & 0x7F) << shift
        if c < 0x80:
            return out, i
        shift += 7


def fields(b):
    """Yields (field number, wire type, value) of one protobuf message."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 1:
            v, i = b[i : i + 8], i + 8
        elif wt == 2:
            n, i = varint(b, i)
            v, i = b[i : i + n], i + n
        elif wt == 5:
            v, i = b[i : i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        yield num, wt, v


# gnostic openapiv2.proto field numbers.
DOC_DEFINITIONS = 9
DOC_PATHS = 8
NAMED_NAME, NAMED_VALUE = 1, 2
SCHEMA_REF = 1
SCHEMA_ADDITIONAL = 21
SCHEMA_TYPE = 22
SCHEMA_ITEMS = 23
SCHEMA_ALL_OF = 24
SCHEMA_PROPERTIES = 25
SCHEMA_EXTENSION = 31
ANY_YAML = 2

KEEP_EXT = {
    "x-kubernetes-group-version-kind",
    "x-kubernetes-patch-strategy",
    "x-kubernetes-patch-merge-key",
    "x-kubernetes-list-map-keys",
}


def yaml_scalar_or_struct(text):
    """The extension values are small YAML documents: a string, a list of strings, or a
    list of {group, kind, version} mappings."""
    text = text.strip()
    if not text.startswith("-"):
        return text.strip("'\"")
    items = []
    cur = None
    for line in text.splitlines():
        if line.startswith("- "):
            body = line[2:]
            if ":" in body:
                cur = {}
                items.append(cur)
                k, v = body.split(":", 1)
                cur[k.strip()] = v.strip().strip("'\"")
            else:
                cur = None
                items.append(body.strip().strip("'\""))
        elif line.startswith("  ") and cur is not None and ":" in line:
            k, v = line.strip().split(":", 1)
            cur[k.strip()] = v.strip().strip("'\"")
    return items


def named(b):
    name, value = "", b""
    for num, _, v in fields(b):
        if num == NAMED_NAME:
            name = v.decode()
        elif num == NAMED_VALUE:
            value = v
    return name, value


def schema(b):
    out = {}
    for num, _, v in fields(b):
        if num == SCHEMA_REF:
            out["$ref"] = v.decode()
        elif num == SCHEMA_TYPE:
            out["type"] = [t.decode() for n, _, t in fields(v) if n == 1]
        elif num == SCHEMA_ITEMS:
            items = [schema(s) for n, _, s in fields(v) if n == 1]
            if items:
                out["items"] = items[0]
        elif num == SCHEMA_ADDITIONAL:
            for n, _, s in fields(v):
                if n == 1:
                    out["additionalProperties"] = schema(s)
        elif num == SCHEMA_PROPERTIES:
            props = {}
            for n, _, s in fields(v):
                if n == 1:
                    k, val = named(s)
                    props[k] = schema(val)
            out["properties"] = props
        elif num == SCHEMA_ALL_OF:
            out.setdefault("allOf", []).append(schema(v))
        elif num == SCHEMA_EXTENSION:
            k, val = named(v)
            if k in KEEP_EXT:
                text = ""
                for n, _, y in fields(val):
                    if n == ANY_YAML:
                        text = y.decode()
                out[k] = yaml_scalar_or_struct(text)
    if "type" in out and len(out["type"]) == 1:
        out["type"] = out["type"][0]
    return out


def find_swagger(binary):
    data = open(binary, "rb").read()
    for m in re.finditer(rb"\x1f\x8b\x08", data):
        try:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = d.decompress(data[m.start() : m.start() + 32_000_000])
        except zlib.error:
            continue
        if out.startswith(b"\n\x032.0") and b"v1.21.2" in out[:64]:
            return out
    raise SystemExit(f"no Kubernetes v1.21.2 swagger found in {binary}")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else shutil.which("kubectl")
    doc = find_swagger(binary)
    defs = {}
    for num, _, v in fields(doc):
        if num == DOC_DEFINITIONS:
            for n, _, s in fields(v):
                if n == 1:
                    k, val = named(s)
                    defs[k] = schema(val)
    json.dump(
        {"swagger": "2.0", "info": {"version": "v1.21.2"}, "definitions": defs},
        sys.stdout,
        sort_keys=True,
        separators=(",", ":"),
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
