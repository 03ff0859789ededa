"""Rule 14: importing any module creates no file or directory, starts no
thread and opens no socket.

Every module of the project's packages (found by walking their directories,
so modules added later are covered) is imported one by one in a fresh
interpreter whose cwd, HOME and TMPDIR are empty temporary directories; after
each import the probe compares those directories, the project tree, the
thread count and the open sockets with what they were before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("actors", "messages", "runtime", "config", "exchange", "trading")

PROBE = textwrap.dedent(r"""
    import importlib, json, os, sys, threading

    root, watched, modules = sys.argv[1], sys.argv[2].split(os.pathsep), sys.argv[3:]

    def tree(base, skip_py):
        out = set()
        for dirpath, dirnames, filenames in os.walk(base):
            # Not into VCS, virtualenv and cache dirs (big, and not ours to watch).
            dirnames[:] = [d for d in dirnames
                           if not d.startswith(".") and d != "__pycache__"]
            for name in dirnames + filenames:
                if skip_py and name.endswith((".py", ".pyc")):
                    continue
                out.add(os.path.relpath(os.path.join(dirpath, name), base))
        return out

    def files():
        # The project tree may be edited by people while the probe runs, so
        # only new non-source entries count there; the temp dirs must stay empty.
        return {d: tree(d, d == root) for d in watched + [root]}

    def sockets():
        n = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                n += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
            except OSError:
                pass
        return n

    before_files, before_threads, before_sockets = files(), threading.active_count(), sockets()
    problems = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            problems.append(f"{name}: import failed: {type(exc).__name__}: {exc}")
            continue
        now_files = files()
        for d in now_files:
            new = sorted(now_files[d] - before_files[d])
            if new:
                problems.append(f"{name}: created {new[:5]} under {d}")
        threads = threading.active_count()
        if threads != before_threads:
            names = [t.name for t in threading.enumerate()]
            problems.append(f"{name}: thread count {before_threads} -> {threads}: {names}")
        socks = sockets()
        if socks != before_sockets:
            problems.append(f"{name}: open sockets {before_sockets} -> {socks}")
        before_files, before_threads, before_sockets = now_files, threads, socks
    print(json.dumps({"imported": len(modules), "problems": problems}))
""")


def project_modules() -> list[str]:
    mods = []
    for pkg in PACKAGES:
        base = ROOT / pkg
        if not (base / "__init__.py").exists():
            continue
        for path in sorted(base.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods.append(".".join(parts))
    if (ROOT / "main.py").exists():
        mods.append("main")
    return mods


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
def test_importing_any_module_has_no_side_effects(tmp_path: Path) -> None:
    modules = project_modules()
    assert "trading.store" in modules and "actors.persistence" in modules
    cwd, home, tmp = (tmp_path / d for d in ("cwd", "home", "tmp"))
    for d in (cwd, home, tmp):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    proc = subprocess.run(
        [sys.executable, str(script), str(ROOT), os.pathsep.join(map(str, (cwd, home, tmp))),
         *modules],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["imported"] == len(modules)
    assert report["problems"] == [], "\n".join(report["problems"])
