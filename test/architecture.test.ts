/**
 * The boundaries between components, checked over the import graph of every
 * file under src/, test/ and bench/ (parsed with the TypeScript compiler, so
 * type-only and dynamic imports count too). Each failure names the file and
 * line that crosses a boundary and which boundary it is.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Folders under src/ with a front door (index.ts); src/cli sits above them all. */
const COMPONENTS = ['agent', 'config', 'demo', 'dns', 'gateway', 'overlay', 'pki', 'topology'] as const;
/** Who may import whom (besides the shared src/lib and src/errors.ts, which anyone may import). */
const MAY_IMPORT: Readonly<Record<string, readonly string[]>> = {
  shared: [],
  topology: [],
  config: ['topology'],
  dns: ['topology'],
  pki: ['topology'],
  overlay: ['topology'],
  gateway: ['topology', 'pki'],
  agent: ['topology'],
  demo: ['topology', 'agent'],
  cli: [...COMPONENTS],
};
interface Edge {
  readonly from: string; // repository-relative path of the importing file
  readonly line: number;
  readonly to: string; // repository-relative path of the imported file (src/... .ts)
}

/** The part of the tree a src/ file belongs to: a component, `cli`, or `shared`. */
function partOf(file: string): string | undefined {
  const match = /^src\/([^/]+)\//.exec(file);
  if (file === 'src/errors.ts' || match?.[1] === 'lib') return 'shared';
  return match?.[1];
}

function isFrontDoor(file: string): boolean {
  return /^src\/[^/]+\/index\.ts$/.test(file);
}

function isTestingEntry(file: string): boolean {
  return /^src\/[^/]+\/testing\.ts$/.test(file);
}

/** (a) a component reaches another only through its index.ts. */
function privateImports(edges: readonly Edge[]): string[] {
  return edges
    .filter((e) => e.from.startsWith('src/') && !isTestingEntry(e.to))
    .filter((e) => {
      const to = partOf(e.to);
      return to !== undefined && to !== 'shared' && to !== partOf(e.from) && !isFrontDoor(e.to);
    })
    .map((e) => `${e.from}:${e.line} imports ${e.to}, a private module of ${partOf(e.to)}: use src/${partOf(e.to)}/index.ts (rule a)`);
}

/** (b) nothing under src/ imports a testing entry. */
function testingImportsInSrc(edges: readonly Edge[]): string[] {
  return edges
    .filter((e) => e.from.startsWith('src/') && isTestingEntry(e.to))
    .map((e) => `${e.from}:${e.line} imports ${e.to}, which is for tests only (rule b)`);
}

/** (c) only the CLI (and, for now, topology's compile/source/live) reads src/config. */
function configImports(edges: readonly Edge[]): string[] {
  return edges
    .filter((e) => partOf(e.to) === 'config' && e.from.startsWith('src/'))
    .filter((e) => {
      const from = partOf(e.from);
      return from !== 'config' && from !== 'cli';
    })
    .map((e) => `${e.from}:${e.line} imports ${e.to}: only the CLI reads src/config (rule c)`);
}

/** (d) tests use a component's index.ts or testing.ts only (src/lib and src/errors.ts too). */
function testImports(edges: readonly Edge[]): string[] {
  return edges
    .filter((e) => !e.from.startsWith('src/') && e.to.startsWith('src/'))
    .filter((e) => {
      const to = partOf(e.to);
      if (to === 'shared') return false;
      return !(COMPONENTS.includes(to as (typeof COMPONENTS)[number]) && (isFrontDoor(e.to) || (isTestingEntry(e.to) && !e.from.startsWith('bench/'))));
    })
    .map((e) => `${e.from}:${e.line} imports ${e.to}: ${e.from.startsWith('bench/') ? 'benchmarks use' : 'tests use'} a component's index.ts${e.from.startsWith('bench/') ? '' : ' or testing.ts'} only (rule d)`);
}

