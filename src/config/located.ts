/**
 * A YAML tree that remembers where every key and value came from. Input files
 * are turned into this tree once; includes are merged on it, and validation
 * reads it, so every diagnostic can name file:line:col even after a value
 * travelled through an include.
 */
import { readFileSync } from 'node:fs';
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument } from 'yaml';
import type { Document, Node as YamlNode, ScalarTag } from 'yaml';
import type { Diagnostics, Loc } from './diagnostics.js';

type LScalarValue = string | number | boolean | null;

export interface LMap {
  readonly kind: 'map';
  readonly loc: Loc;
  readonly entries: Map<string, LEntry>;
}

export interface LEntry {
  readonly key: string;
  readonly keyLoc: Loc;
  readonly value: LNode;
}

interface LSeq {
  readonly kind: 'seq';
  readonly loc: Loc;
  readonly items: LNode[];
}

interface LScalar {
  readonly kind: 'scalar';
  readonly loc: Loc;
  readonly value: LScalarValue;
}

export type LNode = LMap | LSeq | LScalar;

/** Ansible's own tags: their values are kept as plain strings. */
const ANSIBLE_TAGS: ScalarTag[] = ['!unsafe', '!vault', '!encrypted/pkcs1-oaep'].map((tag) => ({
  tag,
  resolve: (source: string) => source,
}));

const BOOL = 'tag:yaml.org,2002:bool';
const INT = 'tag:yaml.org,2002:int';
const FLOAT = 'tag:yaml.org,2002:float';
const stripUnderscores = (source: string): string => source.replace(/_/g, '');

/**
 * The `yaml` package's YAML 1.1 schema is looser than PyYAML, which Ansible
 * uses: it reads `y`/`n` as booleans, `e1` and `1e3` as numbers and `09` as
 * 9, where PyYAML keeps strings. These tags follow PyYAML's resolver so a
 * file means the same to meshplane as to Ansible.
 */
const PYYAML_SCALARS: ScalarTag[] = [
  { tag: BOOL, default: true, test: /^(?:yes|Yes|YES|true|True|TRUE|on|On|ON)$/, resolve: () => true },
  { tag: BOOL, default: true, test: /^(?:no|No|NO|false|False|FALSE|off|Off|OFF)$/, resolve: () => false },
  { tag: INT, default: true, test: /^[-+]?(?:0|[1-9][0-9_]*)$/, resolve: (s: string) => Number(stripUnderscores(s)) },
  {
    tag: FLOAT,
    default: true,
    test: /^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?|[-+]?\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?)$/,
    resolve: (s: string) => Number.parseFloat(stripUnderscores(s)),
  },
];

function pyyamlCompatible(tags: unknown[]): unknown[] {
  const replaced = tags.filter((t) => {
    const tag = t as { tag?: string; format?: string; test?: RegExp };
    if (tag.tag === BOOL) return false;
    if (tag.tag === INT && tag.format === undefined) return false;
    if (tag.tag === FLOAT && (tag.format === 'EXP' || (tag.format === undefined && tag.test?.test('.5') === true))) return false;
    return true;
  });
  return [...PYYAML_SCALARS, ...replaced, ...ANSIBLE_TAGS];
}

/**
 * Reads and parses a YAML file with YAML 1.1 rules (`yes` is true, `0755` is
 * octal), the rules Ansible applies to the same files. Returns undefined and
 * records diagnostics when the file is missing or is not valid YAML.
 */
export function readYamlFile(file: string, diags: Diagnostics, referencedFrom?: Loc): LNode | undefined {
  const source = readSourceFile(file, diags, referencedFrom);
  return source === undefined ? undefined : parseYaml(source, file, diags);
}

/** Reads an input file's text; records a diagnostic and returns undefined when it cannot. */
export function readSourceFile(file: string, diags: Diagnostics, referencedFrom?: Loc): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (err as Error).message;
    const code = referencedFrom === undefined ? 'CONFIG_ERR_FILE_NOT_FOUND' : 'CONFIG_ERR_INCLUDE_NOT_FOUND';
    diags.error(code, referencedFrom ?? { file, line: 1, col: 1 }, '', `cannot read ${file}: ${reason}`);
    return undefined;
  }
}

