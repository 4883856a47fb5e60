import { monitoring as pb } from '@quanta/contracts';
import type { Migration, Queryable } from '@quanta/store';

/**
 * Drift baselines, in the alert rules' store (PGlite or PostgreSQL) under component
 * `monitoring-drift` of schema_migrations, so that their migrations never collide with the alert
 * rules'. A baseline is kept as the JSON of its DriftBaseline (the contract's JSON mapping) without
 * its creation time, which has its own column, as alert rules are.
 */
export const DRIFT_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'drift-baselines',
    sql: `
CREATE TABLE monitoring_drift_baselines (
  tenant text NOT NULL,
  model text NOT NULL,
  version text NOT NULL,
  baseline jsonb NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (tenant, model, version)
);
`,
  },
];

export const DRIFT_COMPONENT = 'monitoring-drift';

/** A baseline as stored: its tenant, its fields and its creation time in ms. */
export interface StoredBaseline {
  readonly tenant: string;
  readonly baseline: pb.DriftBaseline;
  readonly createMs: number;
}

/** Where the drift engine writes baselines through (each call returns once the row is written). */
export interface BaselineStore {
  load(): Promise<StoredBaseline[]>;
  /** Inserts or replaces the baseline of (tenant, model, version). */
  put(b: StoredBaseline): Promise<void>;
  /** Returns false when no such row exists. */
  delete(tenant: string, model: string, version: string): Promise<boolean>;
}

interface Row {
  tenant: string;
  baseline: unknown;
  created_at: Date;
}

/** A BaselineStore over `@quanta/store`; migrate DRIFT_MIGRATIONS first. */
export function createBaselineStore(db: Queryable): BaselineStore {
  return {
    async load() {
      const rows = await db.query<Row>(
        'SELECT tenant, baseline, created_at FROM monitoring_drift_baselines ORDER BY tenant, model, version',
      );
      return rows.map((row) => ({
        tenant: row.tenant,
        baseline: pb.DriftBaseline.fromJSON(typeof row.baseline === 'string' ? JSON.parse(row.baseline) : row.baseline),
        createMs: new Date(row.created_at).getTime(),
      }));
    },
    async put(b) {
      const json = JSON.stringify(pb.DriftBaseline.toJSON({ ...b.baseline, createTime: undefined }));
      await db.query(
        `INSERT INTO monitoring_drift_baselines (tenant, model, version, baseline, created_at)
         VALUES ($1, $2, $3, $4::jsonb, $5)
         ON CONFLICT (tenant, model, version)
         DO UPDATE SET baseline = EXCLUDED.baseline, created_at = EXCLUDED.created_at`,
        [b.tenant, b.baseline.model, b.baseline.version, json, new Date(b.createMs)],
      );
    },
    async delete(tenant, model, version) {
      const rows = await db.query(
        'DELETE FROM monitoring_drift_baselines WHERE tenant = $1 AND model = $2 AND version = $3 RETURNING model',
        [tenant, model, version],
      );
      return rows.length > 0;
    },
  };
}
