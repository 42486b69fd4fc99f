"""Copy google/api/*.proto from the googleapis-common-protos wheel into build/buf-deps.

buf cannot fetch the googleapis module from its registry without network; buf.yaml declares
build/buf-deps as a second (gitignored) module of the workspace instead.
"""

from __future__ import annotations

import pathlib
import shutil
import sys

import google.api

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET = ROOT / "build" / "buf-deps"


def prepare(target: pathlib.Path = TARGET) -> pathlib.Path:
    source = pathlib.Path(google.api.__path__[0])
    dest = target / "google" / "api"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for proto in sorted(source.glob("*.proto")):
        shutil.copy2(proto, dest / proto.name)
    return target


if __name__ == "__main__":
    print(prepare(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET))
