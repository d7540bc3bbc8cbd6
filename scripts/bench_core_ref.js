'use strict'
// Reference side of scripts/bench_core.py: times the REFERENCE Hypercore
// (hypercore 10.38.2 from tests/interop/node_modules; run `npm ci` there first)
// on disk with its default random-access-file storage.
//
//   node scripts/bench_core_ref.js append SIZE MODE N     MODE = single | batch
//   node scripts/bench_core_ref.js get SIZE N ORDER        ORDER = seq | rand
//   node scripts/bench_core_ref.js open DIR
//   node scripts/bench_core_ref.js make DIR N SIZE
//
// Prints one JSON line:
//   append: {"case":"append","size","mode","blocks","seconds"}
//           single: N awaited core.append(buf); batch: N/100 awaited core.append([100 bufs])
//           (a final partial batch if N is not a multiple of 100). Only the append loop is timed.
//   get:    {"case":"get","size","order","blocks","seconds"}
//           builds N blocks with batch appends of 100 (untimed), then times N awaited
//           core.get(i) one at a time, i in order (seq) or in a fixed pseudo-random
//           permutation (rand: Fisher-Yates driven by a 32-bit LCG, seed 12345).
//   open:   {"case":"open","ready_seconds","first_get_seconds","length"}
//           new Hypercore(DIR) + ready(), then the first get(0) (null if length 0).
//   make:   {"case":"make","length","seconds"}  (DIR must not already hold a core)
//           N blocks of SIZE bytes, appended in batches of 1000.
// append and get run in a fresh temporary directory, removed afterwards.
// Block content: a fixed pseudo-random buffer of SIZE bytes (same LCG) whose
// first 4 bytes are overwritten with the block index (u32 LE) when SIZE >= 4,
// so blocks differ. Timings use process.hrtime.bigint(). Exit 1 with
// {"error": message} on failure.

const fs = require('fs')
const os = require('os')
const path = require('path')

const NM = path.join(__dirname, '../tests/interop/node_modules')
const Hypercore = require(path.join(NM, 'hypercore'))

const BATCH = 100
const MAKE_BATCH = 1000

function lcg (seed) {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s
  }
}

const baseCache = new Map()
function baseBuffer (size) {
  let b = baseCache.get(size)
  if (!b) {
    const rnd = lcg(0xdecafbad)
    b = Buffer.alloc(size)
    for (let i = 0; i < size; i++) b[i] = rnd() >>> 24
    baseCache.set(size, b)
  }
  return b
}

function block (i, size) {
  const b = Buffer.from(baseBuffer(size))
  if (size >= 4) b.writeUInt32LE(i >>> 0, 0)
  return b
}

function seconds (t0, t1) {
  return Number(t1 - t0) / 1e9
}

function intArg (v, name) {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0) throw new Error(name + ': expected a non-negative integer, got ' + v)
  return n
}

function tmpdir () {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'bench-core-ref-'))
}

