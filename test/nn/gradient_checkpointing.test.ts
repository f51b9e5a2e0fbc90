// Gradient checkpointing: with dropout on, a step with checkpointed encoder
// layers gives bit-identical loss and gradients to the plain step, for every
// encoder family, with frozen lower layers and with LoRA on a frozen base
// (where torch's reentrant checkpoint loses the gradients); it keeps less
// memory; the Philox stream ends where the plain run's does.
import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { AutoModelForSequenceClassification } from '../../lib/models/auto.js'
import { BertConfig } from '../../lib/models/bert/configuration_bert.js'
import { BertForSequenceClassification } from '../../lib/models/bert/modeling_bert.js'
import { freezeEmbeddings, freezeEncoderLayers } from '../../lib/nn/freezing.js'
import { getPeftModel, LoraConfig } from '../../lib/peft/index.js'
import { Module } from '../../lib/nn/module.js'
import { Linear } from '../../lib/nn/layers.js'
import { setUnpadding } from '../../lib/tensor/packing.js'

// These runs compare checkpointed training with plain training bit for bit.
// Under checkpointing a training forward runs padded (Module.unpadsThisStep),
// so the plain runs are made padded too; unpadded vs padded is
// test/models/unpadded.test.ts's subject.
setUnpadding('off')
import { tensor, tidy, manualSeed, getRandomState, memoryStats, synchronize, type Tensor } from '../../lib/tensor/index.js'
import { checkpoint } from '../../lib/tensor/checkpoint.js'
import { native } from '../../lib/native.js'

const fixtures = join(__dirname, '..', '..', '..', 'test', 'fixtures')

interface Model extends Module {
  forward(inputs: Record<string, Tensor | undefined>): { loss: Tensor | null; logits: Tensor }
}

function inputsOf(dir: string): Record<string, Tensor | undefined> {
  const raw = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')) as Record<string, number[][] | number[]>
  const ids = raw.input_ids as number[][]
  const shape = [ids.length, ids[0].length]
  const int2 = (x: number[][] | undefined) => (x ? tensor(Int32Array.from(x.flat()), { shape, dtype: 'int32' }) : undefined)
  // A row of padding only makes the loss ignore nothing useful: give every row a token.
  const mask = (raw.attention_mask as number[][]).map((row) => (row.every((v) => v === 0) ? row.map((_, j) => (j === 0 ? 1 : 0)) : row))
  const regression = (raw.labels as number[]).some((v) => !Number.isInteger(v))
  const labels = regression ? tensor(Float32Array.from(raw.labels as number[])) : tensor(Int32Array.from((raw.labels as number[]).map((v) => Math.min(1, v))), { dtype: 'int32' })
  return {
    inputIds: int2(ids), attentionMask: int2(mask), tokenTypeIds: int2(raw.token_type_ids as number[][] | undefined),
    labels,
  }
}

/** Loss, every gradient (null for none) and the Philox offset after one forward + backward in training mode. */
function step(model: Model, inputs: Record<string, Tensor | undefined>, seed: number): { loss: number; grads: Map<string, Float32Array | null>; offset: bigint } {
  for (const p of model.parameters()) {
    p.grad?.dispose()
    p.grad = null
  }
  model.train()
  manualSeed(seed)
  const loss = tidy(() => {
    const out = model.forward(inputs)
    out.loss!.backward()
    return out.loss!.item()
  })
  const grads = new Map<string, Float32Array | null>()
  for (const [name, p] of model.namedParameters()) grads.set(name, p.grad ? p.grad.toFloat32Array() : null)
  return { loss, grads, offset: getRandomState().offset }
}

function sameBits(t: Test, a: ReturnType<typeof step>, b: ReturnType<typeof step>, what: string): void {
  t.equal(b.loss, a.loss, `${what}: same loss`)
  t.equal(b.offset, a.offset, `${what}: the Philox stream ends where the plain run's does`)
  const differing: string[] = []
  let compared = 0
  for (const [name, ga] of a.grads) {
    const gb = b.grads.get(name)!
    if ((ga === null) !== (gb === null)) {
      differing.push(`${name} (gradient ${ga === null ? 'only with' : 'only without'} checkpointing)`)
      continue
    }
    if (ga === null || gb === null) continue
    compared++
    if (!ga.every((v, i) => Object.is(v, gb[i]) || v === gb[i])) differing.push(name)
  }
  t.same(differing, [], `${what}: ${compared} gradients bit-identical`)
}

