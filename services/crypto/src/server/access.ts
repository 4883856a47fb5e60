import type { AccessTable } from '@quanta/service-kit';

const S = '/quanta.crypto.v1.CryptoService';

/**
 * The crypto service's access matrix, enforced by service-kit before each handler runs. Keys are
 * per tenant: another tenant's key answers NOT_FOUND. A new RPC must be added here, or the
 * service refuses to start.
 */
export const CRYPTO_ACCESS: AccessTable = {
  [`${S}/CreateKey`]: { scope: 'keys:admin', tenant: 'own' },
  [`${S}/ImportKey`]: { scope: 'keys:admin', tenant: 'own' },
  [`${S}/GetKey`]: { scope: 'keys:admin', tenant: 'own' },
  [`${S}/ListKeys`]: { scope: 'keys:admin', tenant: 'own' },
  [`${S}/RotateKey`]: { scope: 'keys:admin', tenant: 'own' },
  [`${S}/UpdateKeyConfig`]: { scope: 'keys:admin', tenant: 'own' },
  [`${S}/DeleteKey`]: { scope: 'keys:admin', tenant: 'own' },
  [`${S}/ExportKey`]: { scope: 'keys:admin', tenant: 'own' },
  [`${S}/ListAuditEvents`]: { scope: 'keys:admin', tenant: 'own' },
  [`${S}/Encrypt`]: { scope: 'keys:use', tenant: 'own' },
  [`${S}/Decrypt`]: { scope: 'keys:use', tenant: 'own' },
  [`${S}/Rewrap`]: { scope: 'keys:use', tenant: 'own' },
  [`${S}/BatchEncrypt`]: { scope: 'keys:use', tenant: 'own' },
  [`${S}/BatchDecrypt`]: { scope: 'keys:use', tenant: 'own' },
  [`${S}/BatchRewrap`]: { scope: 'keys:use', tenant: 'own' },
  [`${S}/EncryptStream`]: { scope: 'keys:use', tenant: 'own' },
  [`${S}/DecryptStream`]: { scope: 'keys:use', tenant: 'own' },
  [`${S}/GenerateDataKey`]: { scope: 'keys:use', tenant: 'own' },
  [`${S}/UnwrapDataKey`]: { scope: 'keys:use', tenant: 'own' },
  [`${S}/Sign`]: { scope: 'keys:use', tenant: 'own' },
  [`${S}/Verify`]: { scope: 'keys:use', tenant: 'own' },
  // Tokens name their tenant in the request: only the platform's `admin` issues or revokes them.
  [`${S}/IssueToken`]: { scope: 'admin', tenant: 'any' },
  [`${S}/RevokeToken`]: { scope: 'admin', tenant: 'any' },
  [`${S}/RotateSigningKey`]: { scope: 'admin', tenant: 'none' },
  // What every service needs to check tokens: public keys, and revocations that name no subject.
  [`${S}/GetJwks`]: { scope: 'public', tenant: 'none' },
  [`${S}/GetRevocations`]: { scope: 'public', tenant: 'none' },
};
