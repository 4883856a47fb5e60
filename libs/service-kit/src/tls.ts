import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';

export interface ServerTlsOptions {
  /** PEM certificate chain of this server. */
  readonly certFile: string;
  /** PEM private key of this server. */
  readonly keyFile: string;
  /** PEM CA bundle that client certificates must chain to (mTLS). */
  readonly caFile?: string;
  /** Refuse clients without a certificate signed by `caFile` (mTLS). */
  readonly requireClientCert?: boolean;
}

export interface ClientTlsOptions {
  /** PEM CA bundle the server certificate must chain to; the system roots when omitted. */
  readonly caFile?: string;
  /** Client certificate and key, for mTLS. */
  readonly certFile?: string;
  readonly keyFile?: string;
  /** Expected server name when it differs from the address host (e.g. a test certificate). */
  readonly serverName?: string;
}

async function readPem(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error: unknown) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`cannot read the TLS ${what} file "${path}": ${reason}`, { cause: error });
  }
}

/** TLS server credentials from files, or plaintext when `tls` is undefined. */
export async function serverCredentials(tls: ServerTlsOptions | undefined): Promise<grpc.ServerCredentials> {
  if (tls === undefined) return grpc.ServerCredentials.createInsecure();
  if (tls.requireClientCert === true && tls.caFile === undefined) {
    throw new Error('TLS: requireClientCert needs caFile, the CA that client certificates are checked against');
  }
  const [cert, key, ca] = await Promise.all([
    readPem(tls.certFile, 'certificate'),
    readPem(tls.keyFile, 'private key'),
    tls.caFile === undefined ? undefined : readPem(tls.caFile, 'CA'),
  ]);
  return grpc.ServerCredentials.createSsl(
    ca ?? null,
    [{ cert_chain: cert, private_key: key }],
    tls.requireClientCert === true,
  );
}

/** TLS channel credentials (read synchronously: clients are made in constructors and factories). */
export function channelCredentials(tls: ClientTlsOptions | undefined): grpc.ChannelCredentials {
  if (tls === undefined) return grpc.credentials.createInsecure();
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
    throw new Error('TLS: a client certificate needs both certFile and keyFile');
  }
  const read = (path: string | undefined, what: string): Buffer | null => {
    if (path === undefined) return null;
    try {
      return readFileSync(path);
    } catch (error: unknown) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(`cannot read the TLS ${what} file "${path}": ${reason}`, { cause: error });
    }
  };
  return grpc.credentials.createSsl(
    read(tls.caFile, 'CA'),
    read(tls.keyFile, 'private key'),
    read(tls.certFile, 'certificate'),
  );
}
