/**
 * Small typed readers over the located YAML tree. Each returns the value when
 * it is valid and otherwise records a diagnostic (with file:line:col, the key
 * path, what was found and what would be valid) and returns undefined, so a
 * validator can keep going and report every problem at once.
 */
import type { Diagnostics } from './diagnostics.js';
import { didYouMean } from '../lib/did-you-mean.js';
import type { LMap, LNode } from './located.js';
import { describeNode } from './located.js';

/** A DNS label: lowercase letters, digits and `-`, not at either end. */
const NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const NAME_EXPECTED = 'lowercase letters, digits and "-" (not first or last), at most 63 characters';

export function joinPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  return parent === '' ? key : `${parent}.${key}`;
}

/** Reports every key of `map` not in `allowed`, with a did-you-mean. */
export function checkKeys(map: LMap, allowed: readonly string[], path: string, diags: Diagnostics): void {
  for (const [key, entry] of map.entries) {
    if (allowed.includes(key)) continue;
    const suggestion = didYouMean(key, allowed);
    diags.error('CONFIG_ERR_UNKNOWN_KEY', entry.keyLoc, joinPath(path, key), `unknown key "${key}"${suggestion ? ` (did you mean "${suggestion}"?)` : ''}`, {
      expected: `one of ${allowed.join(', ')}`,
    });
  }
}

export function expectMap(node: LNode, path: string, diags: Diagnostics, allowNull = false): LMap | undefined {
  if (node.kind === 'map') return node;
  if (allowNull && node.kind === 'scalar' && node.value === null) return { kind: 'map', loc: node.loc, entries: new Map() };
  diags.error('CONFIG_ERR_TYPE', node.loc, path, 'wrong type', { found: describeNode(node), expected: 'a map' });
  return undefined;
}

export function readString(node: LNode, path: string, diags: Diagnostics): string | undefined {
  if (node.kind === 'scalar' && typeof node.value === 'string' && node.value !== '') return node.value;
  diags.error('CONFIG_ERR_TYPE', node.loc, path, 'wrong type', { found: describeNode(node), expected: 'a non-empty string' });
  return undefined;
}

export function readBool(node: LNode, path: string, diags: Diagnostics): boolean | undefined {
  if (node.kind === 'scalar' && typeof node.value === 'boolean') return node.value;
  diags.error('CONFIG_ERR_TYPE', node.loc, path, 'wrong type', { found: describeNode(node), expected: 'true or false' });
  return undefined;
}

export function readInt(node: LNode, path: string, diags: Diagnostics, min: number, max: number): number | undefined {
  if (node.kind !== 'scalar' || typeof node.value !== 'number' || !Number.isInteger(node.value)) {
    diags.error('CONFIG_ERR_TYPE', node.loc, path, 'wrong type', { found: describeNode(node), expected: `an integer from ${min} to ${max}` });
    return undefined;
  }
  if (node.value < min || node.value > max) {
    diags.error('CONFIG_ERR_VALUE', node.loc, path, 'out of range', { found: String(node.value), expected: `an integer from ${min} to ${max}` });
    return undefined;
  }
  return node.value;
}

export function readEnum<T extends string>(node: LNode, path: string, diags: Diagnostics, allowed: readonly T[]): T | undefined {
  if (node.kind === 'scalar' && typeof node.value === 'string' && (allowed as readonly string[]).includes(node.value)) {
    return node.value as T;
  }
  const suggestion = node.kind === 'scalar' && typeof node.value === 'string' ? didYouMean(node.value, allowed) : undefined;
  diags.error('CONFIG_ERR_VALUE', node.loc, path, `invalid value${suggestion ? ` (did you mean "${suggestion}"?)` : ''}`, {
    found: describeNode(node),
    expected: `one of ${allowed.join(', ')}`,
  });
  return undefined;
}

/** A name that becomes a DNS label (service, host, credential, overlay). */
export function readName(node: LNode, path: string, diags: Diagnostics, what: string): string | undefined {
  const value = readString(node, path, diags);
  if (value === undefined) return undefined;
  return checkName(value, node, path, diags, what) ? value : undefined;
}

export function checkName(value: string, node: { loc: LNode['loc'] }, path: string, diags: Diagnostics, what: string): boolean {
  if (NAME_PATTERN.test(value)) return true;
  diags.error('CONFIG_ERR_INVALID_NAME', node.loc, path, `invalid ${what} name`, { found: JSON.stringify(value), expected: NAME_EXPECTED });
  return false;
}

/** Accepts one item or a list of items; returns the item nodes. */
export function oneOrMany(node: LNode): LNode[] {
  return node.kind === 'seq' ? node.items : [node];
}

/** Durations as operators write them: `500ms`, `5s`, `2m`, `1h`; a bare number is seconds. */
export function readDuration(node: LNode, path: string, diags: Diagnostics): number | undefined {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  if (node.kind === 'scalar' && typeof node.value === 'number' && node.value > 0) return node.value * 1000;
  if (node.kind === 'scalar' && typeof node.value === 'string') {
    const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(node.value);
    if (match && Number(match[1]) > 0) return Number(match[1]) * (units[match[2] ?? 's'] ?? 1000);
  }
  diags.error('CONFIG_ERR_VALUE', node.loc, path, 'invalid duration', { found: describeNode(node), expected: 'a positive duration such as 500ms, 5s, 2m or 1h' });
  return undefined;
}
