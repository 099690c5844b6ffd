#!/usr/bin/env node
// Lists the exports under src/ that nothing imports: not src/, not test/,
// not bench/ (whose .mjs files import the built dist/). An export that only
// an index.ts or testing.ts re-exports counts as used only when that
// re-export is. Run after changing a front door: `node scripts/unused-exports.mjs`.
// Exits 1 when it finds any, so it can gate a review; prints file:line name.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import process from 'node:process';
import { URL, fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const rel = (file) => relative(ROOT, file);

const config = ts.getParsedCommandLineOfConfigFile(join(ROOT, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined });
const program = ts.createProgram(config.fileNames, config.options);
const checker = program.getTypeChecker();
const sources = program.getSourceFiles().filter((f) => !f.isDeclarationFile && !f.fileName.includes('/node_modules/'));

const used = new Set(); // "file#name" imported by a file that is not re-exporting it
const forwards = new Map(); // "file#name" re-exported -> the "file#name" it forwards to
const key = (file, name) => `${file}#${name}`;
const exportsOf = (file) => {
  const symbol = checker.getSymbolAtLocation(program.getSourceFile(join(ROOT, file)) ?? ts.createSourceFile('x', '', ts.ScriptTarget.Latest));
  return symbol === undefined ? [] : checker.getExportsOfModule(symbol).map((s) => s.name);
};

/** The src/ file a relative specifier names (bench's dist/ paths map back to src/). */
function target(from, specifier) {
  if (!specifier.startsWith('.')) return undefined;
  const to = rel(resolve(ROOT, dirname(from), specifier)).replace(/^dist\//, 'src/').replace(/\.js$/, '.ts');
  return to.startsWith('src/') ? to : undefined;
}

/** Names taken by `const { a, b: c } = await import(...)`; undefined when it takes the whole module. */
function destructured(call) {
  const parent = ts.isAwaitExpression(call.parent) ? call.parent.parent : undefined;
  if (parent === undefined || !ts.isVariableDeclaration(parent) || !ts.isObjectBindingPattern(parent.name)) return undefined;
  return parent.name.elements.map((e) => (e.propertyName ?? e.name).getText());
}

function scan(source, file) {
  const visit = (node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const to = target(file, node.moduleSpecifier.text);
      const bindings = node.importClause?.namedBindings;
      if (to !== undefined && bindings !== undefined) {
        if (ts.isNamedImports(bindings)) for (const el of bindings.elements) used.add(key(to, (el.propertyName ?? el.name).text));
        else for (const name of exportsOf(to)) used.add(key(to, name));
      }
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier !== undefined && ts.isStringLiteral(node.moduleSpecifier)) {
      const to = target(file, node.moduleSpecifier.text);
      if (to !== undefined) {
        if (node.exportClause !== undefined && ts.isNamedExports(node.exportClause)) {
          for (const el of node.exportClause.elements) forwards.set(key(file, el.name.text), [...(forwards.get(key(file, el.name.text)) ?? []), key(to, (el.propertyName ?? el.name).text)]);
        } else {
          for (const name of exportsOf(to)) forwards.set(key(file, name), [...(forwards.get(key(file, name)) ?? []), key(to, name)]);
        }
      }
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] !== undefined && ts.isStringLiteral(node.arguments[0])) {
      const to = target(file, node.arguments[0].text);
      if (to !== undefined) for (const name of destructured(node) ?? exportsOf(to)) used.add(key(to, name));
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
}

for (const source of sources) scan(source, rel(source.fileName));
for (const entry of readdirSync(join(ROOT, 'bench')).filter((f) => f.endsWith('.mjs'))) {
  const file = join('bench', entry);
  scan(ts.createSourceFile(file, readFileSync(join(ROOT, file), 'utf8'), ts.ScriptTarget.Latest, true), file);
}

// A re-export that is used makes what it forwards to used, transitively.
const queue = [...used];
while (queue.length > 0) {
  for (const next of forwards.get(queue.pop()) ?? []) {
    if (!used.has(next)) {
      used.add(next);
      queue.push(next);
    }
  }
}

const unused = [];
for (const source of sources) {
  const file = rel(source.fileName);
  if (!file.startsWith('src/')) continue;
  const module = checker.getSymbolAtLocation(source);
  for (const symbol of module === undefined ? [] : checker.getExportsOfModule(module)) {
    if (used.has(key(file, symbol.name))) continue;
    const declaration = forwards.has(key(file, symbol.name)) ? undefined : symbol.declarations?.[0];
    const line = declaration === undefined ? '' : `:${source.getLineAndCharacterOfPosition(declaration.getStart()).line + 1}`;
    unused.push(`${file}${line} ${symbol.name}`);
  }
}
for (const line of unused) process.stdout.write(`${line}\n`);
process.exitCode = unused.length > 0 ? 1 : 0;
