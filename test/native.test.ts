// The codes TypeScript passes to the addon come from the addon itself
// (codes.dtype / device / activation, exported from its enums): the tables in
// lib/native.ts read them, and a buffer made with a code reports it back.
import t from 'tap'
import { native, ACTIVATION_CODE, ACTIVATION_KIND, DEVICE_CODE, DTYPE_CODE } from '../lib/native.js'

const N = native()

t.test('the addon exports its codes, one distinct number per name', async (t) => {
  for (const group of ['dtype', 'device', 'activation'] as const) {
    const table = N.codes[group]
    const values = Object.values(table)
    t.ok(values.length > 0, `${group}: ${JSON.stringify(table)}`)
    t.same([...values].sort((a, b) => a - b), values.map((_, i) => i), `${group} codes are 0 .. n-1, each once`)
    t.ok(Object.isFrozen(table), `${group} codes cannot be changed from JavaScript`)
  }
  t.same(Object.keys(N.codes.device), ['cpu', 'cuda'])
})

t.test('the TypeScript tables read the addon codes', async (t) => {
  for (const [name, code] of Object.entries(DTYPE_CODE)) t.equal(code, N.codes.dtype[name], `dtype ${name}`)
  for (const [name, code] of Object.entries(DEVICE_CODE)) t.equal(code, N.codes.device[name], `device ${name}`)
  for (const [name, kind] of Object.entries(ACTIVATION_KIND)) {
    t.equal(ACTIVATION_CODE[name as keyof typeof ACTIVATION_CODE], N.codes.activation[kind], `activation ${name} -> ${kind}`)
  }
  t.same(Object.keys(DTYPE_CODE), Object.keys(N.codes.dtype), 'every dtype of the addon has a name in TypeScript')
})

t.test('a buffer made with a code reports that code; the next code is refused', async (t) => {
  for (const [name, code] of Object.entries(DTYPE_CODE)) {
    const b = new N.NativeBuffer(DEVICE_CODE.cpu, code, 3)
    t.equal(b.dtype, code, name)
    t.equal(b.device, DEVICE_CODE.cpu)
    b.free()
  }
  const dtypes = Object.keys(N.codes.dtype).length
  t.throws(() => new N.NativeBuffer(DEVICE_CODE.cpu, dtypes, 3), new RegExp(`unknown dtype ${dtypes}`))
  const devices = Object.keys(N.codes.device).length
  t.throws(() => new N.NativeBuffer(devices, DTYPE_CODE.float32, 3), new RegExp(`unknown device ${devices}`))
  const kinds = Object.keys(N.codes.activation).length
  const x = new N.NativeBuffer(DEVICE_CODE.cpu, DTYPE_CODE.float32, 1)
  t.throws(() => N.activationForward(kinds, 1, x, x), new RegExp(`unknown activation kind ${kinds}`), 'one past the last kind')
  x.free()
})
