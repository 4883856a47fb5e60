import type { crypto as pb } from '@quanta/contracts';
import { audited, invalidArgument, unary } from '@quanta/service-kit';
import type { Auditor } from '@quanta/service-kit';
import { safeNumber } from './convert.js';
import type { StoredRevocation } from './revocation-store.js';
import type { RevokeTarget, TokenAdmin } from './token-admin.js';
import type { TokenIssuer } from '@quanta/auth';

type TokenHandlers = Pick<
  pb.CryptoServiceServer,
  'issueToken' | 'getJwks' | 'revokeToken' | 'getRevocations' | 'rotateSigningKey'
>;

const DEFAULT_TTL_SECONDS = 3600;

function toProto(r: StoredRevocation): pb.Revocation {
  return {
    jti: r.jti ?? '',
    subjectDigest: r.subjectDigest ?? '',
    issuedBefore: r.issuedBeforeMs === undefined ? undefined : new Date(r.issuedBeforeMs),
    expireTime: new Date(r.expiresAtMs),
    revokeTime: new Date(r.revokedAtMs),
  };
}

function targetOf(req: pb.RevokeTokenRequest): RevokeTarget {
  const target = req.target;
  switch (target?.$case) {
    case 'token':
      return { kind: 'token', token: target.value };
    case 'jti':
      return { kind: 'jti', jti: target.value };
    case 'subject':
      return {
        kind: 'subject',
        tenant: req.tenant,
        subject: target.value,
        ...(req.issuedBefore === undefined ? {} : { issuedBeforeMs: req.issuedBefore.getTime() }),
      };
    default:
      throw invalidArgument('set one of token, jti or subject (with tenant)');
  }
}

/** What an audit entry of a token change names: never the token itself. */
function revokedOf(req: pb.RevokeTokenRequest): string {
  switch (req.target?.$case) {
    case 'jti':
      return `token/jti/${req.target.value}`;
    case 'subject':
      return `token/${req.tenant}/${req.target.value}`;
    case 'token':
      return 'token/(by value)';
    default:
      return '';
  }
}

/** Access tokens. Each method's scope is in access.ts: the public keys and revocations are open to all. */
export function createTokenHandlers(issuer: TokenIssuer, admin: TokenAdmin, audit: Auditor): TokenHandlers {
  return {
    issueToken: unary<pb.IssueTokenRequest, pb.IssueTokenResponse>(
      audited(
        audit,
        (req) => `token/${req.tenant}/${req.subject}`,
        async (req, ctx) => {
          const ttl = safeNumber(req.ttlSeconds, 'ttl_seconds');
          const issued = await admin.issue({
            tenant: req.tenant,
            subject: req.subject,
            scopes: req.scopes,
            ttlSeconds: ttl === 0 ? Math.min(DEFAULT_TTL_SECONDS, issuer.maxTtlSeconds) : ttl,
          });
          // Who got which powers, never the token itself.
          ctx.logger.info(
            {
              tenant: req.tenant,
              subject: req.subject,
              scopes: req.scopes,
              kid: issued.kid,
              by: ctx.principal?.subject,
            },
            'token issued',
          );
          return { token: issued.token, expireTime: issued.expiresAt, keyId: issued.kid };
        },
      ),
    ),

    getJwks: unary<pb.GetJwksRequest, pb.GetJwksResponse>(async () => {
      const { keys } = await issuer.jwks();
      return {
        keys: keys.map((k) => ({
          kty: k.kty ?? '',
          crv: k.crv ?? '',
          x: k.x ?? '',
          kid: k.kid ?? '',
          alg: k.alg ?? '',
          use: k.use ?? '',
        })),
      };
    }),

    revokeToken: unary<pb.RevokeTokenRequest, pb.RevokeTokenResponse>(
      audited(audit, revokedOf, async (req) => ({
        revocation: toProto(await admin.revoke(targetOf(req))),
      })),
    ),

    getRevocations: unary<pb.GetRevocationsRequest, pb.GetRevocationsResponse>(async (req) => {
      const list = await admin.revocations(req.knownVersion);
      return { version: list.version, unchanged: list.unchanged, revocations: list.revocations.map(toProto) };
    }),

    rotateSigningKey: unary<pb.RotateSigningKeyRequest, pb.RotateSigningKeyResponse>(
      audited(
        audit,
        () => 'signing-key',
        async () => {
          const rotation = await admin.rotateSigningKey();
          return {
            keyId: rotation.kid,
            previousKeyId: rotation.previousKid,
            previousKeyRetireTime: rotation.previousRetiresAt,
          };
        },
      ),
    ),
  };
}
