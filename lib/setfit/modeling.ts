// SetFitModel: a sentence-transformers body and a classification head —
// scikit-learn's LogisticRegression by default (one-vs-rest or multi-output
// for multi-label data), or SetFitHead, a linear layer with a temperature
// trained by AdamW (softmax / cross-entropy, or sigmoid / BCE for
// multi-label). Saved as setfit saves it, except the head: model_head.json
// (plain numbers) instead of a pickle, which bertkit never reads.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { Module } from '../nn/module.js'
import { Linear } from '../nn/layers.js'
import { tidy } from '../tensor/scope.js'
import { noGrad } from '../tensor/autograd.js'
import { tensor, type Tensor } from '../tensor/tensor.js'
import { crossEntropy, scale, zeroColumnPairs, reshape } from '../tensor/ops.js'
import { hostUniform } from '../tensor/random.js'
import type { DeviceName } from '../tensor/device.js'
import { AdamW } from '../optim/adamw.js'
import { atomicWriteFile } from '../hub/safetensors.js'
import { makeDirs } from '../hub/dirs.js'
import { SeededGenerator } from '../data/random.js'
import { CountProgress as Progress } from '../train/count_progress.js'
import { SentenceTransformer, resolveSentenceTransformerDir, type Embeddings, type SentenceTransformerOptions } from '../sentence_transformers/SentenceTransformer.js'
import { normalize } from '../sentence_transformers/functional.js'
import { readJson, readJsonObject } from '../sentence_transformers/models/io.js'
import {
  LogisticRegression, MultiLabelLogisticRegression, MULTI_TARGET_STRATEGIES,
  type ClassLabel, type LogisticRegressionParams, type LogisticRegressionState, type MultiLabelState, type MultiTargetStrategy,
} from '../sklearn/linear_model.js'

export const MODEL_HEAD_NAME = 'model_head.json'
export const PICKLED_HEAD_NAME = 'model_head.pkl'
export const CONFIG_NAME = 'config_setfit.json'

/** A single-label target (class id or name) or a multi-hot vector. */
export type SetFitLabel = ClassLabel | number[]

export interface SetFitHeadParams {
  inFeatures: number
  /** Classes (softmax) or labels (multitarget sigmoid). 1 becomes 2, as setfit does. Default 2. */
  outFeatures?: number
  /** Logits are divided by (temperature + eps). Default 1. */
  temperature?: number
  eps?: number
  bias?: boolean
  multitarget?: boolean
  device?: DeviceName
}

export interface SetFitHeadState {
  head_type: 'SetFitHead'
  params: { in_features: number; out_features: number; temperature: number; eps: number; bias: boolean; multitarget: boolean }
  weight: number[][]
  bias: number[] | null
}

/** setfit.SetFitHead: logits = linear(x) / (temperature + eps); softmax or (multitarget) sigmoid. */
export class SetFitHead extends Module {
  readonly linear: Linear
  readonly inFeatures: number
  readonly outFeatures: number
  readonly temperature: number
  readonly eps: number
  readonly multitarget: boolean

  constructor(params: SetFitHeadParams) {
    super()
    let out = params.outFeatures ?? 2
    if (out === 1) {
      process.stderr.write('bertkit: SetFitHead: changing out_features from 1 to 2, since binary classification uses cross-entropy over two classes\n')
      out = 2
    }
    if (!Number.isInteger(params.inFeatures) || params.inFeatures < 1) throw new RangeError(`SetFitHead: inFeatures must be a positive integer, got ${params.inFeatures}`)
    if (!Number.isInteger(out) || out < 2) throw new RangeError(`SetFitHead: outFeatures must be an integer >= 1, got ${params.outFeatures}`)
    this.inFeatures = params.inFeatures
    this.outFeatures = out
    this.temperature = params.temperature ?? 1
    this.eps = params.eps ?? 1e-5
    this.multitarget = params.multitarget ?? false
    if (!(this.temperature + this.eps > 0)) throw new RangeError(`SetFitHead: temperature + eps must be positive, got ${this.temperature} + ${this.eps}`)
    this.linear = this.registerModule('linear', new Linear(this.inFeatures, out, { bias: params.bias ?? true, device: params.device }))
    // setfit's init: xavier_uniform_ weights, biases 0.01.
    const bound = Math.sqrt(6 / (this.inFeatures + out))
    const values = new Map<string, Float32Array>([['linear.weight', Float32Array.from({ length: out * this.inFeatures }, () => (2 * hostUniform() - 1) * bound)]])
    if (this.linear.bias) values.set('linear.bias', new Float32Array(out).fill(1e-2))
    this.loadStateDict(values)
  }

