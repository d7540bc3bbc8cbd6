'use strict'

// A reference transport peer for checking Spacecore's transport against the
// real one: TCP + @hyperswarm/secret-stream (Noise XX) + protomux, with an
// "echo" channel.  Adapted from shared/interop/transport-peer.js (same
// commands, options and JSON lines; see shared/interop/README.md) with:
//
//   --raw        no protomux: the server echoes every secret-stream message back
//                as it came (the empty ones too, unless --keep-alive drops them);
//                the client writes its messages as secret-stream messages, waits
//                for each echo in order, ends, and exits 0 once the server has
//                ended too (a FIN each way).  Tests the secret stream alone.
//   --gen SIZE   client: add a message of SIZE bytes (byte i = i & 255); may repeat.
//                For messages too big for a command-line argument.
//   --idle MS    client: wait MS ms after the handshake before sending (keep-alives
//                from both sides cross the idle connection).
//   --empty      client: add an empty message (raw mode; protomux sends it as a
//                type-0 message with an empty payload).
//
// Packages come from tests/interop/node_modules (`npm ci` there; the versions are
// pinned by hypercore 10.38.2's lock file): @hyperswarm/secret-stream 6.9.2,
// protomux 3.12.1.  Loopback only by default (127.0.0.1). Exit status 0 = success.

const net = require('net')
const path = require('path')
const SecretStream = require('@hyperswarm/secret-stream')
const Protomux = require('protomux')
const b4a = require('b4a')
const c = require(require.resolve('compact-encoding', { paths: [path.dirname(require.resolve('protomux'))] }))

const USAGE = `usage:
  node transport-peer.js server <port> <seed-hex> [--host H] [--keep-alive MS] [--once]
                                [--open-first] [--id HEX]
  node transport-peer.js client <port> <seed-hex> [--host H] [--keep-alive MS]
                                [--id HEX] [--handshake STR] [--batch] [--hex]
                                [--expect-remote HEX] [--timeout MS] [message ...]
  either: [--raw]   client: [--gen SIZE]... [--idle MS] [--empty]

  <port>        TCP port (server: 0 picks a free one, printed in the "listening" line)
  <seed-hex>    32-byte seed (64 hex chars) of this peer's static Ed25519 key pair
  --host        address to listen on / connect to (default 127.0.0.1)
  --keep-alive  send an empty encrypted message after MS ms without writes (the
                reference default in hypercore is 5000); also drops received empty messages
  --once        server: exit after the first connection has closed
  --open-first  server: open an echo channel (id from --id) as soon as a connection
                starts, instead of only answering the client's open
  --id          channel id (hex, usually 32 bytes) of the echo channel the client opens,
                or the server opens with --open-first (default: none)
  --handshake   client: handshake string sent in the open (default "echo-client")
  --batch       client: send all messages corked, as one protomux batch
  --hex         client: messages are given as hex instead of UTF-8
  --expect-remote  client: fail unless the server's static public key is HEX
  --timeout     client: give up after MS ms (default 10000)`

function parseArgs (argv) {
  const [mode, port, seed, ...rest] = argv
  if (!mode || !['server', 'client'].includes(mode) || port === undefined || !seed) fail(USAGE)
  if (!/^[0-9a-fA-F]{64}$/.test(seed)) fail('seed must be 64 hex characters\n' + USAGE)
  const opts = {
    mode,
    port: Number(port),
    seed: b4a.from(seed, 'hex'),
    host: '127.0.0.1',
    keepAlive: 0,
    once: false,
    openFirst: false,
    id: null,
    handshake: 'echo-client',
    batch: false,
    hex: false,
    expectRemote: null,
    timeout: 10000,
    raw: false,
    idle: 0,
    extra: [],
    messages: []
  }
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]
    const next = () => {
      if (i + 1 >= rest.length) fail('missing value for ' + a)
      return rest[++i]
    }
    if (a === '--host') opts.host = next()
    else if (a === '--keep-alive') opts.keepAlive = Number(next())
    else if (a === '--once') opts.once = true
    else if (a === '--open-first') opts.openFirst = true
    else if (a === '--id') opts.id = b4a.from(next(), 'hex')
    else if (a === '--handshake') opts.handshake = next()
    else if (a === '--batch') opts.batch = true
    else if (a === '--hex') opts.hex = true
    else if (a === '--expect-remote') opts.expectRemote = next().toLowerCase()
    else if (a === '--timeout') opts.timeout = Number(next())
    else if (a === '--raw') opts.raw = true
    else if (a === '--idle') opts.idle = Number(next())
    else if (a === '--empty') opts.extra.push(b4a.alloc(0))
    else if (a === '--gen') {
      const n = Number(next())
      if (!Number.isInteger(n) || n < 0 || n > 16777198) fail('bad --gen size')
      const b = b4a.alloc(n)
      for (let j = 0; j < n; j++) b[j] = j & 255
      opts.extra.push(b)
    }
    else if (a === '--') {
      opts.messages.push(...rest.slice(i + 1))
      break
    }
    else if (a.startsWith('--')) fail('unknown option ' + a + '\n' + USAGE)
    else opts.messages.push(a)
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) fail('bad port\n' + USAGE)
  return opts
}

