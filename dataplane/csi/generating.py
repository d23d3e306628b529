"""The CSI protobuf compiled with grpcio-tools: the one command that writes ``proto/csi_pb2*.py``.

The generated modules are committed (the image needs no compiler); a test regenerates them
into a temporary folder and compares (:func:`generate`). ``grpc_tools`` is a development
dependency, imported only here, only when called.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

#: The repository root: the proto is compiled with its path from here, so the generated
#: imports read ``from dataplane.csi.proto import csi_pb2``.
ROOT = Path(__file__).resolve().parents[2]
PROTO = Path("dataplane/csi/proto/csi.proto")
GENERATED = ("csi_pb2.py", "csi_pb2.pyi", "csi_pb2_grpc.py")


def generate(out: Path) -> list[Path]:
    """Compile ``csi.proto`` into ``out`` (the three generated files); returns their paths.

    Raises:
        RuntimeError: protoc failed.
    """
    from grpc_tools import protoc

    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto shipped with grpcio-tools
    with tempfile.TemporaryDirectory() as tmp:
        outs = [f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}"]
        code = protoc.main(["grpc_tools.protoc", f"-I{ROOT}", f"-I{include}", *outs, str(PROTO)])
        if code != 0:
            raise RuntimeError(f"protoc failed ({code}) on {PROTO}")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in GENERATED:
            target = out / name
            shutil.copyfile(Path(tmp) / PROTO.parent / name, target)
            written.append(target)
        return written


if __name__ == "__main__":
    for path in generate(ROOT / PROTO.parent):
        print(path, file=sys.stderr)
