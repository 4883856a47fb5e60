import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import { loadFileDescriptorSetFromBuffer, loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { descriptorSetBase64 } from '@quanta/contracts';

const require = createRequire(import.meta.url);

/** The reflection protos shipped with @grpc/reflection, so that the reflection service lists itself too. */
function reflectionProtos(): PackageDefinition {
  const root = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto');
  return loadSync(['grpc/reflection/v1/reflection.proto', 'grpc/reflection/v1alpha/reflection.proto'], {
    includeDirs: [root],
  });
}

let contracts: PackageDefinition | undefined;

/** Every contract of Quanta (proto/), decoded once per process. */
export function contractsPackageDefinition(): PackageDefinition {
  contracts ??= Object.assign(
    {},
    originalContractFiles(),
    loadFileDescriptorSetFromBuffer(Buffer.from(descriptorSetBase64, 'base64')),
  );
  return contracts;
}

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
  for (let pos = 0; pos < set.length;) {
    const tag = readVarint(set, pos);
    const length = readVarint(set, tag.next);
    if (tag.value !== (1 << 3) + 2) throw new Error(`unexpected field tag ${tag.value} in the descriptor set`);
    files.push(set.subarray(length.next, length.next + length.value));
    pos = length.next + length.value;
  }
  return files;
}

/**
 * The contracts' files exactly as buf built them. proto-loader's re-encoded descriptors drop each
 * file's `dependency` list and lose well-known imports such as google/protobuf/timestamp.proto, so
 * reflection clients (buf curl, grpcurl) could not resolve messages with Timestamp fields. Placed
 * first, these originals win over the re-encoded ones (reflection keeps the first file of a name).
 */
function originalContractFiles(): PackageDefinition {
  return {
    'quanta.contracts.originalFiles': {
      // The enum shape needs no serializers; reflection reads only fileDescriptorProtos.
      format: 'Protocol Buffer 3 EnumDescriptorProto',
      type: {},
      fileDescriptorProtos: filesOf(Buffer.from(descriptorSetBase64, 'base64')),
    },
  };
}

// Building a ReflectionService indexes and encodes every file (a few hundred ms for all of proto/):
// servers in one process (tests) that serve the same services share one.
const cache = new Map<string, ReflectionService>();
const packageIds = new WeakMap<PackageDefinition, number>();
let nextPackageId = 1;

function packageId(definition: PackageDefinition): number {
  let id = packageIds.get(definition);
  if (id === undefined) packageIds.set(definition, (id = nextPackageId++));
  return id;
}

/**
 * Registers `grpc.reflection.v1` and `v1alpha` ServerReflection, describing the services named
 * (those the server really serves) from the contracts and any extra package definitions.
 */
export function addReflection(
  server: grpc.Server,
  services: readonly string[],
  extra: readonly PackageDefinition[] = [],
): void {
  const names = [
    ...new Set([...services, 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection']),
  ].sort();
  const key = `${names.join(',')}|${extra.map(packageId).join(',')}`;
  let reflection = cache.get(key);
  if (reflection === undefined) {
    const definitions = Object.assign(
      {},
      contractsPackageDefinition(),
      ...extra,
      reflectionProtos(),
    ) as PackageDefinition;
    reflection = new ReflectionService(definitions, { services: names });
    cache.set(key, reflection);
  }
  reflection.addToServer(server);
}
