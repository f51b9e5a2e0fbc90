// The CPU stream (native/src/cpu/cpu_stream.h): ops are queued on one thread
// and run in call order; host reads wait, host writes keep their place in the
// order; an op that fails makes the later ones skip until its error is read;
// synchronizeAsync waits without holding the event loop; setCpuAsync(false)
// runs every op inline. Results must be identical either way.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { native, DEVICE_CODE, DTYPE_CODE, type NativeBuffer } from '../../lib/native.js'
import { f32Buffer, randomArray, freeAll } from '../helpers/reference.js'

const N = native()
const CPU = DEVICE_CODE.cpu

function withAsync<T>(on: boolean, fn: () => T): T {
  const before = N.getCpuAsync()
  N.setCpuAsync(on)
  try {
    return fn()
  } finally {
    N.setCpuAsync(before)
  }
}

/** A chain of dependent ops (product, bias, GELU, layer norm, sum), read at the end. */
function chain(): { out: Float32Array; total: Float32Array } {
  const m = 37, k = 64, n = 48
  const a = f32Buffer(CPU, randomArray(m * k, 1))
  const w = f32Buffer(CPU, randomArray(k * n, 2))
  const bias = f32Buffer(CPU, randomArray(n, 3))
  const gamma = f32Buffer(CPU, randomArray(n, 4, 0.5, 1.5))
  const beta = f32Buffer(CPU, randomArray(n, 5))
  const h = new N.NativeBuffer(CPU, DTYPE_CODE.float32, m * n)
  const g = new N.NativeBuffer(CPU, DTYPE_CODE.float32, m * n)
  const y = new N.NativeBuffer(CPU, DTYPE_CODE.float32, m * n)
  const mean = new N.NativeBuffer(CPU, DTYPE_CODE.float32, m)
  const rstd = new N.NativeBuffer(CPU, DTYPE_CODE.float32, m)
  const total = f32Buffer(CPU, [0])
  try {
    N.gemm(false, false, m, n, k, 1, a, w, 0, h, 1, 0, 0, 0)
    N.addBiasRows(m, n, bias, h)
    N.activationForward(0, m * n, h, g)
    N.layernormForward(m, n, 1e-12, g, null, gamma, beta, y, null, mean, rstd)
    N.sum(m * n, y, total)
    return { out: y.read() as Float32Array, total: total.read() as Float32Array }
  } finally {
    freeAll(a, w, bias, gamma, beta, h, g, y, mean, rstd, total)
  }
}

t.test('queued and inline execution give bit-identical results', async (t) => {
  const queued = withAsync(true, chain)
  const inline = withAsync(false, chain)
  t.same(Array.from(queued.out), Array.from(inline.out))
  t.same(Array.from(queued.total), Array.from(inline.total))
  t.ok(N.getCpuAsync(), 'queueing is the default')
})

t.test('a host write keeps its place in the order of queued ops', async (t) => {
  withAsync(true, () => {
    // A product large enough to still be queued or running when the write comes.
    const size = 384
    const a = f32Buffer(CPU, randomArray(size * size, 7))
    const b = f32Buffer(CPU, new Float32Array(size * size).fill(1))
    const c1 = new N.NativeBuffer(CPU, DTYPE_CODE.float32, size * size)
    const c2 = new N.NativeBuffer(CPU, DTYPE_CODE.float32, size * size)
    try {
      for (let i = 0; i < 4; i++) N.gemm(false, false, size, size, size, 1, a, b, 0, c1, 1, 0, 0, 0)
      b.write(new Float32Array(size * size).fill(2)) // after the products above, before the one below
      N.gemm(false, false, size, size, size, 1, a, b, 0, c2, 1, 0, 0, 0)
      const first = c1.read() as Float32Array
      const second = c2.read() as Float32Array
      let mismatches = 0
      for (let i = 0; i < first.length; i++) if (second[i] !== 2 * first[i]) mismatches++
      t.equal(mismatches, 0, 'the second product saw the new values, the first ones the old')
    } finally {
      freeAll(a, b, c1, c2)
    }
  })
})

