#!/usr/bin/env python3
"""Lists the test executables of some workspace packages from `cargo test --no-run
--message-format=json` on stdin: one line per executable, "MANIFEST_DIR EXECUTABLE".

Usage: cargo test ... --no-run --message-format=json | .ci/test_binaries.py PKG...
Exit status 1 when a named package has no test executable (a renamed crate must not
silently drop out of the kernel-path runs).
"""

import json
import os
import sys

wanted = set(sys.argv[1:])
found = {name: 0 for name in wanted}
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except json.JSONDecodeError:
        continue
    if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
        continue
    if not msg.get("profile", {}).get("test"):
        continue
    # package_id: "path+file:///…/crates/nn#mfh-nn@0.1.0" (or "…#0.1.0" when the folder
    # is the name); the manifest path is exact either way.
    manifest = msg["manifest_path"]
    pkg = msg["package_id"].split("#")[-1].split("@")[0]
    if "@" not in msg["package_id"].split("#")[-1]:
        pkg = os.path.basename(os.path.dirname(manifest))
    if pkg in wanted:
        found[pkg] += 1
        print(os.path.dirname(manifest), msg["executable"])
missing = sorted(name for name, n in found.items() if n == 0)
if missing:
    sys.exit("no test executables for: " + ", ".join(missing))
