import type { PackageDefinition } from '@grpc/proto-loader';
import { descriptorSetBase64 } from '@quanta/contracts';

function readVarint(buf: Buffer, at: number): { value: number; next: number } {
  let value = 0;
  let shift = 0;
  let pos = at;
  for (;;) {
    const byte = buf[pos++];
    if (byte === undefined) throw new Error('descriptor set is truncated');
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return { value, next: pos };
    shift += 7;
  }
}

/** The FileDescriptorProto bytes of a FileDescriptorSet (`repeated FileDescriptorProto file = 1`). */
function filesOf(set: Buffer): Buffer[] {
  const files: Buffer[] = [];
  for (let pos = 0; pos < set.length; ) {
    const tag = readVarint(set, pos);
    const length = readVarint(set, tag.next);
    if (tag.value !== (1 << 3) + 2) throw new Error(`unexpected field tag ${tag.value} in the descriptor set`);
    files.push(set.subarray(length.next, length.next + length.value));
    pos = length.next + length.value;
  }
  return files;
}

/**
 * The contracts' files exactly as buf built them, for server reflection. proto-loader's re-encoded
 * descriptors drop each file's `dependency` list and lose google/protobuf/timestamp.proto, so
 * reflection clients (buf curl, grpcurl) cannot resolve CryptoService's Timestamp fields. Passed
 * first, these originals win over the re-encoded ones (reflection keeps the first file of a name).
 */
export function originalContractFiles(): PackageDefinition {
  return {
    'quanta.contracts.originalFiles': {
      // The enum shape needs no serializers; reflection reads only fileDescriptorProtos.
      format: 'Protocol Buffer 3 EnumDescriptorProto',
      type: {},
      fileDescriptorProtos: filesOf(Buffer.from(descriptorSetBase64, 'base64')),
    },
  };
}
