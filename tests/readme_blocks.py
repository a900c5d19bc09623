#!/usr/bin/env python3
"""tests/readme_blocks.py: the README's examples are run, or proven to be what CI runs.

A fenced block in README.md preceded by a line `<!-- ci: KIND [ARG] -->` is checked:
  sh-root       run with bash -euo pipefail in the checkout (PREFIX is a fresh temporary prefix)
  sh            run with bash in a temporary directory holding app.c (tests/consumer/app.c)
  cmake-project written as CMakeLists.txt of a project beside that app.c, configured against
                PREFIX, built, and its `app` run
  file PATH     must be the whole of PATH (which ctest or another script runs)
  in PATH       each line must be a line of PATH (a command a CI script runs as it stands)
The blocks run in README order, so sh-root's `cmake --install` fills PREFIX for the others.
Exits non-zero with the block's line number on the first failure.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def blocks(text):
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^<!-- ci: (\S+)(?: (\S+))? -->$", lines[i])
        if m:
            if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
                raise SystemExit(f"README.md:{i + 1}: a ci marker must be right before a fenced block")
            j = i + 2
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            yield i + 1, m.group(1), m.group(2), "\n".join(lines[i + 2 : j]) + "\n"
            i = j
        i += 1


def run(cmd, cwd, env, line):
    r = subprocess.run(cmd, cwd=cwd, env=env)
    if r.returncode != 0:
        raise SystemExit(f"README.md:{line}: the block failed (exit {r.returncode})")


def main():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    work = tempfile.mkdtemp(prefix="jsonbus-readme.")
    try:
        env = dict(os.environ, PREFIX=os.path.join(work, "prefix"))
        app_dir = os.path.join(work, "app")
        os.mkdir(app_dir)
        shutil.copy(os.path.join(ROOT, "tests", "consumer", "app.c"), app_dir)
        n = 0
        for line, kind, arg, body in blocks(text):
            n += 1
            print(f"== README.md:{line}: {kind} {arg or ''}", flush=True)
            if kind == "sh-root":
                run(["bash", "-euo", "pipefail", "-c", body], ROOT, env, line)
            elif kind == "sh":
                run(["bash", "-euo", "pipefail", "-c", body], app_dir, env, line)
            elif kind == "cmake-project":
                with open(os.path.join(app_dir, "CMakeLists.txt"), "w") as f:
                    f.write(body)
                build = os.path.join(work, "cmake-project")
                run(["cmake", "-S", app_dir, "-B", build, "-DCMAKE_PREFIX_PATH=" + env["PREFIX"]],
                    ROOT, env, line)
                run(["cmake", "--build", build], ROOT, env, line)
                run([os.path.join(build, "app")], ROOT, env, line)
            elif kind == "file":
                want = open(os.path.join(ROOT, arg), encoding="utf-8").read()
                if body.rstrip() != want.rstrip():
                    raise SystemExit(f"README.md:{line}: the block is not the whole of {arg}")
            elif kind == "in":
                have = {l.strip() for l in open(os.path.join(ROOT, arg), encoding="utf-8")}
                for l in body.splitlines():
                    if l.strip() and l.strip() not in have:
                        raise SystemExit(f"README.md:{line}: `{l.strip()}` is not a line of {arg}")
            else:
                raise SystemExit(f"README.md:{line}: unknown ci kind {kind}")
        if n == 0:
            raise SystemExit("README.md: no ci blocks found")
        print(f"readme blocks: {n} checked")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
