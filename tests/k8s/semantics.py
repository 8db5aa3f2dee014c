#!/usr/bin/python3
"""Offline checks of Kubernetes manifests, part 3: what tandem needs of them.

Usage: semantics.py TANDEM_BINARY DOCKERFILE FILE.yaml...
Prints one line per problem and exits 1 if there is any:
  - every ConfigMap key and container env name is a setting that
    `tandem proxy --help` or `tandem worker --help` lists;
  - probes ask an HTTP path the proxy serves, on a port the container names;
  - pods run as a fixed non-root uid, the one the Dockerfile's USER sets;
  - every container has CPU and memory requests and a memory limit;
  - the proxy's grace period covers its preStop pause plus its drain deadline;
  - KEDA scales an existing Deployment, on metrics the proxy exports.
"""
import re
import subprocess
import sys

import yaml

PROBE_PATHS = {"/health"}


def settings(tandem):
    names = set()
    for cmd in ("proxy", "worker"):
        out = subprocess.run([tandem, cmd, "--help"], capture_output=True, text=True).stdout
        names |= set(re.findall(r"^  ([A-Z][A-Z0-9_]+)\s", out, re.M))
    return names


def drain_default(tandem):
    out = subprocess.run([tandem, "proxy", "--help"], capture_output=True, text=True).stdout
    m = re.search(r"^  DRAIN_[A-Z_]+\s.*\(default: (\d+)\)", out, re.M)
    return int(m.group(1)) if m else None


def main(tandem, dockerfile, files):
    problems = []
    docs = []
    for f in files:
        with open(f) as fh:
            docs += [d for d in yaml.safe_load_all(fh) if d and d.get("kind") != "Kustomization"]
    known = settings(tandem)
    if not known:
        problems.append(f"{tandem} --help lists no settings")
    binary = open(tandem, "rb").read()
    m = re.findall(r"^USER\s+(\S+)", open(dockerfile).read(), re.M)
    image_user = m[-1].split(":")[0] if m else None
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}

    for d in docs:
        name = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] == "ConfigMap":
            for k in d.get("data", {}):
                if k not in known:
                    problems.append(f"{name}: {k} is not a tandem setting")
        if d["kind"] != "Deployment":
            continue
        pod = d["spec"]["template"]["spec"]
        tandem_pod = any(str(c.get("image", "")).startswith("tandem") for c in pod["containers"])
        sc = pod.get("securityContext", {})
        if not sc.get("runAsNonRoot") or not sc.get("runAsUser"):
            problems.append(f"{name}: pod must set runAsNonRoot and a non-zero runAsUser")
        elif tandem_pod and str(sc["runAsUser"]) != image_user:
            problems.append(f"{name}: runAsUser {sc['runAsUser']} is not the image's USER {image_user}")
        for c in pod.get("initContainers", []) + pod["containers"]:
            cname = f"{name} container {c['name']}"
            res = c.get("resources", {})
            if not {"cpu", "memory"} <= set(res.get("requests", {})) or "memory" not in res.get("limits", {}):
                problems.append(f"{cname}: needs cpu/memory requests and a memory limit")
            if tandem_pod:
                for e in c.get("env", []):
                    if e["name"] not in known:
                        problems.append(f"{cname}: env {e['name']} is not a tandem setting")
            ports = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe"):
                http = c.get(probe, {}).get("httpGet")
                if http and (http["path"] not in PROBE_PATHS or http["port"] not in ports):
                    problems.append(f"{cname}: {probe} asks {http['path']} on port {http['port']}")
        if name == "Deployment/tandem-proxy":
            proxy = pod["containers"][0]
            if "readinessProbe" not in proxy or "livenessProbe" not in proxy:
                problems.append(f"{name}: the proxy needs readiness and liveness probes")
            pause = 0
            cmd = proxy.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
            if cmd[:1] == ["sleep"]:
                pause = int(cmd[1])
            drain = drain_default(tandem)
            if drain is None:
                problems.append("tandem proxy --help names no DRAIN_* deadline")
            elif pod.get("terminationGracePeriodSeconds", 30) < pause + drain:
                problems.append(f"{name}: grace {pod.get('terminationGracePeriodSeconds', 30)} s "
                                f"< preStop {pause} s + drain {drain} s")

    for d in docs:
        if d["kind"] != "ScaledObject":
            continue
        target = d["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            problems.append(f"ScaledObject: target {target} is no Deployment here")
        for t in d["spec"]["triggers"]:
            for metric in re.findall(r"\b(tandem_[a-z_]+)\b", t["metadata"].get("query", "")):
                if metric.encode() not in binary:
                    problems.append(f"ScaledObject: the proxy exports no metric {metric}")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) < 4:
        print(__doc__.strip())
        sys.exit(0 if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help") else 2)
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
