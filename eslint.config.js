// Flat config: recommended JS rules plus type-aware TypeScript rules.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', '.meshplane/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      eqeqeq: ['error', 'always', { null: 'ignore' }],
    },
  },
  // Component boundaries, the part a pattern can say; test/architecture.test.ts
  // checks all of them (config readers, layers, cycles) over the import graph.
  {
    files: ['src/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { regex: '^(\\.\\./)+(agent|config|demo|dns|gateway|overlay|pki|topology)/(?!index\\.js$)', message: 'Another component is reached only through its index.js.' },
          { regex: '(^|/)testing\\.js$', message: 'testing.ts is for tests only.' },
        ],
      }],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { regex: '/src/(agent|config|demo|dns|gateway|overlay|pki|topology)/(?!(index|testing)\\.js$)', message: "Tests use a component's index.js or testing.js only." },
        ],
      }],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    extends: [tseslint.configs.disableTypeChecked],
  },
);
