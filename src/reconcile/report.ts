/**
 * What a reconciliation found and did, as `kitter reconcile --json` prints it and
 * `GET /reconcile` answers it (snake_case, like the rest of the API).
 */

export type DriftKind = 'keycloak_only' | 'wac_core_only' | 'unlinked' | 'different';

/** The fields both systems keep for a user. */
export type SharedField = 'username' | 'email' | 'domain';

export interface Difference {
  field: SharedField;
  keycloak: string | null;
  wac_core: string | null;
}

/** One user that exists in only one system, or differs between the two. */
export interface DriftItem {
  kind: DriftKind;
  /** The user's domain name: Keycloak's when it has the user (the source of truth). */
  domain: string;
  username: string;
  keycloak_id: string | null;
  wac_core_id: string | null;
  /** For `different`: each field that differs, with both values. */
  differences?: Difference[];
  /** Whether `--fix` repairs it; when not, `reason` says why. */
  fixable: boolean;
  reason?: string;
}

/** A drift item `--fix` repaired, and how. */
export interface FixedItem extends Omit<DriftItem, 'fixable' | 'reason'> {
  action: string;
}

/** A drift item still there at the end of the run, and why. */
export interface LeftItem extends Omit<DriftItem, 'fixable' | 'reason'> {
  reason: string;
}

export interface ReconcileReport {
  /** Domains looked at. */
  domains: number;
  /** Keycloak users read, by their `domain` attribute. */
  keycloak_users: number;
  /** wac-core users read, by their domain. */
  wac_core_users: number;
  drift: DriftItem[];
  fixed: FixedItem[];
  left: LeftItem[];
}

/** The report as a person reads it: counts, one line per drift item, then what was done. */
export function summarize(report: ReconcileReport, fix: boolean): string {
  const lines = [
    `domains: ${report.domains}, Keycloak users: ${report.keycloak_users}, ` +
      `wac-core users: ${report.wac_core_users}, drift: ${report.drift.length}`,
  ];

  if (report.drift.length > 0) lines.push('', 'drift:');
  for (const item of report.drift) {
    const remedy = item.fixable ? '' : ` (left alone: ${item.reason})`;
    lines.push(`  ${lineOf(item)}${remedy}`);
  }

  if (fix) {
    lines.push('', report.fixed.length > 0 ? 'fixed:' : 'fixed: nothing');
    for (const item of report.fixed) lines.push(`  ${lineOf(item)}: ${item.action}`);
  }

  if (report.left.length === 0) {
    lines.push('', 'no drift left');
    return lines.join('\n');
  }

  lines.push('', `left: ${report.left.length}`);
  if (fix) {
    // Without --fix everything is left, and the drift list above already says why.
    for (const item of report.left) lines.push(`  ${lineOf(item)}: ${item.reason}`);
  } else if (report.drift.some((item) => item.fixable)) {
    lines.push('  run with --fix to repair what can be repaired');
  }
  return lines.join('\n');
}

function lineOf(item: Omit<DriftItem, 'fixable' | 'reason'>): string {
  const ids = [
    item.keycloak_id ? `keycloak ${item.keycloak_id}` : undefined,
    item.wac_core_id ? `wac-core ${item.wac_core_id}` : undefined,
  ].filter(Boolean);
  const line = `${item.kind} ${item.domain} ${item.username} [${ids.join(', ')}]`;

  const changes = (item.differences ?? []).map(
    (d) => `${d.field} ${quote(d.keycloak)} in Keycloak, ${quote(d.wac_core)} in wac-core`,
  );
  return changes.length > 0 ? `${line} ${changes.join('; ')}` : line;
}

function quote(value: string | null): string {
  return value === null ? 'none' : JSON.stringify(value);
}
