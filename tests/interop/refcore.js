'use strict'
// Drives a standalone REFERENCE Hypercore (hypercore 10.38.2, pinned in
// ./package.json) on disk, with the default random-access-file storage, so the
// Python Spacecore can be checked against it in both directions.
//
//   node refcore.js write DIR OPS_JSON_FILE
//   node refcore.js read  DIR [--encryption-key HEX] [--key HEX] [--no-blocks] [--raw] [--writable]
//
// Prints exactly one JSON object (one line) on stdout. Exit status 0 on
// success; 1 on error, with {"error": message, "code": err.code} on stdout.
// Diagnostics, if any, go to stderr.
//
// write: OPS_JSON_FILE is
//   {"seed": hex32, "encryptionKey": hex32 | null, "ops": [op, ...]}
// The key pair is crypto_sign_seed_keypair(seed) (hypercore-crypto keyPair(seed));
// the core is a compat core (key = public key). If DIR already holds a core it
// is opened and continued (it must have been made with the same key pair).
// ops, applied in order:
//   {"append": [hex, ...]}                  one append() call with an array of Buffers (a batch)
//   {"append1": hex}                        one append() call with a single Buffer
//   {"truncate": N} / {"truncate": N, "fork": F}   truncate(N) (fork defaults to fork + 1)
//   {"setUserData": {"key": str, "value": hex | null}}  optional "flush": true inside the object
//   {"clear": [start, end]}                 clear(start, end)
//   {"closeAndReopen": true}                close() and open the directory again
// then closes the core (the reference never flushes on close) and prints
//   {"key", "discoveryKey", "length", "byteLength", "fork", "contiguousLength",
//    "treeHash", "signature"}   (hex; signature null at length 0)
//
// read: opens the existing core WITHOUT writing: `unlocked: true` makes the
// reference open every file O_RDONLY, take no lock and skip the oplog repair
// (truncation of a torn / invalid entry tail) it does on a writable open;
// `createIfMissing: false` makes an empty directory an error (STORAGE_EMPTY).
// The stored key pair (secret key included) is in the oplog header, so the
// session would otherwise count as writable; writable: false is passed too,
// and nothing is appended. `--writable` opens it the normal way instead
// (locked, writable, repairs a damaged oplog tail like the reference does).
// Prints
//   {"key", "discoveryKey", "length", "byteLength", "fork", "contiguousLength",
//    "treeHash", "signature", "signatureValid", "signatureMode", "verifierAccepts",
//    "userData": {key: hex | null}, "blocks": [hex | null, ...], "blocksSha256",
//    "missingBlocks": [index, ...], "filesChanged": [name, ...]}
// * signatureValid: the stored signature of (length, fork) checked with
//   hypercore-crypto verify() over the signable computed here (spec §5):
//   compat: TREE || treeHash || u64le(length) || u64le(fork), raw signature;
//   manifest v0 (one signer): TREE || namespace || treeHash || u64le(length) || u64le(fork), raw;
//   manifest v1: TREE || key || ..., signature decoded as a multisignature,
//   the first `quorum` proofs must each verify (patches are not supported here).
//   null when the core has no signature (length 0). signatureMode says which
//   rule was used; verifierAccepts is the reference's own verifier, as a cross-check.
// * blocks: get(i, {wait: false}) for every i < length, decrypted with
//   --encryption-key if given (--raw: the stored bytes, i.e. still encrypted);
//   null for a block that is not present. --no-blocks omits the list.
// * blocksSha256: sha256 of the concatenation of all present blocks in order
//   (missing ones contribute nothing; they are listed in missingBlocks).
// * filesChanged: the files in DIR whose bytes differ after the reference
//   opened, read and closed the core (expected [] without --writable).

const fs = require('fs')
const path = require('path')
const nodeCrypto = require('crypto')

const b4a = require('b4a')
const c = require('compact-encoding')
const hcrypto = require('hypercore-crypto')
const Hypercore = require('hypercore')
const caps = require('hypercore/lib/caps')
const multisig = require('hypercore/lib/multisig')

const hex = (b) => (b === null || b === undefined) ? null : b4a.toString(b, 'hex')

function fromHex (s, what, len) {
  if (typeof s !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(s)) throw usage(what + ': expected a hex string')
  const b = b4a.from(s, 'hex')
  if (len !== undefined && b.byteLength !== len) throw usage(what + ': expected ' + len + ' bytes, got ' + b.byteLength)
  return b
}