  /** Logits [rows, outFeatures] of embeddings [rows, inFeatures]. */
  forward(x: Tensor): Tensor {
    return scale(this.linear.forward(x), 1 / (this.temperature + this.eps))
  }

  /** Mean cross-entropy against int32 class ids, or mean BCE against 0/1 targets [rows, labels] (multitarget). */
  loss(logits: Tensor, labels: readonly SetFitLabel[]): Tensor {
    const [rows, width] = logits.shape
    if (labels.length !== rows) throw new RangeError(`SetFitHead.loss: ${rows} rows of logits but ${labels.length} labels`)
    if (this.multitarget) {
      const targets = new Int32Array(rows * width)
      labels.forEach((l, i) => {
        if (!Array.isArray(l) || l.length !== width || !l.every((v) => v === 0 || v === 1)) {
          throw new TypeError(`SetFitHead: label ${i} must be a 0/1 vector of length ${width}, got ${JSON.stringify(l)}`)
        }
        targets.set(l, i * width)
      })
      // BCE-with-logits of each element is two-class cross-entropy over (0, logit).
      const t = tensor(targets, { shape: [rows * width], dtype: 'int32', device: logits.device })
      return crossEntropy(zeroColumnPairs(reshape(logits, [rows * width])), t)
    }
    const ids = Int32Array.from(labels, (l, i) => {
      if (typeof l !== 'number' || !Number.isInteger(l) || l < 0 || l >= width) {
        throw new RangeError(`SetFitHead: label ${i} is ${JSON.stringify(l)}; a differentiable head takes class ids 0..${width - 1}`)
      }
      return l
    })
    return crossEntropy(logits, tensor(ids, { shape: [rows], dtype: 'int32', device: logits.device }))
  }

  /** Probabilities [rows][outFeatures] from embeddings, in eval mode. */
  predictProba(x: Embeddings): number[][] {
    this.eval()
    const logits = noGrad(() => tidy(() => {
      const t = tensor(x.data, { shape: [x.rows, x.cols], device: this.linear.weight.device })
      return this.forward(t).toFloat32Array()
    }))
    const w = this.outFeatures
    return Array.from({ length: x.rows }, (_, r) => {
      const row = Array.from(logits.subarray(r * w, (r + 1) * w))
      if (this.multitarget) return row.map((v) => 1 / (1 + Math.exp(-v)))
      const max = Math.max(...row)
      const e = row.map((v) => Math.exp(v - max))
      const sum = e.reduce((a, b) => a + b, 0)
      return e.map((v) => v / sum)
    })
  }

  predict(x: Embeddings): Array<number | number[]> {
    return this.predictProba(x).map((p) => (this.multitarget ? p.map((v) => (v >= 0.5 ? 1 : 0)) : p.indexOf(Math.max(...p))))
  }

  toJSON(): SetFitHeadState {
    const weight = this.linear.weight.toFloat32Array()
    return {
      head_type: 'SetFitHead',
      params: { in_features: this.inFeatures, out_features: this.outFeatures, temperature: this.temperature, eps: this.eps, bias: this.linear.bias !== null, multitarget: this.multitarget },
      weight: Array.from({ length: this.outFeatures }, (_, r) => Array.from(weight.subarray(r * this.inFeatures, (r + 1) * this.inFeatures))),
      bias: this.linear.bias ? Array.from(this.linear.bias.toFloat32Array()) : null,
    }
  }

