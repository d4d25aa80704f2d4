import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'dist-*/', 'node_modules/', 'test-output/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
      // Tests read loosely typed JSON answers; the service code does not.
      '@typescript-eslint/no-explicit-any': 'off',
      'max-len': ['error', { code: 100, ignoreUrls: true, ignoreStrings: false }],
    },
  },
);