function usage (msg) {
  const e = new Error(msg)
  e.code = 'USAGE'
  return e
}

function info (core) {
  const tree = core.core.tree
  return {
    key: hex(core.key),
    discoveryKey: hex(core.discoveryKey),
    length: core.length,
    byteLength: core.byteLength,
    fork: core.fork,
    contiguousLength: core.contiguousLength,
    treeHash: hex(tree.hash()),
    signature: hex(tree.signature)
  }
}

// --------------------------------------------------------------- write

async function cmdWrite (dir, opsFile) {
  if (!dir || !opsFile) throw usage('usage: refcore.js write DIR OPS_JSON_FILE')
  const spec = JSON.parse(fs.readFileSync(opsFile, 'utf-8'))
  if (!spec || typeof spec !== 'object') throw usage('ops file: expected an object')
  const keyPair = hcrypto.keyPair(fromHex(spec.seed, 'seed', 32))
  const encryptionKey = (spec.encryptionKey === null || spec.encryptionKey === undefined) ? null : fromHex(spec.encryptionKey, 'encryptionKey', 32)
  const ops = spec.ops || []
  if (!Array.isArray(ops)) throw usage('ops file: "ops" must be an array')

  const open = async () => {
    const core = new Hypercore(dir, { keyPair, encryptionKey })
    await core.ready()
    return core
  }

  let core = await open()
  try {
    for (let n = 0; n < ops.length; n++) {
      const op = ops[n]
      try {
        if (op.append !== undefined) {
          if (!Array.isArray(op.append)) throw usage('append: expected an array of hex strings')
          await core.append(op.append.map((h) => fromHex(h, 'append')))
        } else if (op.append1 !== undefined) {
          await core.append(fromHex(op.append1, 'append1'))
        } else if (op.truncate !== undefined) {
          if (op.fork !== undefined && op.fork !== null) await core.truncate(op.truncate, op.fork)
          else await core.truncate(op.truncate)
        } else if (op.setUserData !== undefined) {
          const { key, value, flush } = op.setUserData
          const v = (value === null || value === undefined) ? null : fromHex(value, 'setUserData.value')
          await core.setUserData(key, v, { flush: !!flush })
        } else if (op.clear !== undefined) {
          const [start, end] = op.clear
          await core.clear(start, end)
        } else if (op.closeAndReopen) {
          await core.close()
          core = await open()
        } else {
          throw usage('unknown op: ' + JSON.stringify(op).slice(0, 200))
        }
      } catch (err) {
        err.message = 'op ' + n + ' (' + Object.keys(op)[0] + '): ' + err.message
        throw err
      }
    }
    return info(core)
  } finally {
    await core.close()
  }
}

// ---------------------------------------------------------------- read

const FILES = ['oplog', 'tree', 'bitfield', 'data', 'header']

function fileDigests (dir) {
  const out = {}
  for (const f of FILES) {
    const p = path.join(dir, f)
    if (!fs.existsSync(p)) { out[f] = null; continue }
    out[f] = nodeCrypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex')
  }
  return out
}

function checkSignature (core) {
  const tree = core.core.tree
  const sig = tree.signature
  const verifier = core.core.verifier
  const manifest = core.core.header.manifest
  const treeHash = tree.hash()
  const length = tree.length
  const fork = tree.fork

  if (!sig) return { signatureValid: null, signatureMode: null, verifierAccepts: null }

  const verifierAccepts = verifier ? !!verifier.verify(tree.batch(), sig) : null

  // compat: no manifest, or one signer whose public key is the core key
  const compat = !manifest || (manifest.signers.length === 1 && b4a.equals(manifest.signers[0].publicKey, core.key))
  if (compat) {
    const signable = caps.treeSignableCompat(treeHash, length, fork, false)
    return { signatureValid: hcrypto.verify(signable, sig, core.key), signatureMode: 'compat', verifierAccepts }
  }

  const version = typeof manifest.version === 'number' ? manifest.version : 1
  if (version === 0) {
    if (manifest.signers.length !== 1 || manifest.allowPatch) return { signatureValid: null, signatureMode: 'manifestV0-unsupported', verifierAccepts }
    const s = manifest.signers[0]
    const signable = caps.treeSignable(s.namespace || caps.DEFAULT_NAMESPACE, treeHash, length, fork)
    return { signatureValid: hcrypto.verify(signable, sig, s.publicKey), signatureMode: 'manifestV0', verifierAccepts }
  }

  const quorum = typeof manifest.quorum === 'number' ? manifest.quorum : (manifest.signers.length >> 1) + 1
  let ok = quorum > 0
  try {
    const { proofs } = multisig.inflate(sig)
    if (proofs.length < quorum) ok = false
    const tried = new Set()
    const signable = caps.treeSignable(core.key, treeHash, length, fork)
    for (let i = 0; ok && i < quorum; i++) {
      const p = proofs[i]
      if (p.patch || p.signer >= manifest.signers.length || tried.has(p.signer)) { ok = false; break }
      tried.add(p.signer)
      if (!hcrypto.verify(signable, p.signature, manifest.signers[p.signer].publicKey)) ok = false
    }
  } catch {
    ok = false
  }
  return { signatureValid: ok, signatureMode: 'manifestV1', verifierAccepts }
}

