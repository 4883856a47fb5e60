// Test support: the EchoService of echo.proto, loaded with proto-loader (so reflection can describe it).
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import { loadSync } from '@grpc/proto-loader';

export interface EchoRequest {
  text: string;
  count: number;
  size: number;
  hold: boolean;
}
export interface EchoReply {
  text: string;
  index: number;
  payload: Buffer;
  tenant: string;
}

export const echoPackage: PackageDefinition = loadSync(fileURLToPath(new URL('./echo.proto', import.meta.url)), {
  defaults: true,
  longs: Number,
});

interface EchoClientCtor {
  new (address: string, credentials: grpc.ChannelCredentials, options?: Partial<grpc.ClientOptions>): grpc.Client;
  service: grpc.ServiceDefinition;
}

const loaded = grpc.loadPackageDefinition(echoPackage) as unknown as {
  quanta: { kittest: { v1: { EchoService: EchoClientCtor } } };
};

export const EchoClient = loaded.quanta.kittest.v1.EchoService;
export const echoService: grpc.ServiceDefinition = EchoClient.service;
