// Module.replaceModule: the new child takes the old one's place in the
// parameter order and in the properties forward() reads, in a Module and in a
// ModuleList; asking for a child that is not there names it.
import t from 'tap'
import { Module, ModuleList } from '../../lib/nn/module.js'
import { Linear } from '../../lib/nn/layers.js'

class Block extends Module {
  first: Linear
  second: Linear
  constructor() {
    super()
    this.first = this.registerModule('first', new Linear(2, 3))
    this.second = this.registerModule('second', new Linear(3, 2))
  }
}

t.test('replaceModule keeps the place in the parameter order and updates the property', (t) => {
  const block = new Block()
  const replacement = new Linear(2, 3, { bias: false })
  const old = block.first
  t.equal(block.replaceModule('first', replacement), old, 'returns the old child')
  t.equal(block.first, replacement, 'the property forward() reads now holds the new child')
  t.same([...block.namedParameters()].map(([n]) => n), ['first.weight', 'second.weight', 'second.bias'], 'same place, new parameters')
  t.throws(() => block.replaceModule('third', replacement), /Block: no submodule "third" to replace/)
  old.dispose()
  block.dispose()
  t.end()
})

t.test('replaceModule in a ModuleList updates its items too', (t) => {
  const list = new ModuleList([new Linear(1, 1), new Linear(1, 1)])
  const replacement = new Linear(1, 1, { bias: false })
  const old = list.replaceModule('1', replacement)
  t.equal(list.items[1], replacement)
  t.not(list.items[1], old)
  t.same([...list.namedParameters()].map(([n]) => n), ['0.weight', '0.bias', '1.weight'])
  old.dispose()
  list.dispose()
  t.end()
})
