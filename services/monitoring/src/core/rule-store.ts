import { monitoring as pb } from '@quanta/contracts';
import { auditTableSql } from '@quanta/store';
import type { Migration, Queryable } from '@quanta/store';

/**
 * Tables are prefixed (`monitoring_`): with QUANTA_DATABASE_URL every service may share one
 * schema. Component `monitoring` in schema_migrations.
 *
 * A rule is kept as the JSON of its fields (the contract's JSON mapping: enum names, durations as
 * `{seconds, nanos}`), without its times, which have their own columns. JSON rather than the
 * encoded message: it can be read and queried in psql (`rule->>'model'`), and a field added to
 * AlertRule later loads from old rows with its default.
 */
export const MONITORING_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'alert-rules',
    sql: `
CREATE TABLE monitoring_alert_rules (
  tenant text NOT NULL,
  name text NOT NULL,
  rule jsonb NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (tenant, name)
);
`,
  },
  {
    version: 2,
    name: 'audit',
    // Who changed which alert rule, when, with what outcome (MONITORING_AUDIT_TABLE).
    sql: auditTableSql('monitoring_audit'),
  },
];

/** A rule as stored: its tenant, its fields (times left out) and its times in ms. */
export interface StoredRule {
  readonly tenant: string;
  readonly rule: pb.AlertRule;
  readonly createMs: number;
  readonly updateMs: number;
}

/** Where the alert engine writes its rules through (each call returns once the row is written). */
export interface RuleStore {
  /** Every tenant's rules. */
  load(): Promise<StoredRule[]>;
  /** Rejects with a unique violation (SQLSTATE 23505) when the rule exists. */
  insert(r: StoredRule): Promise<void>;
  /** Returns false when no such row exists. */
  update(r: StoredRule): Promise<boolean>;
  /** Returns false when no such row exists. */
  delete(tenant: string, name: string): Promise<boolean>;
}

interface Row {
  tenant: string;
  rule: unknown;
  created_at: Date;
  updated_at: Date;
}

const fieldsOf = (rule: pb.AlertRule): string =>
  JSON.stringify(pb.AlertRule.toJSON({ ...rule, createTime: undefined, updateTime: undefined }));

/** A RuleStore over `@quanta/store` (embedded PGlite or PostgreSQL); migrate first. */
export function createRuleStore(db: Queryable): RuleStore {
  return {
    async load() {
      const rows = await db.query<Row>(
        'SELECT tenant, rule, created_at, updated_at FROM monitoring_alert_rules ORDER BY tenant, name',
      );
      return rows.map((row) => ({
        tenant: row.tenant,
        // jsonb comes back parsed on both backends; a text column would not.
        rule: pb.AlertRule.fromJSON(typeof row.rule === 'string' ? JSON.parse(row.rule) : row.rule),
        createMs: new Date(row.created_at).getTime(),
        updateMs: new Date(row.updated_at).getTime(),
      }));
    },
    async insert(r) {
      await db.query(
        `INSERT INTO monitoring_alert_rules (tenant, name, rule, created_at, updated_at)
         VALUES ($1, $2, $3::jsonb, $4, $5)`,
        [r.tenant, r.rule.name, fieldsOf(r.rule), new Date(r.createMs), new Date(r.updateMs)],
      );
    },
    async update(r) {
      const rows = await db.query(
        `UPDATE monitoring_alert_rules SET rule = $3::jsonb, updated_at = $4
         WHERE tenant = $1 AND name = $2 RETURNING name`,
        [r.tenant, r.rule.name, fieldsOf(r.rule), new Date(r.updateMs)],
      );
      return rows.length > 0;
    },
    async delete(tenant, name) {
      const rows = await db.query('DELETE FROM monitoring_alert_rules WHERE tenant = $1 AND name = $2 RETURNING name', [
        tenant,
        name,
      ]);
      return rows.length > 0;
    },
  };
}
