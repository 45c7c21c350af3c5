// ESLint flat config: typescript-eslint's recommended rules for src/, plain JS rules for the
// Playwright harness in e2e/ (CommonJS, run by Node).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['out/**', 'node_modules/**', '*.vsix'] },
  {
    files: ['src/**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommended],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      eqeqeq: ['error', 'always'],
      'no-console': 'error',
    },
  },
  {
    files: ['e2e/**/*.js'],
    extends: [js.configs.recommended],
    languageOptions: {
      sourceType: 'commonjs',
      ecmaVersion: 2022,
      globals: {
        require: 'readonly', module: 'writable', process: 'readonly', console: 'readonly',
        __dirname: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', Buffer: 'readonly',
        document: 'readonly', window: 'readonly', navigator: 'readonly',
      },
    },
    rules: { eqeqeq: ['error', 'always'], 'no-unused-vars': ['error', { argsIgnorePattern: '^_' }] },
  },
);
