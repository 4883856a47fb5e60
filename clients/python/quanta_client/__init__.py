"""quanta_client: a Python client of Quanta (model registry, inference, crypto, monitoring).

    from quanta_client import Client
    client = Client()                       # QUANTA_* variables, as the quanta CLI reads them
    client.push_model("cnn.onnx", "cifar")
    client.deploy("cifar", "cifar")
    outputs = client.infer("cifar", {"input": images})   # {name: numpy.ndarray}
    client.batch_infer("cifar", "images/", "scores.npz")  # a dataset, resumable (quanta_client.batch)

The generated protobuf and gRPC modules are under ``quanta_client.gen`` (for example
``quanta_client.gen.quanta.registry.v1.registry_pb2``).
"""

from .batch import BatchFailed, BatchProgress, BatchSummary, batch_infer
from .client import KEY_TYPES, UPLOAD_CHUNK_BYTES, Client
from .errors import QuantaError
from .settings import Tls
from .tensors import DATATYPES, datatype_of, from_raw, to_raw

__all__ = [
    "Client",
    "QuantaError",
    "batch_infer",
    "BatchFailed",
    "BatchProgress",
    "BatchSummary",
    "Tls",
    "KEY_TYPES",
    "UPLOAD_CHUNK_BYTES",
    "DATATYPES",
    "datatype_of",
    "from_raw",
    "to_raw",
]
__version__ = "0.1.0"