/** (e) components import only the ones below them, and no cycle runs between them. */
function layerViolations(edges: readonly Edge[]): string[] {
  const problems: string[] = [];
  const graph = new Map<string, Map<string, Edge>>();
  for (const e of edges) {
    const from = partOf(e.from);
    const to = partOf(e.to);
    if (from === undefined || to === undefined || from === to || to === 'shared') continue;
    if (to === 'config' && from !== 'topology') continue; // rule (c) reports these
    if (!(MAY_IMPORT[from] ?? []).includes(to)) {
      problems.push(`${e.from}:${e.line} imports ${e.to}: ${from} may import only ${['lib', ...(MAY_IMPORT[from] ?? [])].join(', ')} (rule e)`);
    }
    const out = graph.get(from) ?? new Map<string, Edge>();
    if (!out.has(to)) out.set(to, e);
    graph.set(from, out);
  }
  for (const cycle of cycles(graph)) {
    const steps = cycle.map((part, i) => {
      const e = graph.get(part)?.get(cycle[(i + 1) % cycle.length] ?? '');
      return `${part} -> ${cycle[(i + 1) % cycle.length]} (${e?.from}:${e?.line})`;
    });
    problems.push(`import cycle between components: ${steps.join(', ')} (rule e)`);
  }
  return problems;
}

/** Every elementary cycle's first occurrence, found by depth-first search from each node. */
function cycles(graph: ReadonlyMap<string, ReadonlyMap<string, Edge>>): string[][] {
  const found = new Map<string, string[]>();
  const walk = (path: string[]): void => {
    const last = path[path.length - 1] ?? '';
    for (const next of graph.get(last)?.keys() ?? []) {
      const at = path.indexOf(next);
      if (at >= 0) {
        const cycle = path.slice(at);
        const key = [...cycle].sort().join(',');
        if (!found.has(key)) found.set(key, cycle);
      } else {
        walk([...path, next]);
      }
    }
  };
  for (const start of graph.keys()) walk([start]);
  return [...found.values()];
}

function filesUnder(dir: string, pattern: RegExp): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile() && pattern.test(d.name))
    .map((d) => relative(ROOT, join(d.parentPath, d.name)));
}

/** The static, type-level and dynamic imports of one file that resolve into src/ (bench: into dist/). */
function edgesOf(file: string): Edge[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const edges: Edge[] = [];
  const add = (specifier: ts.Node | undefined): void => {
    if (specifier === undefined || !ts.isStringLiteralLike(specifier) || !specifier.text.startsWith('.')) return;
    let to = relative(ROOT, resolve(ROOT, dirname(file), specifier.text)).replace(/\.js$/, '.ts');
    if (file.startsWith('bench/')) to = to.replace(/^dist\//, 'src/');
    if (!to.startsWith('src/')) return;
    edges.push({ from: file, line: source.getLineAndCharacterOfPosition(specifier.getStart()).line + 1, to });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) add(node.moduleSpecifier);
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) add(node.arguments[0]);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node.argument.literal);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return edges;
}

const FILES = [...filesUnder('src', /\.ts$/), ...filesUnder('test', /\.ts$/), ...filesUnder('bench', /\.m?[jt]s$/)];
const EDGES = FILES.flatMap(edgesOf);

