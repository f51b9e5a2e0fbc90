// sentence-transformers' Dense module: activation(linear(embedding)), weights
// in model.safetensors as linear.weight / linear.bias, config.json naming
// the activation by its torch class.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { Module } from '../../nn/module.js'
import { Linear } from '../../nn/layers.js'
import { activation, type ActivationName } from '../../tensor/ops.js'
import type { Tensor } from '../../tensor/tensor.js'
import type { DeviceName } from '../../tensor/device.js'
import { readSafetensors, writeSafetensors, atomicWriteFile } from '../../hub/safetensors.js'
import { makeDirs } from '../../hub/dirs.js'
import { readJsonObject } from './io.js'

// torch activation classes → bertkit's activation op (null: identity).
const ACTIVATIONS: Record<string, ActivationName | null> = {
  'torch.nn.modules.activation.Tanh': 'tanh',
  'torch.nn.modules.linear.Identity': null,
  'torch.nn.modules.activation.ReLU': 'relu',
  'torch.nn.modules.activation.GELU': 'gelu',
}

export class Dense extends Module {
  readonly linear: Linear

  constructor(readonly inFeatures: number, readonly outFeatures: number,
    readonly activationFunction: string = 'torch.nn.modules.activation.Tanh', options: { bias?: boolean; device?: DeviceName } = {}) {
    super()
    if (!Object.hasOwn(ACTIVATIONS, activationFunction)) {
      throw new Error(`Dense: activation_function ${JSON.stringify(activationFunction)} is not supported; supported: ${Object.keys(ACTIVATIONS).join(', ')}`)
    }
    this.linear = this.registerModule('linear', new Linear(inFeatures, outFeatures, { bias: options.bias ?? true, device: options.device }))
  }

  static load(dir: string, options: { device?: DeviceName } = {}): Dense {
    const configPath = join(dir, 'config.json')
    const config = readJsonObject(configPath)
    const inF = config.in_features, outF = config.out_features
    if (typeof inF !== 'number' || typeof outF !== 'number') throw new Error(`${configPath}: in_features and out_features must be numbers`)
    if (config.use_residual === true) throw new Error(`${configPath}: use_residual is not supported`)
    const fn = typeof config.activation_function === 'string' ? config.activation_function : 'torch.nn.modules.activation.Tanh'
    const dense = new Dense(inF, outF, fn, { bias: config.bias !== false, device: options.device })
    const weights = join(dir, 'model.safetensors')
    if (!existsSync(weights)) {
      const bin = existsSync(join(dir, 'pytorch_model.bin'))
      throw new Error(`${dir}: no model.safetensors for the Dense module${bin ? ' (found pytorch_model.bin: re-save the model with sentence-transformers >= 2.3, which writes safetensors)' : ''}`)
    }
    const { tensors } = readSafetensors(weights)
    const values = new Map<string, Float32Array>()
    for (const [name, t] of tensors) {
      if (!(t.data instanceof Float32Array)) throw new Error(`${weights}: tensor "${name}" must be floating point`)
      values.set(name, t.data)
    }
    dense.loadStateDict(values, { strict: true, source: weights })
    return dense
  }

  forward(x: Tensor): Tensor {
    const y = this.linear.forward(x)
    const act = ACTIVATIONS[this.activationFunction]
    return act ? activation(y, act) : y
  }

  save(dir: string): void {
    makeDirs(dir, 'Dense module directory')
    writeSafetensors(join(dir, 'model.safetensors'), [...this.namedParameters()].map(([name, p]) => [name, { dtype: 'F32' as const, shape: p.shape, data: () => p.toFloat32Array() }] as const), { format: 'pt' })
    const config = { in_features: this.inFeatures, out_features: this.outFeatures, bias: this.linear.bias !== null, activation_function: this.activationFunction }
    atomicWriteFile(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n')
  }
}
