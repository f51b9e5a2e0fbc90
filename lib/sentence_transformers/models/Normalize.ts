// sentence-transformers' Normalize module: each embedding scaled to unit length.
import { mkdirSync } from 'node:fs'
import { Module } from '../../nn/module.js'
import type { Tensor } from '../../tensor/tensor.js'
import { normalize } from '../functional.js'

export class Normalize extends Module {
  forward(x: Tensor): Tensor {
    return normalize(x)
  }

  /** Nothing to store; the folder is made so that modules.json points at something. */
  save(dir: string): void {
    mkdirSync(dir, { recursive: true })
  }
}
