import { registry as pb } from '@quanta/contracts';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '@quanta/service-kit';
import type { Queryable } from '@quanta/store';
import type { ModelRef } from './names.js';
import { checkProtection } from './deployment-protection.js';
import { formatRef, parseRef } from './names.js';
import { decodePageToken, encodePageToken } from './page-token.js';
import { getVersion, resolveVersion } from './versions-repo.js';

interface DeploymentRow {
  tenant: string;
  name: string;
  model: string;
  model_ref: string;
  spec: string;
  resolved_version: number;
  /** The versions the canary's and the shadow's references resolve to; null without one. */
  canary_version: number | null;
  shadow_version: number | null;
  generation: bigint;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS =
  'tenant, name, model, model_ref, spec, resolved_version, canary_version, shadow_version, generation, created_at, ' +
  'updated_at';

async function toDeployment(q: Queryable, row: DeploymentRow): Promise<pb.Deployment> {
  return {
    name: row.name,
    tenant: row.tenant,
    spec: pb.DeploymentSpec.fromJSON(JSON.parse(row.spec)),
    resolvedVersion: await getVersion(q, row.tenant, row.model, row.resolved_version),
    generation: BigInt(row.generation),
    createTime: row.created_at,
    updateTime: row.updated_at,
    ...(row.canary_version === null
      ? {}
      : { canaryVersion: await getVersion(q, row.tenant, row.model, row.canary_version) }),
    ...(row.shadow_version === null
      ? {}
      : { shadowVersion: await getVersion(q, row.tenant, row.model, row.shadow_version) }),
  };
}

async function requireRow(q: Queryable, tenant: string, name: string, forUpdate = false): Promise<DeploymentRow> {
  const [row] = await q.query<DeploymentRow>(
    `SELECT ${COLUMNS} FROM registry_deployments WHERE tenant = $1 AND name = $2${forUpdate ? ' FOR UPDATE' : ''}`,
    [tenant, name],
  );
  if (row === undefined) throw notFound(`deployment "${name}" not found`);
  return row;
}

export async function getDeployment(q: Queryable, tenant: string, name: string): Promise<pb.Deployment> {
  return toDeployment(q, await requireRow(q, tenant, name));
}

/**
 * Refuses preferred batch sizes the batcher could never form (0, above max_batch_size, or with
 * batching off), duplicates, and both ways of choosing them at once.
 */
export function checkPreferredBatchSizes(spec: pb.DeploymentSpec): void {
  const sizes = spec.preferredBatchSizes;
  if (sizes.length > 0 && spec.tunePreferredBatchSize) {
    throw invalidArgument(
      'spec.preferred_batch_sizes and spec.tune_preferred_batch_size are both set: drop ' +
        'tune_preferred_batch_size to use the listed sizes, ' +
        'or drop preferred_batch_sizes to have inference measure the best one on live traffic',
    );
  }
  if (spec.maxBatchSize <= 1) {
    const field =
      sizes.length > 0
        ? 'spec.preferred_batch_sizes'
        : spec.tunePreferredBatchSize
          ? 'spec.tune_preferred_batch_size'
          : undefined;
    if (field !== undefined)
      throw invalidArgument(
        `${field} is set but batching is off (spec.max_batch_size is ${spec.maxBatchSize}; it must be above 1)`,
      );
    return;
  }
  const seen = new Map<number, number>();
  for (const [i, size] of sizes.entries()) {
    if (size < 1) throw invalidArgument(`spec.preferred_batch_sizes[${i}] is ${size}: a batch size is at least 1`);
    if (size > spec.maxBatchSize)
      throw invalidArgument(
        `spec.preferred_batch_sizes[${i}] is ${size}, above spec.max_batch_size ${spec.maxBatchSize}`,
      );
    const first = seen.get(size);
    if (first !== undefined)
      throw invalidArgument(`spec.preferred_batch_sizes[${i}] repeats ${size} (already at [${first}])`);
    seen.set(size, i);
  }
}

/** The READY version `ref` resolves to now; `field` names it in errors. */
async function resolveReady(q: Queryable, tenant: string, ref: ModelRef, text: string, field: string): Promise<number> {
  const version = await resolveVersion(q, tenant, ref);
  const resolved = await getVersion(q, tenant, ref.model, version);
  if (resolved.status !== pb.VersionStatus.VERSION_STATUS_READY) {
    throw failedPrecondition(`${field} "${text}" resolves to version ${version}, which is not READY`);
  }
  return version;
}

/**
 * Checks a canary's or a shadow's target: a reference of the primary's model and a percentage in
 * range (a shadow's 0 means 100). Returns the parsed reference, or undefined without a target.
 */
function checkTarget(
  target: pb.TrafficTarget | undefined,
  field: 'spec.canary' | 'spec.shadow',
  model: string,
): ModelRef | undefined {
  if (target === undefined) return undefined;
  if (target.modelRef === '') throw invalidArgument(`${field}.model_ref is empty: name a version, e.g. ${model}:4`);
  const ref = parseRef(target.modelRef, `${field}.model_ref`);
  if (ref.model !== model)
    throw invalidArgument(
      `${field}.model_ref "${target.modelRef}" names model "${ref.model}", not "${model}" of spec.model_ref: ` +
        'a deployment splits traffic between versions of one model',
    );
  const [low, high] = field === 'spec.canary' ? [1, 99] : [0, 100];
  if (!Number.isInteger(target.percent) || target.percent < low || target.percent > high)
    throw invalidArgument(`${field}.percent is ${target.percent}; it must be ${low} to ${high}`);
  return ref;
}

interface ResolvedSpec {
  spec: pb.DeploymentSpec;
  model: string;
  version: number;
  canary: number | null;
  shadow: number | null;
}

/** The spec with its references normalised, and the READY versions they resolve to now. */
async function resolveSpec(q: Queryable, tenant: string, spec: pb.DeploymentSpec): Promise<ResolvedSpec> {
  checkPreferredBatchSizes(spec);
  checkProtection(spec);
  const ref = parseRef(spec.modelRef, 'spec.model_ref');
  const canaryRef = checkTarget(spec.canary, 'spec.canary', ref.model);
  const shadowRef = checkTarget(spec.shadow, 'spec.shadow', ref.model);
  if (shadowRef !== undefined && spec.sequenceState.length > 0)
    throw invalidArgument(
      'spec.shadow is set on a stateful model (spec.sequence_state): a copy of a sequence would need its own ' +
        'state; drop one of them',
    );
  const version = await resolveReady(q, tenant, ref, spec.modelRef, 'spec.model_ref');
  for (const [i, m] of spec.sequenceState.entries()) {
    if (m.inputName === '' || m.outputName === '')
      throw invalidArgument(`spec.sequence_state[${i}] needs both input_name and output_name`);
  }
  const canary =
    canaryRef === undefined
      ? null
      : await resolveReady(q, tenant, canaryRef, spec.canary?.modelRef ?? '', 'spec.canary.model_ref');
  const shadow =
    shadowRef === undefined
      ? null
      : await resolveReady(q, tenant, shadowRef, spec.shadow?.modelRef ?? '', 'spec.shadow.model_ref');
  const normalised: pb.DeploymentSpec = {
    ...spec,
    modelRef: formatRef(ref),
    ...(canaryRef === undefined || spec.canary === undefined
      ? {}
      : { canary: { ...spec.canary, modelRef: formatRef(canaryRef) } }),
    ...(shadowRef === undefined || spec.shadow === undefined
      ? {}
      : { shadow: { ...spec.shadow, modelRef: formatRef(shadowRef) } }),
  };
  return { spec: normalised, model: ref.model, version, canary, shadow };
}

export async function createDeployment(
  q: Queryable,
  tenant: string,
  name: string,
  spec: pb.DeploymentSpec,
  now: Date,
): Promise<pb.Deployment> {
  const r = await resolveSpec(q, tenant, spec);
  const inserted = await q.query(
    `INSERT INTO registry_deployments (tenant, name, model, model_ref, spec, resolved_version, canary_version,
       shadow_version, generation, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $8, $9, 1, $7, $7) ON CONFLICT (tenant, name) DO NOTHING RETURNING name`,
    [
      tenant,
      name,
      r.model,
      r.spec.modelRef,
      JSON.stringify(pb.DeploymentSpec.toJSON(r.spec)),
      r.version,
      now,
      r.canary,
      r.shadow,
    ],
  );
  if (inserted.length === 0) throw alreadyExists(`deployment "${name}" already exists`);
  return getDeployment(q, tenant, name);
}

export async function updateDeployment(
  q: Queryable,
  tenant: string,
  name: string,
  spec: pb.DeploymentSpec,
  expectedGeneration: bigint,
  now: Date,
): Promise<pb.Deployment> {
  const row = await requireRow(q, tenant, name, true);
  if (expectedGeneration !== 0n && BigInt(row.generation) !== expectedGeneration) {
    throw failedPrecondition(
      `deployment "${name}" is at generation ${row.generation}, not ${expectedGeneration}: read it again and retry`,
    );
  }
  const r = await resolveSpec(q, tenant, spec);
  await q.query(
    `UPDATE registry_deployments
     SET model = $3, model_ref = $4, spec = $5, resolved_version = $6, canary_version = $8, shadow_version = $9,
       generation = generation + 1, updated_at = $7
     WHERE tenant = $1 AND name = $2`,
    [
      tenant,
      name,
      r.model,
      r.spec.modelRef,
      JSON.stringify(pb.DeploymentSpec.toJSON(r.spec)),
      r.version,
      now,
      r.canary,
      r.shadow,
    ],
  );
  return getDeployment(q, tenant, name);
}

/** Returns the deployment's last state. */
export async function deleteDeployment(q: Queryable, tenant: string, name: string): Promise<pb.Deployment> {
  const last = await toDeployment(q, await requireRow(q, tenant, name, true));
  await q.query('DELETE FROM registry_deployments WHERE tenant = $1 AND name = $2', [tenant, name]);
  return last;
}

export async function listDeployments(
  q: Queryable,
  tenant: string,
  model: string,
  page: { size: number; token: string },
): Promise<{ deployments: pb.Deployment[]; nextPageToken: string }> {
  const scope = `deployments|${model}`;
  const after = decodePageToken(scope, page.token) ?? '';
  const rows = await q.query<DeploymentRow>(
    `SELECT ${COLUMNS} FROM registry_deployments
     WHERE tenant = $1 AND name > $2 AND ($3 = '' OR model = $3) ORDER BY name LIMIT $4`,
    [tenant, after, model, page.size + 1],
  );
  const more = rows.length > page.size;
  const pageRows = rows.slice(0, page.size);
  const deployments: pb.Deployment[] = [];
  for (const row of pageRows) deployments.push(await toDeployment(q, row));
  const last = pageRows[pageRows.length - 1];
  return { deployments, nextPageToken: more && last !== undefined ? encodePageToken(scope, last.name) : '' };
}

/** Every deployment a watcher may see: one tenant's, or all (tenant undefined), by tenant and name. */
export async function snapshotDeployments(q: Queryable, tenant: string | undefined): Promise<pb.Deployment[]> {
  const rows = await q.query<DeploymentRow>(
    `SELECT ${COLUMNS} FROM registry_deployments WHERE ($1::text IS NULL OR tenant = $1) ORDER BY tenant, name`,
    [tenant ?? null],
  );
  const out: pb.Deployment[] = [];
  for (const row of rows) out.push(await toDeployment(q, row));
  return out;
}

/**
 * Re-resolves the deployments of a model that follow an alias or its latest version (after an
 * alias moved or a version became READY); returns those whose version changed, with why.
 */
export async function refreshFollowers(
  q: Queryable,
  tenant: string,
  model: string,
  now: Date,
): Promise<{ deployment: pb.Deployment; reason: string }[]> {
  const rows = await q.query<DeploymentRow>(
    `SELECT ${COLUMNS} FROM registry_deployments WHERE tenant = $1 AND model = $2 ORDER BY name FOR UPDATE`,
    [tenant, model],
  );
  const changed: { deployment: pb.Deployment; reason: string }[] = [];
  for (const row of rows) {
    const spec = pb.DeploymentSpec.fromJSON(JSON.parse(row.spec));
    // The primary, the canary and the shadow each follow their own reference.
    const follows: { ref: string; column: string; was: number | null; role: string }[] = [
      { ref: row.model_ref, column: 'resolved_version', was: row.resolved_version, role: '' },
      { ref: spec.canary?.modelRef ?? '', column: 'canary_version', was: row.canary_version, role: 'canary: ' },
      { ref: spec.shadow?.modelRef ?? '', column: 'shadow_version', was: row.shadow_version, role: 'shadow: ' },
    ];
    const reasons: string[] = [];
    for (const f of follows) {
      if (f.ref === '' || f.was === null) continue;
      const ref = parseRef(f.ref);
      if (ref.kind === 'version') continue;
      const version = await resolveVersion(q, tenant, ref);
      if (version === f.was) continue;
      await q.query(`UPDATE registry_deployments SET ${f.column} = $3 WHERE tenant = $1 AND name = $2`, [
        tenant,
        row.name,
        version,
      ]);
      reasons.push(
        f.role +
          (ref.kind === 'alias'
            ? `alias ${ref.alias} moved from ${f.was} to ${version}`
            : `model ${model} has a newer READY version: ${f.was} → ${version}`),
      );
    }
    if (reasons.length === 0) continue;
    await q.query(
      `UPDATE registry_deployments SET generation = generation + 1, updated_at = $3 WHERE tenant = $1 AND name = $2`,
      [tenant, row.name, now],
    );
    changed.push({ deployment: await getDeployment(q, tenant, row.name), reason: reasons.join('; ') });
  }
  return changed;
}