/** Parses YAML text; `file` is only used to label positions. */
export function parseYaml(source: string, file: string, diags: Diagnostics): LNode | undefined {
  const lineCounter = new LineCounter();
  const doc = parseDocument(source, {
    version: '1.1',
    lineCounter,
    customTags: (tags) => pyyamlCompatible(tags) as typeof tags,
    // Duplicate keys are found in convert(): the library's own check is quadratic per map.
    uniqueKeys: false,
  });
  if (doc.errors.length > 0) {
    for (const err of doc.errors) {
      const pos = err.linePos?.[0] ?? { line: 1, col: 1 };
      const message = err.message.split('\n')[0] ?? err.message;
      diags.error('CONFIG_ERR_YAML_SYNTAX', { file, line: pos.line, col: pos.col }, '', message);
    }
    return undefined;
  }
  const locate = (offset: number | undefined): Loc => {
    const pos = lineCounter.linePos(offset ?? 0);
    return { file, line: pos.line, col: pos.col };
  };
  if (doc.contents === null) {
    return { kind: 'map', loc: locate(0), entries: new Map() };
  }
  return convert(doc.contents, doc, locate, diags);
}

function convert(node: YamlNode, doc: Document, locate: (offset: number | undefined) => Loc, diags: Diagnostics): LNode {
  if (isAlias(node)) {
    const target = node.resolve(doc);
    if (target === undefined) return { kind: 'scalar', loc: locate(node.range?.[0]), value: null };
    return convert(target, doc, locate, diags);
  }
  const loc = locate(node.range?.[0]);
  if (isMap(node)) {
    const entries = new Map<string, LEntry>();
    const merged: LEntry[] = [];
    for (const pair of node.items) {
      const keyNode = pair.key as YamlNode | null;
      const valueNode = pair.value as YamlNode | null;
      const value: LNode =
        valueNode === null ? { kind: 'scalar', loc: keyLoc(keyNode, loc, locate), value: null } : convert(valueNode, doc, locate, diags);
      if (isScalar(keyNode) && (typeof keyNode.value === 'symbol' || keyNode.source === '<<')) {
        // YAML merge key: `<<: *anchor` or `<<: [*a, *b]`; explicit keys win.
        const sources = value.kind === 'seq' ? value.items : [value];
        for (const src of sources) if (src.kind === 'map') merged.push(...src.entries.values());
        continue;
      }
      // Keys are names (hosts, groups, services): keep the text as written.
      const key = isScalar(keyNode) ? (typeof keyNode.value === 'string' ? keyNode.value : (keyNode.source ?? String(keyNode.value))) : keyNode === null ? '' : String(keyNode.toJSON());
      const at = keyLoc(keyNode, loc, locate);
      if (entries.has(key)) {
        diags.error('CONFIG_ERR_YAML_SYNTAX', at, key, `duplicate key "${key}" in this map (first at line ${entries.get(key)?.keyLoc.line})`, {
          expected: 'each key once per map',
        });
      }
      entries.set(key, { key, keyLoc: at, value });
    }
    for (const entry of merged) if (!entries.has(entry.key)) entries.set(entry.key, entry);
    return { kind: 'map', loc, entries };
  }
  if (isSeq(node)) {
    return { kind: 'seq', loc, items: node.items.map((item) => convert(item as YamlNode, doc, locate, diags)) };
  }
  if (isScalar(node)) {
    return { kind: 'scalar', loc, value: scalarValue(node.value) };
  }
  return { kind: 'scalar', loc, value: null };
}

function keyLoc(keyNode: YamlNode | null, fallback: Loc, locate: (offset: number | undefined) => Loc): Loc {
  return keyNode?.range ? locate(keyNode.range[0]) : fallback;
}

function scalarValue(value: unknown): LScalarValue {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return value;
  if (typeof value === 'bigint') return Number(value);
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  return JSON.stringify(value) ?? null;
}

/** Plain JavaScript value of a located tree (for vars handed on as data). */
export function toPlain(node: LNode): unknown {
  switch (node.kind) {
    case 'scalar':
      return node.value;
    case 'seq':
      return node.items.map(toPlain);
    case 'map': {
      const out: Record<string, unknown> = {};
      for (const [key, entry] of node.entries) out[key] = toPlain(entry.value);
      return out;
    }
  }
}

/**
 * Deep merge for includes: maps merge key by key (the later file wins per
 * key), lists and scalars are replaced whole.
 */
export function deepMerge(base: LNode, override: LNode): LNode {
  if (base.kind !== 'map' || override.kind !== 'map') return override;
  const entries = new Map(base.entries);
  for (const [key, entry] of override.entries) {
    const existing = entries.get(key);
    entries.set(key, existing === undefined ? entry : { ...entry, value: deepMerge(existing.value, entry.value) });
  }
  return { kind: 'map', loc: base.loc, entries };
}

export function describeNode(node: LNode): string {
  if (node.kind === 'map') return 'a map';
  if (node.kind === 'seq') return 'a list';
  if (node.value === null) return 'null';
  return typeof node.value === 'string' ? JSON.stringify(node.value) : `${typeof node.value} ${String(node.value)}`;
}
