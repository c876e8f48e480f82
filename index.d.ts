// The package's types entry (package.json `types` and `exports['.'].types`): the declarations tsc
// emits for index.ts. No `.js` on the path: the package has no "type": "module", so this file is
// CommonJS to TypeScript and its imports resolve as require() does, extension optional.
export * from './dist/index';