  static fromJSON(state: SetFitHeadState, where: string, device?: DeviceName): SetFitHead {
    const p = state.params
    if (!p || typeof p.in_features !== 'number' || typeof p.out_features !== 'number') throw new TypeError(`${where}: "params" must give in_features and out_features`)
    const head = new SetFitHead({ inFeatures: p.in_features, outFeatures: p.out_features, temperature: p.temperature, eps: p.eps, bias: p.bias, multitarget: p.multitarget, device })
    if (!Array.isArray(state.weight) || state.weight.length !== head.outFeatures || !state.weight.every((r) => Array.isArray(r) && r.length === head.inFeatures)) {
      throw new RangeError(`${where}: "weight" must be ${head.outFeatures} rows of ${head.inFeatures} numbers`)
    }
    const values = new Map<string, Float32Array>([['linear.weight', Float32Array.from(state.weight.flat())]])
    if (head.linear.bias) {
      if (!Array.isArray(state.bias) || state.bias.length !== head.outFeatures) throw new RangeError(`${where}: "bias" must hold ${head.outFeatures} numbers`)
      values.set('linear.bias', Float32Array.from(state.bias))
    }
    head.loadStateDict(values)
    return head
  }
}

export type ModelHead = LogisticRegression | MultiLabelLogisticRegression | SetFitHead

export interface SetFitModelOptions extends SentenceTransformerOptions {
  /** "one-vs-rest" or "multi-output" for multi-label data (a 0/1 vector per text). */
  multiTargetStrategy?: MultiTargetStrategy | null
  /** A SetFitHead instead of LogisticRegression (for a new head). */
  useDifferentiableHead?: boolean
  /** LogisticRegression's (C, maxIter, tol, fitIntercept) or SetFitHead's (outFeatures, temperature, …) parameters. */
  headParams?: LogisticRegressionParams | Partial<SetFitHeadParams>
  normalizeEmbeddings?: boolean
  /** Names of the classes 0..n-1; predict returns these names. */
  labels?: string[] | null
}

export interface FitOptions {
  numEpochs: number
  batchSize?: number
  bodyLearningRate?: number
  headLearningRate?: number
  endToEnd?: boolean
  l2Weight?: number | null
  maxLength?: number | null
  showProgressBar?: boolean
  /** Seeds the order of the rows in each epoch. Default 42. */
  seed?: number
  /** Visit the rows in order (tests). Default true. */
  shuffle?: boolean
}

/** How to convert a setfit model whose head is pickled; the one line covers a LogisticRegression head. */
export function pickledHeadMessage(dir: string): string {
  const line = `python3 -c "import joblib,json,sys; d=sys.argv[1]; h=joblib.load(d+'/model_head.pkl'); json.dump({'head_type':'LogisticRegression','params':{'C':h.C,'max_iter':h.max_iter,'tol':h.tol,'fit_intercept':h.fit_intercept},'classes':h.classes_.tolist(),'coef':h.coef_.tolist(),'intercept':h.intercept_.tolist()},open(d+'/model_head.json','w'))" ${JSON.stringify(dir)}`
  return `${join(dir, PICKLED_HEAD_NAME)}: the head of this SetFit model is a Python pickle, which bertkit does not load (unpickling runs arbitrary code). ` +
    `Convert it once, in Python where setfit is installed:\n  ${line}\n` +
    `(that line covers a LogisticRegression head; for one-vs-rest, multi-output or SetFitHead heads run: python3 scripts/tools/setfit_head.py to-json ${JSON.stringify(dir)})`
}

export class SetFitModel {
  constructor(
    public modelBody: SentenceTransformer,
    public modelHead: ModelHead,
    public multiTargetStrategy: MultiTargetStrategy | null = null,
    public normalizeEmbeddings = false,
    public labels: string[] | null = null,
  ) {
    if (labels !== null && (!Array.isArray(labels) || !labels.every((l) => typeof l === 'string'))) throw new TypeError('SetFitModel: labels must be a list of strings')
  }

  get hasDifferentiableHead(): boolean {
    return this.modelHead instanceof SetFitHead
  }

  get id2label(): Record<number, string> {
    return Object.fromEntries((this.labels ?? []).map((l, i) => [i, l]))
  }

  get label2id(): Record<string, number> {
    return Object.fromEntries((this.labels ?? []).map((l, i) => [l, i]))
  }

