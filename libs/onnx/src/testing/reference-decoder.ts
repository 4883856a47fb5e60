import protobuf from 'protobufjs';

// A second reader of ONNX files for tests: protobufjs decoding the whole ModelProto from a schema
// copied from onnx/onnx.proto3 (the fields tests compare), independent of our streaming scanner.
const SCHEMA = `
syntax = "proto3";
package onnx;
message StringStringEntryProto { string key = 1; string value = 2; }
message OperatorSetIdProto { string domain = 1; int64 version = 2; }
message TensorProto {
  repeated int64 dims = 1; int32 data_type = 2; repeated float float_data = 4; repeated int32 int32_data = 5;
  repeated bytes string_data = 6; repeated int64 int64_data = 7; string name = 8; bytes raw_data = 9;
  repeated double double_data = 10; repeated uint64 uint64_data = 11;
  repeated StringStringEntryProto external_data = 13; int32 data_location = 14;
}
message AttributeProto { string name = 1; TensorProto t = 5; int32 type = 20; }
message NodeProto {
  repeated string input = 1; repeated string output = 2; string name = 3; string op_type = 4;
  repeated AttributeProto attribute = 5; string domain = 7;
}
message TensorShapeProto {
  message Dimension { oneof value { int64 dim_value = 1; string dim_param = 2; } }
  repeated Dimension dim = 1;
}
message TypeProto {
  message Tensor { int32 elem_type = 1; TensorShapeProto shape = 2; }
  oneof value { Tensor tensor_type = 1; }
}
message ValueInfoProto { string name = 1; TypeProto type = 2; }
message GraphProto {
  repeated NodeProto node = 1; string name = 2; repeated TensorProto initializer = 5;
  repeated ValueInfoProto input = 11; repeated ValueInfoProto output = 12;
}
message ModelProto {
  int64 ir_version = 1; repeated OperatorSetIdProto opset_import = 8; string producer_name = 2;
  string producer_version = 3; string domain = 4; int64 model_version = 5; GraphProto graph = 7;
  repeated StringStringEntryProto metadata_props = 14;
}
`;

const ModelProto = protobuf.parse(SCHEMA).root.lookupType('onnx.ModelProto');

export interface RefTensor {
  name: string;
  dims: number[];
  dataType: number;
  rawBytes: number;
  floatData: number[];
}
export interface RefModel {
  irVersion: number;
  opsetImports: { domain: string; version: number }[];
  graphName: string;
  inputs: string[];
  outputs: string[];
  initializers: RefTensor[];
  constants: RefTensor[];
  nodes: { opType: string; domain: string }[];
}

interface DecodedTensor {
  name: string;
  dims: number[];
  dataType: number;
  rawData: Uint8Array;
  floatData: number[];
}
interface Decoded {
  irVersion: number;
  opsetImport: { domain: string; version: number }[];
  graph?: {
    name: string;
    input: { name: string }[];
    output: { name: string }[];
    initializer: DecodedTensor[];
    node: { opType: string; domain: string; attribute: { name: string; t?: DecodedTensor }[] }[];
  };
}

const tensor = (t: DecodedTensor): RefTensor => ({
  name: t.name,
  dims: t.dims,
  dataType: t.dataType,
  rawBytes: t.rawData.length,
  floatData: t.floatData,
});

export function decodeReference(bytes: Uint8Array): RefModel {
  const d = ModelProto.toObject(ModelProto.decode(bytes), { longs: Number, defaults: true, arrays: true }) as Decoded;
  const g = d.graph;
  if (g === undefined) throw new Error('no graph');
  return {
    irVersion: d.irVersion,
    opsetImports: d.opsetImport,
    graphName: g.name,
    inputs: g.input.map((v) => v.name),
    outputs: g.output.map((v) => v.name),
    initializers: g.initializer.map(tensor),
    constants: g.node
      .filter((n) => n.opType === 'Constant' && n.domain === '')
      .flatMap((n) => n.attribute.flatMap((a) => (a.t ? [tensor(a.t)] : []))),
    nodes: g.node.map((n) => ({ opType: n.opType, domain: n.domain })),
  };
}