t.test('a queued op that fails reports at the next read; the ops after it are skipped', async (t) => {
  withAsync(true, () => {
    const vocab = 5, dim = 3, n = 4
    const table = f32Buffer(CPU, randomArray(vocab * dim, 9))
    // Written in two parts, so the addon keeps no host copy of the ids and the
    // check runs on the stream, in order, when the embedding op does.
    const ids = new N.NativeBuffer(CPU, DTYPE_CODE.int32, n)
    ids.write(Int32Array.from([1, 2]), 0)
    ids.write(Int32Array.from([7, 0]), 2)
    const out = f32Buffer(CPU, new Float32Array(n * dim).fill(-1))
    const after = f32Buffer(CPU, [5])
    try {
      t.doesNotThrow(() => N.embeddingForward(n, dim, vocab, ids, table, out), 'queued: no error yet')
      N.fill(after, 1, 42) // queued after the failing check: must not run
      t.throws(() => N.synchronize(CPU), /embeddingForward: ids\[2\] = 7 is out of range \[0, 5\)/)
      t.same(Array.from(out.read() as Float32Array), new Array(n * dim).fill(-1), 'the embedding never touched its output')
      t.same(Array.from(after.read() as Float32Array), [5], 'the op queued after the failure was skipped')
      N.fill(after, 1, 43)
      t.same(Array.from(after.read() as Float32Array), [43], 'once the error is read, ops run again')
    } finally {
      freeAll(table, ids, out, after)
    }
  })
})

t.test('ids written whole are checked at once, on the calling thread', async (t) => {
  withAsync(true, () => {
    const table = f32Buffer(CPU, randomArray(10, 1))
    const ids = new N.NativeBuffer(CPU, DTYPE_CODE.int32, 2)
    ids.write(Int32Array.from([0, 9]))
    const out = new N.NativeBuffer(CPU, DTYPE_CODE.float32, 4)
    try {
      t.throws(() => N.embeddingForward(2, 2, 5, ids, table, out), /embeddingForward: ids\[1\] = 9 is out of range \[0, 5\)/)
      t.doesNotThrow(() => N.synchronize(CPU), 'nothing was queued, nothing is pending')
      t.same(Array.from(ids.read() as Int32Array), [0, 9], 'int32 reads come from the host copy')
    } finally {
      freeAll(table, ids, out)
    }
  })
})

t.test('synchronizeAsync waits off the event loop and rejects with a queued error', async (t) => {
  N.setCpuAsync(true)
  const size = 512
  const a = f32Buffer(CPU, randomArray(size * size, 3))
  const c = new N.NativeBuffer(CPU, DTYPE_CODE.float32, size * size)
  const bufs: NativeBuffer[] = [a, c]
  try {
    for (let i = 0; i < 8; i++) N.gemm(false, true, size, size, size, 1, a, a, 0, c, 1, 0, 0, 0)
    let timerRan = false
    setTimeout(() => { timerRan = true }, 0)
    await N.synchronizeAsync(CPU)
    t.ok(timerRan, 'a timer fired while the queued products ran')

    const ids = new N.NativeBuffer(CPU, DTYPE_CODE.int32, 2)
    bufs.push(ids)
    ids.write(Int32Array.from([0]), 0)
    ids.write(Int32Array.from([-3]), 1)
    const out = new N.NativeBuffer(CPU, DTYPE_CODE.float32, 2)
    bufs.push(out)
    N.embeddingForward(2, 1, 4, ids, a, out)
    await t.rejects(N.synchronizeAsync(CPU), /ids\[1\] = -3 is out of range/)
    await t.resolves(N.synchronizeAsync(CPU), 'the error was consumed')
  } finally {
    freeAll(...bufs)
  }
})

t.test('switching modes drains the queue first', async (t) => {
  N.setCpuAsync(true)
  const x = f32Buffer(CPU, [1, 2, 3])
  try {
    N.fill(x, 3, 7)
    N.setCpuAsync(false)
    t.notOk(N.getCpuAsync())
    N.fill(x, 3, 8)
    t.same(Array.from(x.read() as Float32Array), [8, 8, 8])
  } finally {
    N.setCpuAsync(true)
    freeAll(x)
  }
})

