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

/**
 * Registers `grpc.reflection.v1` and `v1alpha` ServerReflection, describing the services named
 * (those the server really serves) from the contracts and any extra package definitions.
 */
export function addReflection(server: grpc.Server, services: readonly string[], extra: readonly PackageDefinition[] = []): void {
  const definitions: PackageDefinition = Object.assign({}, ...extra, reflectionProtos(), contractsPackageDefinition()) as PackageDefinition;
  const names = [...services, 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'];
  new ReflectionService(definitions, { services: names }).addToServer(server);
}