  /**
   * A SetFit model folder (body + config_setfit.json + model_head.json), or
   * any sentence-transformers model (a new head is made). A folder whose
   * head is model_head.pkl is refused with the conversion to run.
   */
  static async fromPretrained(idOrDir: string, options: SetFitModelOptions = {}): Promise<SetFitModel> {
    const dir = await resolveSentenceTransformerDir(idOrDir, options)
    const strategy = options.multiTargetStrategy ?? null
    if (strategy !== null && !MULTI_TARGET_STRATEGIES.includes(strategy)) {
      throw new Error(`SetFitModel: multi_target_strategy ${JSON.stringify(strategy)} is not supported; use one of ${MULTI_TARGET_STRATEGIES.join(', ')}`)
    }
    if ((strategy as string) === 'classifier-chain') throw new Error('SetFitModel: multi_target_strategy "classifier-chain" is not supported by bertkit; use "one-vs-rest" or "multi-output"')
    const headPath = join(dir, MODEL_HEAD_NAME)
    if (!existsSync(headPath) && existsSync(join(dir, PICKLED_HEAD_NAME))) throw new Error(pickledHeadMessage(dir))
    const config: Record<string, unknown> = existsSync(join(dir, CONFIG_NAME)) ? readJsonObject(join(dir, CONFIG_NAME)) : {}
    const normalizeEmbeddings = options.normalizeEmbeddings ?? (config.normalize_embeddings === true)
    const labels = options.labels !== undefined ? options.labels : Array.isArray(config.labels) ? config.labels as string[] : null
    const body = await SentenceTransformer.fromPretrained(dir, options)
    try {
      const device = body.parameters()[0].device
      let head: ModelHead
      let headStrategy = strategy
      if (existsSync(headPath)) {
        ;({ head, strategy: headStrategy } = loadHead(headPath, device, strategy))
      } else if (options.useDifferentiableHead) {
        const params = (options.headParams ?? {}) as Partial<SetFitHeadParams>
        head = new SetFitHead({ ...params, inFeatures: body.getSentenceEmbeddingDimension(), multitarget: strategy !== null, device })
      } else {
        const params = (options.headParams ?? {}) as LogisticRegressionParams
        head = strategy ? new MultiLabelLogisticRegression(strategy, params) : new LogisticRegression(params)
      }
      return new SetFitModel(body, head, headStrategy, normalizeEmbeddings, labels)
    } catch (err) {
      body.dispose()
      throw err
    }
  }

  /** Embeddings of the texts from the body (normalised when normalizeEmbeddings). */
  encode(inputs: readonly string[], options: { batchSize?: number; showProgressBar?: boolean; progressLabel?: string } = {}): Embeddings {
    return this.modelBody.encode(inputs, { batchSize: options.batchSize ?? 32, normalizeEmbeddings: this.normalizeEmbeddings, showProgressBar: options.showProgressBar, progressLabel: options.progressLabel })
  }

  /** Class probabilities [texts][classes] (multi-label: [texts][labels], each the probability the label is on). */
  predictProba(inputs: string, options?: { batchSize?: number; showProgressBar?: boolean }): number[]
  predictProba(inputs: readonly string[], options?: { batchSize?: number; showProgressBar?: boolean }): number[][]
  predictProba(inputs: string | readonly string[], options: { batchSize?: number; showProgressBar?: boolean } = {}): number[] | number[][] {
    const single = typeof inputs === 'string'
    const texts = single ? [inputs] : checkTexts(inputs, 'predictProba')
    const embeddings = this.encode(texts, options)
    const head = this.modelHead
    const probs = head instanceof SetFitHead ? head.predictProba(embeddings) : head.predictProba(embeddings).map((r) => Array.from(r))
    return single ? probs[0] : probs
  }

  /**
   * Predicted classes: label names when `labels` is set (and useLabels), the
   * head's classes otherwise; multi-label: a 0/1 vector per text.
   */
  predict(inputs: string, options?: { batchSize?: number; useLabels?: boolean; showProgressBar?: boolean }): SetFitLabel
  predict(inputs: readonly string[], options?: { batchSize?: number; useLabels?: boolean; showProgressBar?: boolean }): SetFitLabel[]
  predict(inputs: string | readonly string[], options: { batchSize?: number; useLabels?: boolean; showProgressBar?: boolean } = {}): SetFitLabel | SetFitLabel[] {
    const single = typeof inputs === 'string'
    const texts = single ? [inputs] : checkTexts(inputs, 'predict')
    const embeddings = this.encode(texts, options)
    const head = this.modelHead
    let preds: SetFitLabel[] = head.predict(embeddings) as SetFitLabel[]
    if ((options.useLabels ?? true) && this.labels && this.labels.length > 0 && preds.every((p) => typeof p === 'number')) {
      preds = preds.map((p) => {
        const name = this.labels![p as number]
        if (name === undefined) throw new RangeError(`SetFitModel.predict: class ${p} has no name in labels (${this.labels!.length} given)`)
        return name
      })
    }
    return single ? preds[0] : preds
  }

