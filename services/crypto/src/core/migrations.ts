import type { Migration } from '@quanta/store';

/** Tables are prefixed: the registry may share the schema. */
export const CRYPTO_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'keys-versions-audit',
    sql: `
CREATE TABLE crypto_keys (
  tenant text NOT NULL,
  name text NOT NULL,
  type text NOT NULL,
  latest_version integer NOT NULL,
  min_decryption_version integer NOT NULL,
  min_encryption_version integer NOT NULL,
  deletion_allowed boolean NOT NULL,
  exportable boolean NOT NULL,
  auto_rotate_period_seconds integer NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (tenant, name)
);
CREATE TABLE crypto_key_versions (
  tenant text NOT NULL,
  name text NOT NULL,
  version integer NOT NULL,
  wrapped_material bytea NOT NULL,
  public_key bytea,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (tenant, name, version),
  FOREIGN KEY (tenant, name) REFERENCES crypto_keys (tenant, name) ON DELETE CASCADE
);
CREATE TABLE crypto_audit (
  id bigserial PRIMARY KEY,
  tenant text NOT NULL,
  subject text NOT NULL,
  key_name text NOT NULL,
  version integer NOT NULL,
  operation text NOT NULL,
  outcome text NOT NULL,
  error_code text,
  trace_id text,
  time timestamptz NOT NULL
);
CREATE INDEX crypto_audit_by_tenant ON crypto_audit (tenant, id);
CREATE INDEX crypto_audit_by_key ON crypto_audit (tenant, key_name, id);
`,
  },
];
