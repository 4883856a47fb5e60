"""Triton client compatibility suite: what NVIDIA's tritonclient (gRPC and HTTP) sends and
reads, checked field by field against Quanta's inference service.

tritonclient itself is not installable here (no PyPI), so the suite makes the same calls:
gRPC through stubs generated at test time from proto/inference/{grpc_service,model_config}.proto
(declared with Triton's package, names and field numbers) by Debian's `python3 -m
grpc_tools.protoc`, and HTTP through http.client with the JSON and binary-tensor bodies and
headers that tritonclient.http builds (_utils._get_inference_request).

The vitest driver (tests/e2e/src/triton-compat.test.ts) starts the stack, deploys the models,
computes the expected outputs with onnxruntime and passes everything in QUANTA_TRITON_CASE, the
path of a JSON file (see `case` below).
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def _generate_stubs():
    out = tempfile.mkdtemp(prefix="quanta-triton-stubs-")
    proto = os.path.join(REPO_ROOT, "proto")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{proto}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            os.path.join(proto, "inference", "grpc_service.proto"),
            os.path.join(proto, "inference", "model_config.proto"),
        ],
        check=True,
    )
    sys.path.insert(0, out)
    return out


_generate_stubs()


@pytest.fixture(scope="session")
def case():
    path = os.environ.get("QUANTA_TRITON_CASE")
    if not path:
        pytest.skip("QUANTA_TRITON_CASE is not set: run this suite through tests/e2e/src/triton-compat.test.ts")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data["dir"] = os.path.dirname(path)
    return data


@pytest.fixture(scope="session")
def load(case):
    """Loads one of the driver's .npy files by name."""

    def _load(name):
        return np.load(os.path.join(case["dir"], name))

    return _load