async function withTempCore (fn) {
  const dir = tmpdir()
  const core = new Hypercore(dir)
  try {
    await core.ready()
    return await fn(core)
  } finally {
    await core.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

async function appendBatches (core, n, size, batchSize) {
  for (let i = 0; i < n; i += batchSize) {
    const k = Math.min(batchSize, n - i)
    const bufs = new Array(k)
    for (let j = 0; j < k; j++) bufs[j] = block(i + j, size)
    await core.append(bufs)
  }
}

async function caseAppend (size, mode, n) {
  if (mode !== 'single' && mode !== 'batch') throw new Error('MODE must be single or batch')
  return withTempCore(async (core) => {
    let t0, t1
    if (mode === 'single') {
      // prepare the buffers outside the timed loop
      const bufs = new Array(n)
      for (let i = 0; i < n; i++) bufs[i] = block(i, size)
      t0 = process.hrtime.bigint()
      for (let i = 0; i < n; i++) await core.append(bufs[i])
      t1 = process.hrtime.bigint()
    } else {
      const batches = []
      for (let i = 0; i < n; i += BATCH) {
        const k = Math.min(BATCH, n - i)
        const bufs = new Array(k)
        for (let j = 0; j < k; j++) bufs[j] = block(i + j, size)
        batches.push(bufs)
      }
      t0 = process.hrtime.bigint()
      for (const bufs of batches) await core.append(bufs)
      t1 = process.hrtime.bigint()
    }
    if (core.length !== n) throw new Error('expected length ' + n + ', got ' + core.length)
    return { case: 'append', size, mode, blocks: n, seconds: seconds(t0, t1) }
  })
}

function permutation (n) {
  const rnd = lcg(12345)
  const p = new Array(n)
  for (let i = 0; i < n; i++) p[i] = i
  for (let i = n - 1; i > 0; i--) {
    const j = rnd() % (i + 1)
    const t = p[i]; p[i] = p[j]; p[j] = t
  }
  return p
}

async function caseGet (size, n, order) {
  if (order !== 'seq' && order !== 'rand') throw new Error('ORDER must be seq or rand')
  return withTempCore(async (core) => {
    await appendBatches(core, n, size, BATCH)
    const idx = order === 'seq' ? null : permutation(n)
    let bytes = 0
    const t0 = process.hrtime.bigint()
    if (idx === null) {
      for (let i = 0; i < n; i++) bytes += (await core.get(i)).byteLength
    } else {
      for (let i = 0; i < n; i++) bytes += (await core.get(idx[i])).byteLength
    }
    const t1 = process.hrtime.bigint()
    if (bytes !== n * size) throw new Error('read ' + bytes + ' bytes, expected ' + n * size)
    return { case: 'get', size, order, blocks: n, seconds: seconds(t0, t1) }
  })
}

async function caseOpen (dir) {
  if (!fs.existsSync(path.join(dir, 'oplog'))) throw new Error('no core at ' + dir)
  const t0 = process.hrtime.bigint()
  const core = new Hypercore(dir, { createIfMissing: false })
  try {
    await core.ready()
    const t1 = process.hrtime.bigint()
    const b = core.length > 0 ? await core.get(0) : null
    const t2 = process.hrtime.bigint()
    void b
    return { case: 'open', ready_seconds: seconds(t0, t1), first_get_seconds: seconds(t1, t2), length: core.length }
  } finally {
    await core.close()
  }
}

async function caseMake (dir, n, size) {
  fs.mkdirSync(dir, { recursive: true })
  if (fs.existsSync(path.join(dir, 'oplog'))) throw new Error('a core already exists at ' + dir)
  const core = new Hypercore(dir)
  try {
    await core.ready()
    const t0 = process.hrtime.bigint()
    await appendBatches(core, n, size, MAKE_BATCH)
    const t1 = process.hrtime.bigint()
    return { case: 'make', length: core.length, seconds: seconds(t0, t1) }
  } finally {
    await core.close()
  }
}

async function main (argv) {
  const [name, ...a] = argv
  if (name === 'append') return caseAppend(intArg(a[0], 'SIZE'), a[1], intArg(a[2], 'N'))
  if (name === 'get') return caseGet(intArg(a[0], 'SIZE'), intArg(a[1], 'N'), a[2])
  if (name === 'open') { if (!a[0]) throw new Error('DIR required'); return caseOpen(a[0]) }
  if (name === 'make') { if (!a[0]) throw new Error('DIR required'); return caseMake(a[0], intArg(a[1], 'N'), intArg(a[2], 'SIZE')) }
  throw new Error('usage: bench_core_ref.js append SIZE single|batch N | get SIZE N seq|rand | open DIR | make DIR N SIZE')
}

function emit (obj, code) {
  process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(code))
}

main(process.argv.slice(2)).then(
  (out) => emit(out, 0),
  (err) => {
    console.error(String((err && err.stack) || err))
    emit({ error: String((err && err.message) || err) }, 1)
  }
)