/** Counts how often each encoder layer's forward runs (twice per step for a checkpointed layer that trains: forward, then again in backward). */
function countLayerCalls(model: Module): number[] {
  const counts: number[] = []
  for (const [name, m] of model.namedModules()) {
    if (!/(^|\.)(encoder|transformer)\.layer\.\d+$/.test(name)) continue
    const i = counts.push(0) - 1
    const layer = m as unknown as { forward: (...a: unknown[]) => unknown }
    const forward = layer.forward.bind(layer)
    layer.forward = (...a: unknown[]) => {
      counts[i]++
      return forward(...a)
    }
  }
  return counts
}

async function load(dir: string): Promise<Model> {
  return await AutoModelForSequenceClassification.fromPretrained(dir) as unknown as Model
}

const families = [['BERT', 'bert/three_labels'], ['RoBERTa', 'roberta/base'], ['DistilBERT', 'distilbert/base'],
  ['DeBERTa-v3 (shared keys, c2p+p2c)', 'deberta_v2/v3'], ['DeBERTa-v2 (c2p, own position projections)', 'deberta_v2/unshared']] as const

for (const [family, path] of families) {
  t.test(`${family}: checkpointed layers give the plain run's gradients, bit for bit`, async (t) => {
    const dir = join(fixtures, path)
    const inputs = inputsOf(dir)
    const model = await load(dir)
    const plain = step(model, inputs, 7)
    t.notOk(model.isGradientCheckpointing, 'off by default')
    model.gradientCheckpointingEnable()
    t.ok(model.isGradientCheckpointing, 'is_gradient_checkpointing')
    const ckpt = step(model, inputs, 7)
    sameBits(t, plain, ckpt, 'full fine-tuning')
    t.ok([...plain.grads.values()].filter((g) => g !== null).length > 10, 'the run trains many tensors')

    // Frozen embeddings and layer 0: layer 1's input needs no gradient, its weights do.
    model.gradientCheckpointingDisable()
    freezeEmbeddings(model)
    freezeEncoderLayers(model, 0, 0)
    const plainFrozen = step(model, inputs, 8)
    model.gradientCheckpointingEnable()
    const calls = countLayerCalls(model)
    const ckptFrozen = step(model, inputs, 8)
    if (family.startsWith('DeBERTa')) t.same(calls, [2, 2], 'both layers recomputed: they read the relative-position table, which still trains')
    else t.same(calls, [1, 2], 'the frozen layer 0 runs once; layer 1 (input without gradient, weights with) is recomputed in backward')
    sameBits(t, plainFrozen, ckptFrozen, 'embeddings + layer 0 frozen')
    const layer1 = [...ckptFrozen.grads].filter(([n, g]) => /layer\.1\./.test(n) && g !== null)
    t.ok(layer1.length > 0 && layer1.every(([, g]) => g!.some((v) => v !== 0)), 'layer 1 weights get (non-zero) gradients above frozen layers')
    t.ok([...ckptFrozen.grads].filter(([n]) => /layer\.0\.|(^|\.)embeddings\./.test(n)).every(([, g]) => g === null), 'frozen weights get none')
    model.dispose()
    for (const v of Object.values(inputs)) v?.dispose()
  })
}

t.test('LoRA on a frozen base (torch\'s reentrant checkpoint fails here: "element 0 of tensors does not require grad")', async (t) => {
  // RoBERTa also without peft's SEQ_CLS task (no modules_to_save: only the adapters train).
  for (const [family, path, targets, taskType] of [['BERT', 'bert/three_labels', ['query', 'value'], 'SEQ_CLS'], ['RoBERTa', 'roberta/base', ['query', 'value'], 'SEQ_CLS'], ['RoBERTa', 'roberta/base', ['query', 'value'], undefined],
    ['DistilBERT', 'distilbert/base', ['q_lin', 'v_lin'], 'SEQ_CLS'], ['DeBERTa-v3', 'deberta_v2/v3', ['query_proj', 'value_proj'], 'SEQ_CLS']] as const) {
    const dir = join(fixtures, path)
    const inputs = inputsOf(dir)
    const base = await load(dir)
    const model = getPeftModel(base as never, new LoraConfig({ r: 4, loraAlpha: 8, loraDropout: 0.1, targetModules: [...targets], ...(taskType ? { taskType } : {}) }), { seed: 3 }) as unknown as Model
    // A non-zero B, so the adapters' A matrices get gradients too.
    for (const [name, p] of model.namedParameters()) if (/lora_B/.test(name)) p.buffer.write(Float32Array.from({ length: p.numel }, (_, i) => Math.sin(i + 1) * 0.05))
    const plain = step(model, inputs, 11)
    model.gradientCheckpointingEnable()
    const calls = countLayerCalls(model)
    const ckpt = step(model, inputs, 11)
    t.same(calls, [2, 2], `${family}: both layers recomputed in backward although no input of theirs needs a gradient`)
    sameBits(t, plain, ckpt, `${family} + LoRA`)
    const loraGrads = [...ckpt.grads].filter(([n, g]) => /lora_[AB]/.test(n) && g !== null)
    t.ok(loraGrads.length === 8 && loraGrads.every(([, g]) => g!.some((v) => v !== 0)), `${family}: every adapter matrix of both layers gets a gradient (${loraGrads.length})`)
    t.same([...ckpt.grads].filter(([n, g]) => (g !== null) !== /lora_|modules_to_save/.test(n)).map(([n]) => n), [], `${family}: the frozen base gets no gradient`)
    model.dispose()
    for (const v of Object.values(inputs)) v?.dispose()
  }
})

