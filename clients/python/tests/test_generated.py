"""The generated modules import as a package, and beside other definitions of the same protocols."""

import importlib
import os
import pkgutil
import subprocess
import sys

import quanta_client.gen

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_generated_module_imports_from_the_package():
    names = [m.name for m in pkgutil.walk_packages(quanta_client.gen.__path__, "quanta_client.gen.")]
    for name in names:
        importlib.import_module(name)
    assert {
        "quanta_client.gen.quanta.registry.v1.registry_pb2_grpc",
        "quanta_client.gen.quanta.crypto.v1.crypto_pb2_grpc",
        "quanta_client.gen.quanta.monitoring.v1.monitoring_pb2_grpc",
        "quanta_client.gen.inference.grpc_service_pb2_grpc",
        "quanta_client.gen.grpc.health.v1.health_pb2_grpc",
    } <= set(names)


def test_tritons_and_grpcs_own_definitions_of_inference_and_health_can_be_loaded_beside_it():
    # What tritonclient and grpcio-health-checking register in protobuf's default pool, before and
    # after quanta_client is imported: the same message names, from files of other names.
    register = (
        "from google.protobuf import descriptor_pb2, descriptor_pool\n"
        "for name, package, message in (('grpc_service.proto', 'inference', 'ModelInferRequest'),\n"
        "                               ('grpc_health/v1/health.proto', 'grpc.health.v1', 'HealthCheckRequest')):\n"
        "    f = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax='proto3')\n"
        "    f.message_type.add(name=message)\n"
        "    descriptor_pool.Default().AddSerializedFile(f.SerializeToString())\n"
    )
    use = (
        "import quanta_client\n"
        "from quanta_client.gen.inference import grpc_service_pb2 as pb\n"
        "from quanta_client.gen.grpc.health.v1 import health_pb2\n"
        "request = pb.ModelInferRequest(model_name='m').SerializeToString()\n"
        "assert pb.ModelInferRequest.FromString(request).model_name == 'm'\n"
        "assert health_pb2.HealthCheckRequest(service='s').service == 's'\n"
    )
    for script in (register + use, use + register):
        done = subprocess.run([sys.executable, "-c", script], cwd=HERE, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
