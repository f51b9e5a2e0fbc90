// bertkit: fine-tune BERT-family encoders from TypeScript.
export * from './tensor/index.js'
export * from './optim/index.js'
export { loadNative } from './native.js'