describe('import boundaries', () => {
  it('sees the import graph (static, type-only and dynamic imports)', () => {
    expect(EDGES).toContainEqual(expect.objectContaining({ from: 'src/cli/bin.ts', to: 'src/cli/main.ts' })); // dynamic
    expect(EDGES).toContainEqual(expect.objectContaining({ from: 'bench/pki.mjs', to: 'src/pki/index.ts' }));
    expect(EDGES.filter((e) => e.from.startsWith('test/')).length).toBeGreaterThan(100);
  });

  it('(a) a component reaches another only through its index.ts', () => {
    expect(privateImports(EDGES)).toEqual([]);
  });

  it('(b) nothing under src/ imports a testing.ts', () => {
    expect(testingImportsInSrc(EDGES)).toEqual([]);
  });

  it('(c) only the CLI reads src/config', () => {
    expect(configImports(EDGES), 'these read src/config; what they need belongs in src/topology').toEqual([]);
  });

  it('(d) tests and benchmarks use front doors (tests: and testing.ts), src/lib and src/errors.ts only', () => {
    expect(testImports(EDGES)).toEqual([]);
  });

  it('(e) components import only the layers below them, without cycles', () => {
    expect(layerViolations(EDGES)).toEqual([]);
  });

  it('every testing.ts says at its top that it is for tests only', () => {
    const entries = filesUnder('src', /^testing\.ts$/);
    expect(entries.length).toBeGreaterThan(0);
    for (const entry of entries) expect(readFileSync(join(ROOT, entry), 'utf8').slice(0, 300), entry).toMatch(/for tests only; not used by src\//i);
  });
});

describe('the rules themselves', () => {
  const edge = (from: string, to: string): Edge => ({ from, line: 7, to });

  it('report the file, the line and the boundary crossed', () => {
    expect(privateImports([edge('src/demo/backend.ts', 'src/agent/proxy-protocol.ts')])).toEqual([
      'src/demo/backend.ts:7 imports src/agent/proxy-protocol.ts, a private module of agent: use src/agent/index.ts (rule a)',
    ]);
    expect(privateImports([edge('src/cli/main.ts', 'src/pki/index.ts'), edge('src/pki/ca.ts', 'src/pki/keys.ts'), edge('src/pki/ca.ts', 'src/lib/ip.ts')])).toEqual([]);
    expect(testingImportsInSrc([edge('src/gateway/gateway.ts', 'src/pki/testing.ts')])).toHaveLength(1);
    expect(configImports([edge('src/pki/issue.ts', 'src/config/index.ts'), edge('src/cli/main.ts', 'src/config/index.ts'), edge('src/topology/types.ts', 'src/config/index.ts')])).toEqual([
      'src/pki/issue.ts:7 imports src/config/index.ts: only the CLI reads src/config (rule c)',
      'src/topology/types.ts:7 imports src/config/index.ts: only the CLI reads src/config (rule c)',
    ]);
    expect(testImports([edge('test/x.test.ts', 'src/gateway/limits.ts'), edge('test/x.test.ts', 'src/gateway/testing.ts'), edge('test/x.test.ts', 'src/lib/ip.ts'), edge('bench/x.mjs', 'src/pki/testing.ts'), edge('test/x.test.ts', 'src/cli/main.ts')])).toEqual([
      'test/x.test.ts:7 imports src/gateway/limits.ts: tests use a component\'s index.ts or testing.ts only (rule d)',
      'bench/x.mjs:7 imports src/pki/testing.ts: benchmarks use a component\'s index.ts only (rule d)',
      'test/x.test.ts:7 imports src/cli/main.ts: tests use a component\'s index.ts or testing.ts only (rule d)',
    ]);
  });

  it('find layers crossed upwards and cycles between components', () => {
    expect(layerViolations([edge('src/pki/ca.ts', 'src/gateway/index.ts'), edge('src/gateway/gateway.ts', 'src/pki/index.ts')])).toEqual([
      'src/pki/ca.ts:7 imports src/gateway/index.ts: pki may import only lib, topology (rule e)',
      'import cycle between components: pki -> gateway (src/pki/ca.ts:7), gateway -> pki (src/gateway/gateway.ts:7) (rule e)',
    ]);
    expect(layerViolations([edge('src/config/compile.ts', 'src/topology/index.ts'), edge('src/cli/main.ts', 'src/config/index.ts')])).toEqual([]);
    expect(layerViolations([edge('src/topology/io.ts', 'src/config/index.ts'), edge('src/config/index.ts', 'src/topology/index.ts')])).toEqual([
      'src/topology/io.ts:7 imports src/config/index.ts: topology may import only lib (rule e)',
      'import cycle between components: topology -> config (src/topology/io.ts:7), config -> topology (src/config/index.ts:7) (rule e)',
    ]);
  });
});
