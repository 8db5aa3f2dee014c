#!/usr/bin/python3
"""Offline checks of Kubernetes manifests, part 1: unknown fields.

Reads YAML files, and for every object of a kind the Kubernetes API knows
walks it against the API's field lists (python3-kubernetes 22 models: each
model's attribute_map and openapi_types), so a misspelt or misplaced field
is an error here, as `kubectl apply --validate=strict` would make it. The
API server's JSON schemas leave unknown fields open, so the schema
validation of part 2 (validate.js) cannot see these.

Writes the objects as one JSON array on stdout for validate.js.
Usage: strict.py FILE.yaml...   exit 1 on the first file with errors.
"""
import json
import re
import sys

import kubernetes.client as k8s
import yaml

# Kinds whose fields python3-kubernetes does not describe: checked by
# validate.js against their own schemas (KEDA) or by the caller (kustomize).
OPEN_KINDS = {("keda.sh/v1alpha1", "ScaledObject"), ("kustomize.config.k8s.io/v1beta1", "Kustomization")}


def model_for(api_version, kind):
    group, _, version = api_version.rpartition("/")
    prefix = "".join(p.capitalize() for p in group.split(".")[0].split("-")) if group else ""
    name = f"{prefix}{version.capitalize()}{kind}"
    return getattr(k8s, name, None) or getattr(k8s, f"{version.capitalize()}{kind}", None)


def walk(value, typ, path, errors):
    if value is None:
        return
    m = re.fullmatch(r"list\[(.+)\]", typ)
    if m:
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list")
            return
        for i, v in enumerate(value):
            walk(v, m.group(1), f"{path}[{i}]", errors)
        return
    m = re.fullmatch(r"dict\(str, (.+)\)", typ)
    if m:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a map")
            return
        for k, v in value.items():
            walk(v, m.group(1), f"{path}.{k}", errors)
        return
    cls = getattr(k8s, typ, None)
    if cls is None or not hasattr(cls, "attribute_map"):
        return  # a scalar, or an open object such as IntOrString or Quantity
    if not isinstance(value, dict):
        errors.append(f"{path}: expected an object ({typ})")
        return
    by_json = {j: py for py, j in cls.attribute_map.items()}
    for key, v in value.items():
        if key not in by_json:
            errors.append(f"{path}.{key}: unknown field (known: {', '.join(sorted(by_json))})")
            continue
        walk(v, cls.openapi_types[by_json[key]], f"{path}.{key}", errors)


def main(files):
    out, failed = [], False
    for f in files:
        with open(f) as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d is not None]
        for i, doc in enumerate(docs):
            where = f"{f}#{i} {doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"
            errors = []
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key not in OPEN_KINDS:
                cls = model_for(*key) if all(key) else None
                if cls is None:
                    errors.append(f"unknown apiVersion/kind {key}")
                else:
                    walk(doc, cls.__name__, "", errors)
            for e in errors:
                print(f"{where}: {e}", file=sys.stderr)
            failed |= bool(errors)
            out.append({"file": f, "doc": doc})
    json.dump(out, sys.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0 if len(sys.argv) > 1 else 2)
    sys.exit(main(sys.argv[1:]))