  /**
   * Trains the head. LogisticRegression: fit on the body's embeddings of the
   * texts. SetFitHead: numEpochs of AdamW over batches, the body frozen unless
   * endToEnd, the learning rates halved every 5 epochs (torch's StepLR).
   */
  fit(xTrain: readonly string[], yTrain: readonly SetFitLabel[], options: FitOptions): void {
    checkTexts(xTrain, 'fit')
    if (yTrain.length !== xTrain.length) throw new RangeError(`SetFitModel.fit: ${xTrain.length} texts but ${yTrain.length} labels`)
    const head = this.modelHead
    if (!(head instanceof SetFitHead)) {
      // The head phase's progress: embedding the training texts (the fit itself takes milliseconds).
      const embeddings = this.encode(xTrain, { showProgressBar: options.showProgressBar ?? true, progressLabel: 'head: encode' })
      if (head instanceof MultiLabelLogisticRegression) {
        head.fit(embeddings, yTrain.map((y, i) => {
          if (!Array.isArray(y)) throw new TypeError(`SetFitModel.fit: multi_target_strategy ${this.multiTargetStrategy} needs a 0/1 vector per text; label ${i} is ${JSON.stringify(y)}`)
          return y
        }))
      } else {
        yTrain.forEach((y, i) => {
          if (Array.isArray(y)) throw new TypeError(`SetFitModel.fit: label ${i} is a vector; for multi-label data load the model with multiTargetStrategy "one-vs-rest" or "multi-output"`)
        })
        head.fit(embeddings, yTrain as ClassLabel[])
        // As setfit: string classes become the label names when none were given.
        if (this.labels === null && this.multiTargetStrategy === null && head.classes_!.every((c) => typeof c === 'string')) this.labels = head.classes_ as string[]
      }
      return
    }
    this.fitDifferentiableHead(head, xTrain, yTrain, options)
  }

