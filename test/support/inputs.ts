/** Writes services.yml / hosts.yml (and any other files) into a temp dir and loads them. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadConfig } from '../../src/config/index.js';
import type { LoadedConfig } from '../../src/config/index.js';
import type { Diagnostic } from '../../src/config/testing.js';
import { tempDir } from './run.js';

export const BASIC_INVENTORY = `all:
  vars:
    domain: mesh.internal
  children:
    web:
      hosts:
        h1: {ip: 198.18.0.1}
        h2: {ip: 198.18.0.2}
    db:
      hosts:
        h3: {ip: 198.18.0.3}
`;

export interface Loaded extends LoadedConfig {
  readonly dir: string;
}

const cleanups: (() => void)[] = [];

/** Files by relative path; `hosts.yml` defaults to BASIC_INVENTORY. */
export function load(files: Record<string, string>): Loaded {
  const dir = tempDir('config');
  cleanups.push(dir.remove);
  const all = { 'hosts.yml': BASIC_INVENTORY, ...files };
  for (const [name, text] of Object.entries(all)) {
    const path = join(dir.path, name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  }
  const config = loadConfig({ services: join(dir.path, 'services.yml'), inventory: join(dir.path, 'hosts.yml') });
  return { ...config, dir: dir.path };
}

export function removeTempInputs(): void {
  for (const cleanup of cleanups.splice(0)) cleanup();
}

/** The diagnostics with `code`, as `basename:line:col key` strings for compact assertions. */
export function where(config: LoadedConfig, code: string): string[] {
  return config.diagnostics
    .sorted()
    .filter((d) => d.code === code)
    .map(briefly);
}

export function briefly(d: Diagnostic): string {
  const file = d.loc.file.split('/').pop() ?? d.loc.file;
  return `${file}:${d.loc.line}:${d.loc.col} ${d.key}`;
}

export function codes(config: LoadedConfig): string[] {
  return config.diagnostics.items.map((d) => d.code).sort();
}
