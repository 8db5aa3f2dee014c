#!/usr/bin/env node
// Offline checks of Kubernetes manifests, part 2: the API's JSON schemas.
// Reads strict.py's JSON array on stdin and validates each object with the
// schema of its apiVersion/kind (kubernetes-models for the built-in kinds,
// @kubernetes-models/keda for KEDA's): required fields, types, formats and
// enums, as the API server would check them. Exit 1 if any object fails.
"use strict";

function schemaClass(apiVersion, kind) {
  const slash = apiVersion.lastIndexOf("/");
  const group = slash < 0 ? "" : apiVersion.slice(0, slash);
  const version = apiVersion.slice(slash + 1);
  let mod;
  if (group === "keda.sh") mod = `@kubernetes-models/keda/keda.sh/${version}/${kind}`;
  else mod = `kubernetes-models/${group ? group + "/" : ""}${version}/${kind}`;
  try {
    return require(mod)[kind];
  } catch (e) {
    return null;
  }
}

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  let failed = 0;
  for (const { file, doc } of JSON.parse(input)) {
    const where = `${file} ${doc.kind}/${(doc.metadata || {}).name}`;
    if (doc.kind === "Kustomization") continue; // no API schema: a build-time file
    const Cls = schemaClass(doc.apiVersion, doc.kind);
    if (!Cls) {
      console.error(`${where}: no schema for ${doc.apiVersion} ${doc.kind}`);
      failed++;
      continue;
    }
    try {
      new Cls(doc).validate();
    } catch (e) {
      console.error(`${where}: ${e.message}`);
      failed++;
    }
  }
  process.exit(failed ? 1 : 0);
});