function fail (msg) {
  process.stderr.write(msg + '\n')
  process.exit(2)
}

function out (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

const hex = (b) => (b ? b4a.toString(b, 'hex') : null)

// Wrap a connected socket in a secret-stream + protomux, printing transport events.
function setup (socket, isInitiator, opts, conn) {
  const keyPair = SecretStream.keyPair(opts.seed)
  const stream = new SecretStream(isInitiator, socket, { keyPair })
  if (opts.keepAlive > 0) stream.setKeepAlive(opts.keepAlive)

  stream.on('error', (err) => out({ event: 'error', conn, message: err.message }))
  stream.on('close', () => out({ event: 'closed', conn }))
  stream.opened.then((ok) => {
    if (!ok) return
    out({
      event: 'handshake',
      conn,
      isInitiator,
      publicKey: hex(stream.publicKey),
      remotePublicKey: hex(stream.remotePublicKey),
      handshakeHash: hex(stream.handshakeHash)
    })
  })

  const mux = opts.raw ? null : Protomux.from(stream)
  return { stream, mux }
}

function echoMessages (onmessage) {
  // type 0: raw bytes (c.raw). Nothing else is defined; other types are ignored.
  return [{ encoding: c.raw, onmessage }]
}

function runServer (opts) {
  let count = 0
  const server = net.createServer((socket) => {
    const conn = ++count
    out({ event: 'connection', conn, remoteAddress: socket.remoteAddress, remotePort: socket.remotePort })
    const { stream, mux } = setup(socket, false, opts, conn)

    if (opts.raw) {
      stream.on('data', (m) => {
        // raw mode prints the length and at most the first 64 bytes
        out({ event: 'message', conn, type: null, length: m.byteLength, hex: hex(m.subarray(0, 64)) })
        stream.write(m)
      })
      stream.on('end', () => {
        out({ event: 'end', conn })
        stream.end()
      })
      stream.on('close', () => {
        if (opts.once) server.close()
      })
      return
    }

    // An echo channel: type-0 messages (raw bytes) are sent back unchanged on type 0.
    const openEcho = (id) => {
      const ch = mux.createChannel({
        protocol: 'echo',
        id,
        handshake: c.string,
        messages: echoMessages((m) => {
          out({ event: 'message', conn, type: 0, hex: hex(m) })
          ch.messages[0].send(m)
        }),
        onopen: (handshake) => out({ event: 'open', conn, protocol: 'echo', id: hex(id), handshake }),
        onclose: (isRemote) => out({ event: 'channel-closed', conn, protocol: 'echo', id: hex(id), isRemote })
      })
      if (ch) ch.open('echo-server')
      return ch
    }

    // answer every "echo" open of the client (any channel id) with our own open
    mux.pair({ protocol: 'echo' }, (id) => { openEcho(id) })
    // or open first and let the client's side pair with it
    if (opts.openFirst) openEcho(opts.id)

    stream.on('close', () => {
      if (opts.once) server.close()
    })
  })

  server.on('error', (err) => {
    out({ event: 'error', message: err.message })
    process.exit(1)
  })
  server.listen(opts.port, opts.host, () => {
    const addr = server.address()
    out({
      event: 'listening',
      host: addr.address,
      port: addr.port,
      publicKey: hex(SecretStream.keyPair(opts.seed).publicKey)
    })
  })
  server.on('close', () => {
    out({ event: 'server-closed' })
    process.exit(0)
  })
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      out({ event: 'server-closed', signal: sig })
      process.exit(0)
    })
  }
}