t.test('gradient accumulation over two micro-batches: the sums match too', async (t) => {
  const dir = join(fixtures, 'bert/three_labels')
  const inputs = inputsOf(dir)
  const model = await load(dir)
  const twice = () => {
    for (const p of model.parameters()) {
      p.grad?.dispose()
      p.grad = null
    }
    manualSeed(5)
    for (let k = 0; k < 2; k++) tidy(() => model.forward(inputs).loss!.backward())
    return [...model.namedParameters()].map(([, p]) => p.grad!.toFloat32Array())
  }
  model.train()
  const a = twice()
  model.gradientCheckpointingEnable()
  const b = twice()
  t.ok(a.every((g, i) => g.every((v, j) => v === b[i][j])), 'bit-identical accumulated gradients')
  model.dispose()
  for (const v of Object.values(inputs)) v?.dispose()
})

t.test('checkpointing keeps fewer activations (peak of live tensor bytes)', async (t) => {
  const config = new BertConfig({ vocab_size: 100, hidden_size: 64, num_hidden_layers: 6, num_attention_heads: 4, intermediate_size: 256, max_position_embeddings: 128 })
  const model = new BertForSequenceClassification(config)
  const [batch, seq] = [8, 128]
  const ids = tensor(Int32Array.from({ length: batch * seq }, (_, i) => (i * 7) % 100), { shape: [batch, seq], dtype: 'int32' })
  const labels = tensor(Int32Array.from({ length: batch }, (_, i) => i % 2), { dtype: 'int32' })
  const peak = () => {
    for (const p of model.parameters()) {
      p.grad?.dispose()
      p.grad = null
    }
    synchronize()
    native().resetPeakMemory()
    const before = memoryStats().cpuBytes
    tidy(() => model.forward({ inputIds: ids, labels }).loss!.backward())
    synchronize()
    return memoryStats().peakCpuBytes - before
  }
  model.train()
  const plain = peak()
  model.gradientCheckpointingEnable()
  const ckpt = peak()
  t.ok(ckpt < 0.6 * plain, `peak above the weights: ${(ckpt / 2 ** 20).toFixed(1)} MiB with checkpointing, ${(plain / 2 ** 20).toFixed(1)} MiB without`)
  model.eval()
  const evalPeak = peak()
  t.ok(evalPeak > 1.3 * ckpt, `in eval mode the layers run plainly (the switch acts only while training): ${(evalPeak / 2 ** 20).toFixed(1)} MiB`)
  model.dispose()
  ids.dispose()
  labels.dispose()
})

t.test('checkpoint(): errors and plain paths', async (t) => {
  class NoEncoder extends Module {
    readonly lin = this.registerModule('lin', new Linear(2, 2))
  }
  const m = new NoEncoder()
  t.throws(() => m.gradientCheckpointingEnable(), /NoEncoder does not support gradient checkpointing/)
  const x = tensor([1, 2, 3, 4], { shape: [2, 2] })
  t.throws(() => checkpoint((a) => a!, [x], m.parameters()), /returned one of its inputs/)
  // Nothing needs a gradient: no node, the block just runs.
  for (const p of m.parameters()) p.requiresGrad = false
  const y = checkpoint((a) => m.lin.forward(a!), [x], m.parameters())
  t.equal(y.gradFn, null, 'no tape when nothing trains')
  m.dispose()
  x.dispose()
  y.dispose()
})
