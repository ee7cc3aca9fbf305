import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'node_modules/', '.venv-oracle/', 'var/', 'coverage/'] },
  js.configs.recommended,
  // The type-checked rules: a promise nobody awaits or handles, or one passed where a callback's result is
  // dropped, is an error.
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      globals: { ...globals.node },
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Opcode dispatch and byte parsing fall through deliberately only where commented.
      'no-fallthrough': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test's test() and describe() return a promise the runner itself waits for and reports.
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      // An error thrown inside try is caught there only if the promise returned is awaited.
      '@typescript-eslint/return-await': ['error', 'in-try-catch'],
      '@typescript-eslint/no-unnecessary-type-assertion': 'error',
      // Off: a method of a promise-returning contract (Storage) is async so that its throws reach the caller
      // as rejections, as the contract says, whether or not it awaits anything (MemoryStorage's mostly don't).
      '@typescript-eslint/require-await': 'off',
    },
  },
  // The web UI's scripts run in the browser (web/tsconfig.json gives them the DOM).
  { files: ['web/**/*.ts'], languageOptions: { globals: { ...globals.browser } } },
  // scripts/*.mjs are outside the TypeScript project: linted without types.
  { files: ['**/*.mjs', '**/*.js'], extends: [tseslint.configs.disableTypeChecked] },
);
