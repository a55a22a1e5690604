"""A workspace binary as it was at an earlier git revision, for measuring a change side by side
with the code before it in one run.

    baseline.binary("fill-agent", "fill-agent", "ea28d10") -> (path, short commit)

Built in release in a temporary git worktree with a target directory of its own
(`target/baseline-build`: sharing the main one would swap the main binary out
from under cargo's fingerprints), and kept in `target/baseline/<commit>/`, so a
second run does not build again.
"""

import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def binary(package, name, rev):
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", rev], capture_output=True, text=True,
                            check=True).stdout.strip()
    out = os.path.join(ROOT, "target", "baseline", commit, name)
    if os.path.exists(out):
        return out, commit
    wt = tempfile.mkdtemp(prefix=f"{name}-baseline-")
    print(f"[baseline] building {name} at {commit} (release, in {wt})", file=sys.stderr, flush=True)
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "--force", wt, commit], check=True,
                   stdout=subprocess.DEVNULL)
    try:
        target = os.path.join(ROOT, "target", "baseline-build")
        subprocess.run(["cargo", "build", "--release", "-q", "-p", package, "--bin", name], cwd=wt, check=True,
                       env={**os.environ, "CARGO_TARGET_DIR": target})
        os.makedirs(os.path.dirname(out), exist_ok=True)
        shutil.copy2(os.path.join(target, "release", name), out)
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", wt], check=False)
    return out, commit
