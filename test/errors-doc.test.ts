/**
 * Keeps docs/errors.md in step with the code: every `<AREA>_(ERR|WARN)_<NAME>`
 * string literal under src/ must have exactly one row in the doc's tables,
 * and every row must name a code that still exists.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SRC_DIR = join(ROOT, 'src');
const DOC_FILE = join(ROOT, 'docs', 'errors.md');

/** A code as a string literal in source: 'CONFIG_ERR_TYPE', 'DNS_WARN_...'. */
const SOURCE_CODE = /'([A-Z][A-Z0-9]*_(?:ERR|WARN)_[A-Z0-9_]+)'/g;
/** A table row whose first column is a code: "| `CONFIG_ERR_TYPE` | ... |". */
const DOC_ROW = /^\|\s*`([A-Z][A-Z0-9]*_(?:ERR|WARN)_[A-Z0-9_]+)`\s*\|/;

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return tsFiles(path);
    return entry.isFile() && entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Every code the source can raise, with the files that mention it. */
function sourceCodes(): Map<string, string[]> {
  const codes = new Map<string, string[]>();
  for (const file of tsFiles(SRC_DIR)) {
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(SOURCE_CODE)) {
      const code = match[1];
      if (code === undefined) continue;
      const files = codes.get(code) ?? [];
      const relative = file.slice(ROOT.length);
      if (!files.includes(relative)) files.push(relative);
      codes.set(code, files);
    }
  }
  return codes;
}

/** The first-column code of every table row in docs/errors.md, in order (duplicates kept). */
function documentedCodes(): string[] {
  const codes: string[] = [];
  for (const line of readFileSync(DOC_FILE, 'utf8').split(/\r?\n/)) {
    const code = DOC_ROW.exec(line.trim())?.[1];
    if (code !== undefined) codes.push(code);
  }
  return codes;
}

function listing(codes: readonly string[], where?: Map<string, string[]>): string {
  return codes.map((code) => `  ${code}${where ? ` (${(where.get(code) ?? []).join(', ')})` : ''}`).join('\n');
}

describe('docs/errors.md', () => {
  const inSource = sourceCodes();
  const documented = documentedCodes();

  it('finds codes in both the source and the doc (the scan itself works)', () => {
    expect(inSource.size, 'no error codes found under src/').toBeGreaterThan(0);
    expect(documented.length, 'no "| `CODE` | ... |" rows found in docs/errors.md').toBeGreaterThan(0);
  });

  it('documents every error code the code can raise', () => {
    const documentedSet = new Set(documented);
    const missing = [...inSource.keys()].filter((code) => !documentedSet.has(code)).sort();
    expect(missing, `codes used in src/ but missing from docs/errors.md (add a row "| \`CODE\` | Meaning | Fix |"):\n${listing(missing, inSource)}`).toEqual([]);
  });

  it('documents no code that the source no longer has', () => {
    const stale = [...new Set(documented)].filter((code) => !inSource.has(code)).sort();
    expect(stale, `codes documented in docs/errors.md but not found in any src/ .ts file (remove the rows):\n${listing(stale)}`).toEqual([]);
  });

  it('documents each code only once', () => {
    const seen = new Set<string>();
    const twice = new Set<string>();
    for (const code of documented) {
      if (seen.has(code)) twice.add(code);
      seen.add(code);
    }
    const duplicates = [...twice].sort();
    expect(duplicates, `codes with more than one row in docs/errors.md:\n${listing(duplicates)}`).toEqual([]);
  });
});
