# Build step for the jsonbus wheel: copies the jsonbus shared library (from JSONBUS_LIBRARY,
# or ../target/release, building it with cargo if missing) into jsonbus/_lib/ and tags the
# wheel as platform-specific (it carries native code, though no extension module).
"""setup.py: everything else is in pyproject.toml."""

import os
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:  # setuptools >= 70.1 ships bdist_wheel itself
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # older: the wheel package's
    from wheel.bdist_wheel import bdist_wheel

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)  # the Rust crate: python/ lives in it

if sys.platform == "win32":
    LIB_NAMES = ["jsonbus.dll"]
elif sys.platform == "darwin":
    LIB_NAMES = ["libjsonbus.dylib"]
else:
    LIB_NAMES = ["libjsonbus.so"]


def find_library():
    """The shared library to bundle: $JSONBUS_LIBRARY, else <crate>/target/release/,
    built there with `cargo build --release` when it is missing."""
    override = os.environ.get("JSONBUS_LIBRARY")
    if override:
        if os.path.isdir(override):
            override = os.path.join(override, LIB_NAMES[0])
        if not os.path.isfile(override):
            sys.exit("jsonbus setup: JSONBUS_LIBRARY=%s is not a file" % override)
        return override
    release = os.path.join(ROOT, "target", "release")
    for name in LIB_NAMES:
        path = os.path.join(release, name)
        if os.path.isfile(path):
            return path
    manifest = os.path.join(ROOT, "Cargo.toml")
    if not os.path.isfile(manifest):
        sys.exit(
            "jsonbus setup: no shared library to bundle: %s has no Cargo.toml (building from "
            "an sdist?). Set JSONBUS_LIBRARY to the path of %s." % (ROOT, LIB_NAMES[0])
        )
    cargo = os.environ.get("CARGO", "cargo")
    print("jsonbus setup: %s missing; running %s build --release" % (release, cargo), flush=True)
    subprocess.check_call([cargo, "build", "--release", "--manifest-path", manifest])
    for name in LIB_NAMES:
        path = os.path.join(release, name)
        if os.path.isfile(path):
            return path
    sys.exit("jsonbus setup: cargo build finished but no %s in %s" % (LIB_NAMES[0], release))


class BuildPyWithLibrary(build_py):
    """build_py that also copies the shared library into <build_lib>/jsonbus/_lib/."""

    def run(self):
        # pip builds a local directory in-tree: start from a clean build/lib/jsonbus so that
        # no stale module of an earlier build ends up in the wheel.
        shutil.rmtree(os.path.join(self.build_lib, "jsonbus"), ignore_errors=True)
        super().run()
        source = find_library()
        target_dir = os.path.join(self.build_lib, "jsonbus", "_lib")
        os.makedirs(target_dir, exist_ok=True)
        target = os.path.join(target_dir, os.path.basename(source))
        print("jsonbus setup: bundling %s -> %s" % (source, target), flush=True)
        shutil.copy2(source, target)


class BinaryDistribution(Distribution):
    """Not pure: the wheel carries a native library."""

    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    """A py3-none-<platform> wheel: the library is loaded with ctypes, so any Python 3
    (no ABI tag) but one platform."""

    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        _python, _abi, plat = super().get_tag()
        return "py3", "none", plat


setup(
    distclass=BinaryDistribution,
    cmdclass={"build_py": BuildPyWithLibrary, "bdist_wheel": PlatformWheel},
)
