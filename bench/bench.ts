// npm run bench -- ARGS: the same as `bertkit bench ARGS` (lib/cli/bench.ts).
import { runBench } from '../lib/cli/bench.js'

runBench(process.argv.slice(2)).catch((err) => {
  console.error(err instanceof Error ? err.message : err)
  process.exit(1)
})