function runClient (opts) {
  if (opts.raw) return runRawClient(opts)
  const messages = opts.messages.map((m) => (opts.hex ? b4a.from(m, 'hex') : b4a.from(m, 'utf8'))).concat(opts.extra)
  const pending = messages.map(hex)
  let exitCode = null

  const timer = setTimeout(() => finish(1, 'timeout'), opts.timeout)
  const socket = net.connect(opts.port, opts.host)
  socket.on('error', (err) => finish(1, 'socket error: ' + err.message))
  const { stream, mux } = setup(socket, true, opts, 1)

  stream.opened.then((ok) => {
    if (!ok) return finish(1, 'handshake failed')
    if (opts.expectRemote && hex(stream.remotePublicKey) !== opts.expectRemote) {
      finish(1, 'unexpected remote public key ' + hex(stream.remotePublicKey))
    }
  })
  stream.on('close', () => finish(pending.length === 0 ? 0 : 1, 'stream closed'))

  const ch = mux.createChannel({
    protocol: 'echo',
    id: opts.id,
    handshake: c.string,
    messages: echoMessages((m) => {
      out({ event: 'echo', type: 0, hex: hex(m) })
      const i = pending.indexOf(hex(m))
      if (i === -1) return finish(1, 'unexpected echo ' + hex(m))
      pending.splice(i, 1)
      if (pending.length === 0) done()
    }),
    onopen: (handshake) => {
      out({ event: 'open', protocol: 'echo', id: hex(opts.id), handshake })
      if (messages.length === 0) done()
    },
    onclose: (isRemote) => {
      out({ event: 'channel-closed', protocol: 'echo', isRemote })
      if (isRemote && pending.length > 0) finish(1, 'channel closed by remote')
    }
  })

  ch.open(opts.handshake)
  const sendAll = () => {
    // sent right away, before the remote has answered the open: the remote must buffer them
    if (opts.batch) mux.cork()
    for (const m of messages) ch.messages[0].send(m)
    if (opts.batch) mux.uncork()
  }
  if (opts.idle > 0) stream.opened.then((ok) => { if (ok) setTimeout(sendAll, opts.idle) })
  else sendAll()

  function done () {
    // Deferred: when the last echo arrives inside a batch, protomux is corked until the
    // batch has been handled, so a close written now would only leave with the uncork.
    setImmediate(() => {
      ch.close()
      stream.end()
      finish(0, 'all echoes received')
    })
  }

  function finish (code, reason) {
    if (exitCode !== null) return
    exitCode = code
    clearTimeout(timer)
    out({ event: 'done', ok: code === 0, reason, missing: pending })
    // let the close frame and the FIN go out, then exit
    setTimeout(() => {
      stream.destroy()
      process.exit(code)
    }, code === 0 ? 100 : 0)
  }
}

// --raw client: secret-stream messages only, echoed back in order by the server.
function runRawClient (opts) {
  const messages = opts.messages.map((m) => (opts.hex ? b4a.from(m, 'hex') : b4a.from(m, 'utf8'))).concat(opts.extra)
  // empty messages are dropped by a keep-alive receiver: do not expect their echo then
  const expected = messages.filter((m) => m.byteLength > 0 || opts.keepAlive === 0).map(hex)
  const pending = expected.slice()
  let exitCode = null
  let remoteEnded = false

  const timer = setTimeout(() => finish(1, 'timeout'), opts.timeout)
  const socket = net.connect(opts.port, opts.host)
  socket.on('error', (err) => finish(1, 'socket error: ' + err.message))
  const { stream } = setup(socket, true, opts, 1)

  stream.on('data', (m) => {
    out({ event: 'echo', type: null, length: m.byteLength, hex: hex(m.subarray(0, 64)) })
    if (pending.length === 0 || pending[0] !== hex(m)) return finish(1, 'unexpected echo ' + hex(m).slice(0, 64))
    pending.shift()
    if (pending.length === 0) stream.end()
  })
  stream.on('end', () => {
    remoteEnded = true
    out({ event: 'end' })
  })
  stream.on('close', () => {
    if (pending.length === 0 && remoteEnded) finish(0, 'all echoes received, both sides ended')
    else finish(1, 'stream closed')
  })
  stream.opened.then((ok) => {
    if (!ok) return finish(1, 'handshake failed')
    if (opts.expectRemote && hex(stream.remotePublicKey) !== opts.expectRemote) {
      return finish(1, 'unexpected remote public key ' + hex(stream.remotePublicKey))
    }
    const sendAll = () => {
      for (const m of messages) stream.write(m)
      if (pending.length === 0) stream.end()
    }
    if (opts.idle > 0) setTimeout(sendAll, opts.idle)
    else sendAll()
  })

  function finish (code, reason) {
    if (exitCode !== null) return
    exitCode = code
    clearTimeout(timer)
    out({ event: 'done', ok: code === 0, reason, missing: pending.map((x) => x.slice(0, 64)) })
    setTimeout(() => {
      stream.destroy()
      process.exit(code)
    }, 0)
  }
}

const opts = parseArgs(process.argv.slice(2))
if (opts.mode === 'server') runServer(opts)
else runClient(opts)
