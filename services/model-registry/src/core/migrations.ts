import { auditTableSql } from '@quanta/store';
import type { Migration } from '@quanta/store';

/** Tables are prefixed `registry_`: the crypto service may share the schema. Every row is scoped by tenant. */
export const REGISTRY_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'models-versions-aliases-tags-lineage-blobs-deployments',
    sql: `
CREATE TABLE registry_models (
  tenant text NOT NULL,
  name text NOT NULL,
  description text NOT NULL,
  latest_version integer NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (tenant, name)
);
-- One row per stored plaintext (per tenant): versions with equal content share it.
CREATE TABLE registry_blobs (
  tenant text NOT NULL,
  sha256 text NOT NULL,
  size_bytes bigint NOT NULL,
  stored_bytes bigint NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (tenant, sha256)
);
CREATE TABLE registry_versions (
  tenant text NOT NULL,
  model text NOT NULL,
  version integer NOT NULL,
  description text NOT NULL,
  status text NOT NULL,
  status_reason text NOT NULL,
  sha256 text NOT NULL,
  size_bytes bigint NOT NULL,
  signature text,
  created_by text NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (tenant, model, version),
  FOREIGN KEY (tenant, model) REFERENCES registry_models (tenant, name) ON DELETE CASCADE,
  FOREIGN KEY (tenant, sha256) REFERENCES registry_blobs (tenant, sha256)
);
CREATE INDEX registry_versions_by_blob ON registry_versions (tenant, sha256);
CREATE TABLE registry_aliases (
  tenant text NOT NULL,
  model text NOT NULL,
  alias text NOT NULL,
  version integer NOT NULL,
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (tenant, model, alias),
  FOREIGN KEY (tenant, model, version) REFERENCES registry_versions (tenant, model, version) ON DELETE CASCADE
);
-- Tags of a model (version 0) or of one of its versions.
CREATE TABLE registry_tags (
  tenant text NOT NULL,
  model text NOT NULL,
  version integer NOT NULL,
  key text NOT NULL,
  value text NOT NULL,
  PRIMARY KEY (tenant, model, version, key),
  FOREIGN KEY (tenant, model) REFERENCES registry_models (tenant, name) ON DELETE CASCADE
);
CREATE INDEX registry_tags_by_key ON registry_tags (tenant, key, value);
CREATE TABLE registry_lineage (
  tenant text NOT NULL,
  model text NOT NULL,
  version integer NOT NULL,
  source_uri text,
  parent_model text,
  parent_version integer,
  transform text,
  transform_params text,
  PRIMARY KEY (tenant, model, version),
  FOREIGN KEY (tenant, model, version) REFERENCES registry_versions (tenant, model, version) ON DELETE CASCADE
);
-- A deployment keeps the version its reference resolved to, so that a watcher can be told
-- exactly when that changes (an alias moved, a newer version for a bare name).
CREATE TABLE registry_deployments (
  tenant text NOT NULL,
  name text NOT NULL,
  model text NOT NULL,
  model_ref text NOT NULL,
  spec text NOT NULL,
  resolved_version integer NOT NULL,
  generation bigint NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (tenant, name),
  FOREIGN KEY (tenant, model) REFERENCES registry_models (tenant, name)
);
CREATE INDEX registry_deployments_by_model ON registry_deployments (tenant, model);
`,
  },
  {
    version: 2,
    name: 'deployment-change-feed',
    sql: `
-- Every change WatchDeployments streams, numbered in commit order (writers hold an EXCLUSIVE lock
-- on the table from taking their number to commit), written in the transaction that makes the
-- change: replicas on one database read from here what they are notified of.
CREATE TABLE registry_deployment_changes (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant text NOT NULL,
  name text NOT NULL,
  type text NOT NULL CHECK (type IN ('upserted', 'deleted')),
  deployment text NOT NULL,
  reason text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
-- The highest seq removed by pruning: a reader whose position is below it has missed changes.
CREATE TABLE registry_change_feed (
  id integer PRIMARY KEY CHECK (id = 1),
  pruned_through bigint NOT NULL
);
INSERT INTO registry_change_feed (id, pruned_through) VALUES (1, 0);
`,
  },
  {
    version: 3,
    name: 'compression-reports',
    sql: `
-- The CompressionReport (protobuf JSON) of a version that CompressVersion made; NULL for uploads.
ALTER TABLE registry_versions ADD COLUMN compression text;
`,
  },
  {
    version: 4,
    name: 'blob-data-keys-and-audit',
    sql: `
-- The data key of a stored file as currently wrapped: RewrapDataKeys moves it to the key's latest
-- version here, never in the file, whose header keeps the key as first wrapped. NULL for a file
-- stored before these columns existed: its header's key is current until it is first looked at.
ALTER TABLE registry_blobs ADD COLUMN key_name text;
ALTER TABLE registry_blobs ADD COLUMN key_version integer;
ALTER TABLE registry_blobs ADD COLUMN wrapped_key bytea;
${auditTableSql('registry_audit')}
`,
  },
  {
    version: 5,
    name: 'deployment-traffic-targets',
    sql: `
-- The versions a deployment's canary and shadow references resolve to now (the references are in
-- the spec); NULL without a canary or a shadow.
ALTER TABLE registry_deployments ADD COLUMN canary_version integer;
ALTER TABLE registry_deployments ADD COLUMN shadow_version integer;
`,
  },
];