function parseFlags (args, spec) {
  const out = {}
  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    if (!(a in spec)) throw usage('unknown argument: ' + a)
    if (spec[a]) {
      if (i + 1 >= args.length) throw usage(a + ' needs a value')
      out[a] = args[++i]
    } else {
      out[a] = true
    }
  }
  return out
}

async function cmdRead (dir, args) {
  if (!dir) throw usage('usage: refcore.js read DIR [--encryption-key HEX] [--key HEX] [--no-blocks] [--raw] [--writable]')
  const flags = parseFlags(args, { '--encryption-key': true, '--key': true, '--no-blocks': false, '--raw': false, '--writable': false })
  if (!fs.existsSync(dir)) { const e = new Error('No such directory: ' + dir); e.code = 'ENOENT'; throw e }

  const opts = { createIfMissing: false }
  if (!flags['--writable']) {
    opts.unlocked = true // read-only file descriptors, no lock, no oplog repair
    opts.writable = false
  }
  if (flags['--encryption-key']) opts.encryptionKey = fromHex(flags['--encryption-key'], '--encryption-key', 32)
  if (flags['--key']) opts.key = fromHex(flags['--key'], '--key', 32)

  const before = fileDigests(dir)
  const core = new Hypercore(dir, opts)
  let out
  try {
    await core.ready()
    out = info(core)
    Object.assign(out, checkSignature(core))

    const userData = {}
    for (const { key, value } of core.core.header.userData) userData[key] = hex(value)
    out.userData = userData

    const wantList = !flags['--no-blocks']
    const blocks = wantList ? [] : null
    const missing = []
    const h = nodeCrypto.createHash('sha256')
    const getOpts = { wait: false, raw: !!flags['--raw'] }
    // gets are issued in windows of CHUNK concurrent calls (results kept in
    // order); one at a time is ~3x slower on large cores (~70 us per get)
    const CHUNK = 256
    for (let s = 0; s < core.length; s += CHUNK) {
      const e = Math.min(core.length, s + CHUNK)
      const pending = []
      for (let i = s; i < e; i++) pending.push(core.get(i, getOpts))
      const got = await Promise.all(pending)
      for (let k = 0; k < got.length; k++) {
        const b = got[k]
        if (b === null) missing.push(s + k)
        else h.update(b)
        if (wantList) blocks.push(hex(b))
      }
    }
    if (wantList) out.blocks = blocks
    out.blocksSha256 = h.digest('hex')
    out.missingBlocks = missing
  } finally {
    await core.close()
  }
  const after = fileDigests(dir)
  out.filesChanged = FILES.filter((f) => before[f] !== after[f])
  return out
}

// ---------------------------------------------------------------- main

async function main (argv) {
  const [cmd, dir, ...rest] = argv
  if (cmd === 'write') return cmdWrite(dir, rest[0])
  if (cmd === 'read' || cmd === 'verify') return cmdRead(dir, rest)
  throw usage('usage: refcore.js write DIR OPS_JSON_FILE | read DIR [--encryption-key HEX] [--key HEX] [--no-blocks] [--raw] [--writable]')
}

function emit (obj, code) {
  process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(code))
}

main(process.argv.slice(2)).then(
  (out) => emit(out, 0),
  (err) => {
    console.error(String((err && err.stack) || err))
    emit({ error: String((err && err.message) || err), code: (err && err.code) || null }, 1)
  }
)
