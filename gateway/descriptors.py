"""The descriptor set grpc_json_transcoder reads: every Edgewise proto with its imports
(``google.api.http`` annotations included), plus ``google.rpc.Status`` and the error
detail messages, so a converted error body can spell out its ErrorInfo as JSON.

``make protos`` writes it (``python -m gateway.descriptors build/edgewise.pb``); the
launcher rebuilds it when it is missing or older than a proto.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from gateway.settings import ROOT

PROTO_ROOT = ROOT / "protos"
# Not imported by our protos, but named in every error's details (google.rpc.Status.details).
ERROR_PROTOS = ("google/rpc/status.proto", "google/rpc/error_details.proto")


class DescriptorError(Exception):
    pass


def proto_files() -> list[str]:
    """Our protos, relative to ``protos/`` (as protoc names them)."""
    return sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))


def is_stale(path: Path) -> bool:
    if not path.is_file():
        return True
    built = path.stat().st_mtime
    return any((PROTO_ROOT / f).stat().st_mtime > built for f in proto_files())


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DescriptorError(f"the package {name} is not installed: run `make venv`")
    return Path(list(spec.submodule_search_locations)[0])


def _include_dirs() -> list[str]:
    """googleapis' protos come with its wheel; the well-known types with grpc_tools."""
    googleapis = _package_dir("google.api").parent.parent
    well_known = _package_dir("grpc_tools") / "_proto"
    return [str(PROTO_ROOT), str(googleapis), str(well_known)]


def build(path: Path) -> Path:
    """Write the descriptor set to ``path`` (atomically: a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    cmd = [sys.executable, "-m", "grpc_tools.protoc", *(f"-I{d}" for d in _include_dirs()),
           "--include_imports", f"--descriptor_set_out={tmp}", *proto_files(), *ERROR_PROTOS]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise DescriptorError(f"protoc could not build the descriptor set:\n{result.stderr}")
    os.replace(tmp, path)
    return path


def ensure(path: Path) -> Path:
    """``path``, rebuilt first if it is missing or older than a proto."""
    return build(path) if is_stale(path) else path


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m gateway.descriptors OUT.pb", file=sys.stderr)
        return 2
    build(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
