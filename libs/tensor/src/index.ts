// @quanta/tensor: KServe datatypes and tensors, and their conversions between KServe typed
// contents, raw little-endian bytes, the KServe REST JSON form and onnxruntime-node tensors.
export * from './core.js';
export { ORT_TYPE, ortTypedArray, tensorFromOrt, tensorToOrt } from './ort.js';
