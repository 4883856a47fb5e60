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
  return loadSync(['grpc/reflection/v1/reflection.proto', 'grpc/reflection/v1alpha/reflection.proto'], { includeDirs: [root] });
}

let contracts: PackageDefinition | undefined;

/** Every contract of Quanta (proto/), decoded once per process. */
export function contractsPackageDefinition(): PackageDefinition {
  contracts ??= loadFileDescriptorSetFromBuffer(Buffer.from(descriptorSetBase64, 'base64'));
  return contracts;
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
export function addReflection(server: grpc.Server, services: readonly string[], extra: readonly PackageDefinition[] = []): void {
  const names = [...new Set([...services, 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'])].sort();
  const key = `${names.join(',')}|${extra.map(packageId).join(',')}`;
  let reflection = cache.get(key);
  if (reflection === undefined) {
    const definitions = Object.assign({}, ...extra, reflectionProtos(), contractsPackageDefinition()) as PackageDefinition;
    reflection = new ReflectionService(definitions, { services: names });
    cache.set(key, reflection);
  }
  reflection.addToServer(server);
}