// A released block of the block cache (64 KiB and up) goes back to the cache
// at once, while queued ops may still use it: its next owner's ops are queued
// after them, so they run after them.
t.test('a freed block is reused at once, its next owner\'s ops running after the queued ones', async (t) => {
  withAsync(true, () => {
    const size = 384, n = size * size // 576 KiB of float32: a cached size
    const a = f32Buffer(CPU, randomArray(n, 11))
    const b = f32Buffer(CPU, randomArray(n, 12))
    const c = new N.NativeBuffer(CPU, DTYPE_CODE.float32, n)
    const out = new N.NativeBuffer(CPU, DTYPE_CODE.float32, n)
    let src: NativeBuffer | null = new N.NativeBuffer(CPU, DTYPE_CODE.float32, n)
    let next: NativeBuffer | null = null
    try {
      // Products first, so that what follows is still queued when the block changes hands.
      for (let i = 0; i < 4; i++) N.gemm(false, false, size, size, size, 1, a, b, 0, c, 1, 0, 0, 0)
      N.fill(src, n, 3)
      N.axpby(n, 1, src, 0, out) // out = src, read from the block after the products
      const before = N.memoryStats().cpuCachedBytes
      src.free()
      src = null
      const cached = N.memoryStats().cpuCachedBytes
      t.ok(cached >= before + n * 4, `the block is back in the cache before its queued ops ran (${before} -> ${cached} bytes)`)
      next = new N.NativeBuffer(CPU, DTYPE_CODE.float32, n)
      t.equal(N.memoryStats().cpuCachedBytes, before, 'the next buffer of that size takes it')
      N.fill(next, n, 5)
      t.ok((out.read() as Float32Array).every((v) => v === 3), 'the previous owner\'s queued copy read its values')
      t.ok((next.read() as Float32Array).every((v) => v === 5), 'the new owner\'s fill ran after it')
    } finally {
      freeAll(a, b, c, out, src, next)
    }
  })
})

// When giving a block back pushes the cache over its limit, the block it drops
// (the oldest) may still be read by a queued op: it is unmapped only after
// that op. A child with a 1 MiB cache: unmapped at once, the queued copy would
// read unmapped memory and the child would die of SIGSEGV.
t.test('a block the cache drops is unmapped only after the queued ops that use it', async (t) => {
  const child = `
const { native, DTYPE_CODE } = require(${JSON.stringify(join(__dirname, '..', '..', 'lib', 'native.js'))})
const N = native()
const F32 = DTYPE_CODE.float32, n = 160 * 1024 // 640 KiB: one fits the 1 MiB cache, two do not
const size = 512
const a = new N.NativeBuffer(0, F32, size * size), b = new N.NativeBuffer(0, F32, size * size), c = new N.NativeBuffer(0, F32, size * size)
N.fill(a, size * size, 0.5); N.fill(b, size * size, 0.25)
for (let i = 0; i < 6; i++) N.gemm(false, false, size, size, size, 1, a, b, 0, c, 1, 0, 0, 0)
const first = new N.NativeBuffer(0, F32, n), out = new N.NativeBuffer(0, F32, n), second = new N.NativeBuffer(0, F32, n)
N.fill(first, n, 2)
N.axpby(n, 1, first, 0, out) // queued behind the products
first.free() // cached at once
second.free() // over the limit: first is dropped while the copy above still waits
const values = out.read()
console.log(JSON.stringify({ async: N.getCpuAsync(), ok: values.every((v) => v === 2), cached: N.memoryStats().cpuCachedBytes }))
`
  const r = spawnSync(process.execPath, ['-e', child], { encoding: 'utf8', env: { ...process.env, BERTKIT_CPU_CACHE_MB: '1', BERTKIT_CPU_ASYNC: '1' }, timeout: 120_000 })
  t.equal(r.signal, null, `the child was not killed (${r.signal ?? 'no signal'}): ${r.stderr}`)
  t.equal(r.status, 0, `the child exited cleanly: ${r.stderr}`)
  const got = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { async?: boolean; ok?: boolean; cached?: number }
  t.equal(got.async, true, 'the child queued its ops')
  t.equal(got.ok, true, 'the queued copy read the dropped block\'s values')
  t.ok(got.cached !== undefined && got.cached <= 1024 * 1024, `the cache kept within its 1 MiB limit (${got.cached} bytes)`)
})
