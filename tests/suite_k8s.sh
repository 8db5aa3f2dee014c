#!/usr/bin/env bash
# Kubernetes manifests (deploy/k8s/), checked offline as no cluster runs here:
#  - no unknown field anywhere (python3-kubernetes' API field lists);
#  - every object valid against its API schema (kubernetes-models, and
#    @kubernetes-models/keda for the ScaledObject);
#  - what tandem needs of them (tests/k8s/semantics.py);
#  - and each checker refuses a broken copy, so a pass means something.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib.sh

K8S=deploy/k8s
files=("$K8S"/*.yaml)
schema_check() { # both checkers must pass
    local json rc
    json=$(tests/k8s/strict.py "$@")
    rc=$?
    node tests/k8s/validate.js <<<"$json" && [ "$rc" -eq 0 ]
}

if ! /usr/bin/python3 -c 'import kubernetes, yaml' 2>/dev/null ||
    ! (cd tests/k8s && node -e "require.resolve('kubernetes-models/package.json'); require.resolve('@kubernetes-models/keda/package.json')") 2>/dev/null ||
    [ ! -x "$TANDEM" ]; then
    bad "prerequisites" "need python3-kubernetes, python3-yaml, npm kubernetes-models (make deps) and $TANDEM"
    finish
    exit 1
fi

out=$(schema_check "${files[@]}" 2>&1)
check "every manifest has known fields and passes its API schema${out:+: $out}" test -z "$out"

out=$(tests/k8s/semantics.py "$TANDEM" Dockerfile "${files[@]}" 2>&1)
check "manifests fit tandem (settings, probes, uid, resources, grace, KEDA)${out:+: $out}" \
    test -z "$out"

listed=$(/usr/bin/python3 -c 'import sys, yaml; print("\n".join(sorted(yaml.safe_load(open(sys.argv[1]))["resources"])))' \
    "$K8S/kustomization.yaml")
present=$(cd "$K8S" && ls *.yaml | grep -vx kustomization.yaml | sort)
check "kustomization.yaml lists exactly the manifests" test "$listed" = "$present"

# The compose file's Sentinel variant: parses, three sentinels watch the
# master, and proxy and workers find it through all three.
compose=$(/usr/bin/python3 - "$TANDEM" <<'PY' 2>&1
import re, subprocess, sys, yaml
c = yaml.safe_load(open("docker-compose.sentinel.yml"))
s = c["services"]
errs = []
sentinels = sorted(k for k in s if k.startswith("sentinel-"))
if len(sentinels) != 3: errs.append("three sentinels")
known = set(re.findall(r"^  ([A-Z][A-Z0-9_]+)\s", subprocess.run([sys.argv[1], "proxy", "--help"],
            capture_output=True, text=True).stdout, re.M))
for name in ("proxy", "worker"):
    env = s[name]["environment"]
    listed = sorted(h.split(":")[0] for h in env.get("REDIS_SENTINELS", "").split(","))
    if listed != sentinels: errs.append(f"{name} lists the sentinels")
    if str(env.get("REDIS_MIN_REPLICAS")) != "1": errs.append(f"{name} REDIS_MIN_REPLICAS=1")
    for k in env:
        if k not in known and k not in ("ASYNC_MODEL_PATH", "NUM_WORKERS"): errs.append(f"{name}: unknown {k}")
for k in sentinels:
    if "monitor mymaster redis-a" not in " ".join(s[k]["command"]): errs.append(f"{k} monitors redis-a")
if "--replicaof" not in s["redis-b"]["command"]: errs.append("redis-b replicates redis-a")
print("; ".join(errs) if errs else "fine")
PY
)
check "docker-compose.sentinel.yml: master, replica, 3 sentinels, tandem through them ($compose)" \
    test "$compose" = fine

# Broken copies: each must be refused by the checker that owns the rule.
mutate() { # name, file, sed expression
    sed "$3" "$K8S/$2" >"$TMP/$1.yaml"
    cmp -s "$K8S/$2" "$TMP/$1.yaml" && echo "mutation $1 changed nothing" >&2
}
mutate typo proxy.yaml 's/readinessProbe:/readinesProbe:/'
mutate type proxy.yaml 's/replicas: 2/replicas: two/'
mutate keda keda-scaledobject.yaml 's/scaleTargetRef:/scaleTarget:/'
mutate root worker.yaml 's/runAsNonRoot: true/runAsNonRoot: false/'
mutate setting configmap.yaml 's/QUEUE_NAME:/QUEUE_NAMES:/'
for m in typo type keda; do
    if schema_check "$TMP/$m.yaml" 2>/dev/null; then bad "schema check refuses the '$m' mutation"; else ok "schema check refuses the '$m' mutation"; fi
done
for m in root setting; do
    check "semantic check refuses the '$m' mutation" \
        bash -c "! tests/k8s/semantics.py '$TANDEM' Dockerfile '$TMP/$m.yaml' >/dev/null"
done
finish
