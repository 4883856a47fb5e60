import type { TokenIssuer } from '@quanta/auth';
import type { crypto as pb } from '@quanta/contracts';
import { unary } from '@quanta/service-kit';
import { safeNumber } from './convert.js';

type TokenHandlers = Pick<pb.CryptoServiceServer, 'issueToken' | 'getJwks'>;

const DEFAULT_TTL_SECONDS = 3600;

/** Access tokens: issuing needs `admin`; the public keys are open to everyone. */
export function createTokenHandlers(issuer: TokenIssuer): TokenHandlers {
  return {
    issueToken: unary<pb.IssueTokenRequest, pb.IssueTokenResponse>({ scope: 'admin' }, async (req, ctx) => {
      const ttl = safeNumber(req.ttlSeconds, 'ttl_seconds');
      const issued = await issuer.mint({
        tenant: req.tenant,
        subject: req.subject,
        scopes: req.scopes,
        ttlSeconds: ttl === 0 ? DEFAULT_TTL_SECONDS : ttl,
      });
      // Who got which powers, never the token itself.
      ctx.logger.info(
        { tenant: req.tenant, subject: req.subject, scopes: req.scopes, kid: issued.kid, by: ctx.principal?.subject },
        'token issued',
      );
      return { token: issued.token, expireTime: issued.expiresAt, keyId: issued.kid };
    }),

    getJwks: unary<pb.GetJwksRequest, pb.GetJwksResponse>({ scope: 'public' }, async () => {
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
  };
}