  private fitDifferentiableHead(head: SetFitHead, xTrain: readonly string[], yTrain: readonly SetFitLabel[], options: FitOptions): void {
    const { numEpochs } = options
    const batchSize = options.batchSize ?? 2
    if (!Number.isInteger(numEpochs) || numEpochs < 0) throw new RangeError(`SetFitModel.fit: numEpochs must be a non-negative integer, got ${numEpochs}`)
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`SetFitModel.fit: batchSize must be a positive integer, got ${batchSize}`)
    const headLr = options.headLearningRate ?? 1e-2
    const bodyLr = options.bodyLearningRate || headLr
    const l2 = options.l2Weight || 1e-2
    const body = this.modelBody
    let maxLength = options.maxLength ?? body.maxSeqLength
    if (maxLength > body.maxSeqLength) {
      process.stderr.write(`bertkit: the specified max_length ${maxLength} is greater than the maximum length of the body (${body.maxSeqLength}); using ${body.maxSeqLength}\n`)
      maxLength = body.maxSeqLength
    }
    const endToEnd = options.endToEnd ?? false
    body.train()
    head.train()
    const bodyParams = body.parameters()
    const frozenBefore = bodyParams.map((p) => p.requiresGrad)
    if (!endToEnd) for (const p of bodyParams) p.requiresGrad = false
    const savedMax = body.maxSeqLength
    body.maxSeqLength = maxLength
    const optimizer = new AdamW([
      { params: bodyParams, lr: bodyLr, weightDecay: l2 },
      { params: head.parameters(), lr: headLr, weightDecay: l2 },
    ])
    const baseLrs = optimizer.paramGroups.map((g) => g.lr)
    const generator = new SeededGenerator(options.seed ?? 42)
    const batchesPerEpoch = Math.ceil(xTrain.length / batchSize)
    const progress = new Progress(numEpochs * batchesPerEpoch, options.showProgressBar ?? true, 'head')
    let step = 0
    try {
      for (let epoch = 0; epoch < numEpochs; epoch++) {
        // torch's StepLR(step_size=5, gamma=0.5), stepped after every epoch.
        const factor = 0.5 ** Math.floor(epoch / 5)
        optimizer.paramGroups.forEach((g, i) => { g.lr = baseLrs[i] * factor })
        const order = options.shuffle === false ? xTrain.map((_, i) => i) : generator.permutation(xTrain.length)
        for (let start = 0; start < order.length; start += batchSize) {
          const idx = order.slice(start, start + batchSize)
          const loss = tidy(() => {
            const features = body.tokenize(idx.map((i) => xTrain[i]))
            let emb = body.forward(features)
            if (this.normalizeEmbeddings) emb = normalize(emb)
            const l = head.loss(head.forward(emb), idx.map((i) => yTrain[i]))
            l.backward()
            return l.item()
          })
          optimizer.step()
          optimizer.zeroGrad()
          progress.update(++step, { loss, lr: optimizer.paramGroups[1].lr })
        }
      }
    } finally {
      progress.stop()
      optimizer.dispose()
      body.maxSeqLength = savedMax
      bodyParams.forEach((p, i) => { p.requiresGrad = frozenBefore[i] })
    }
  }

  /** Stops gradients to the body and/or the head (both when no component is named). */
  freeze(component: 'body' | 'head' | null = null): void {
    this.setFrozen(component, true)
  }

  unfreeze(component: 'body' | 'head' | null = null): void {
    this.setFrozen(component, false)
  }

  private setFrozen(component: 'body' | 'head' | null, frozen: boolean): void {
    if (component === null || component === 'body') for (const p of this.modelBody.parameters()) p.requiresGrad = !frozen
    if ((component === null || component === 'head') && this.modelHead instanceof SetFitHead) for (const p of this.modelHead.parameters()) p.requiresGrad = !frozen
  }

  /** The body as sentence-transformers files, config_setfit.json, and the head as model_head.json. */
  savePretrained(dir: string): void {
    makeDirs(dir, 'model directory')
    this.modelBody.save(dir)
    atomicWriteFile(join(dir, CONFIG_NAME), JSON.stringify({ normalize_embeddings: this.normalizeEmbeddings, labels: this.labels }, null, 2) + '\n')
    const head = this.modelHead
    if (head instanceof LogisticRegression && !head.coef_) throw new Error('SetFitModel.savePretrained: the head is not fitted yet; train the model first')
    atomicWriteFile(join(dir, MODEL_HEAD_NAME), JSON.stringify(head.toJSON()) + '\n')
  }

  dispose(): void {
    this.modelBody.dispose()
    if (this.modelHead instanceof SetFitHead) this.modelHead.dispose()
  }
}

function checkTexts(inputs: readonly string[], where: string): readonly string[] {
  if (!Array.isArray(inputs)) throw new TypeError(`SetFitModel.${where}: inputs must be a string or an array of strings`)
  inputs.forEach((t, i) => {
    if (typeof t !== 'string') throw new TypeError(`SetFitModel.${where}: inputs[${i}] is ${t === null ? 'null' : typeof t}, not a string`)
  })
  return inputs
}

/** Reads model_head.json. */
function loadHead(path: string, device: DeviceName, requested: MultiTargetStrategy | null): { head: ModelHead; strategy: MultiTargetStrategy | null } {
  const state = readJson(path) as { head_type?: unknown }
  if (!state || typeof state !== 'object') throw new Error(`${path}: expected a JSON object`)
  let head: ModelHead
  let strategy: MultiTargetStrategy | null = null
  switch (state.head_type) {
    case 'LogisticRegression':
      head = LogisticRegression.fromJSON(state as LogisticRegressionState, path)
      break
    case 'OneVsRestClassifier':
    case 'MultiOutputClassifier':
      head = MultiLabelLogisticRegression.fromJSON(state as MultiLabelState, path)
      strategy = head.strategy
      break
    case 'SetFitHead':
      head = SetFitHead.fromJSON(state as SetFitHeadState, path, device)
      strategy = head.multitarget ? (requested ?? 'one-vs-rest') : null
      break
    default:
      throw new Error(`${path}: head_type ${JSON.stringify(state.head_type)} is not one of LogisticRegression, OneVsRestClassifier, MultiOutputClassifier, SetFitHead`)
  }
  if (requested !== null && strategy === null) process.stderr.write(`bertkit: ${path} holds a single-label head; multiTargetStrategy ${requested} is ignored\n`)
  return { head, strategy }
}
