// Runs the whole product as a person would: encoder-cloud, encoder-bridge
// and a virtual card in a vpcd reader of the real pcscd, as separate
// processes, and gives a Seam SDK client pointed at the cloud.
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, writeFileSync, readFileSync, rmSync, existsSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { SeamHttp } from '@seamapi/http/connect'

export const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')

async function freePort () {
  return await new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

// build compiles the commands once per process into dir.
let built = null
function build (dir) {
  if (process.env.ENCODER_BRIDGE_BIN) return process.env.ENCODER_BRIDGE_BIN
  if (built) return built
  const out = join(dir, 'bin')
  mkdirSync(out, { recursive: true })
  execFileSync('go', ['build', '-o', out + '/', './cmd/...'], { cwd: repo, stdio: 'inherit' })
  built = out
  return out
}

async function until (what, timeoutMs, fn) {
  const end = Date.now() + timeoutMs
  let last
  while (Date.now() < end) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) { last = err }
    await sleep(100)
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`)
}

class Proc {
  constructor (name, bin, args, logDir) {
    this.name = name
    this.log = join(logDir, `${name}.log`)
    this.output = ''
    this.child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    const keep = (d) => {
      this.output += d.toString()
      writeFileSync(this.log, this.output)
    }
    this.child.stdout.on('data', keep)
    this.child.stderr.on('data', keep)
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })))
  }

  async stop (signal = 'SIGTERM') {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return await this.exited
    this.child.kill(signal)
    return await this.exited
  }
}

export class Stack {
  constructor () {
    this.dir = mkdtempSync(join(tmpdir(), 'encoder-bridge-stack-'))
    this.procs = []
    this.reader = process.env.VPCD_READER ?? 'Virtual PCD 00 00'
    this.vpcd = process.env.VPCD_ADDR ?? '127.0.0.1:35963'
    // CLOUD_DB (a postgres:// URL) and CLOUD_INSTANCES=2 run the cloud
    // as two instances on one PostgreSQL database: the SDK calls the
    // first, the bridge is linked to the second only, so every job and
    // every held answer crosses between instances.
    this.db = process.env.CLOUD_DB ?? ''
    this.instances = Number(process.env.CLOUD_INSTANCES ?? '1')
    if (!(this.instances >= 1 && this.instances <= 2)) throw new Error(`CLOUD_INSTANCES must be 1 or 2, not ${process.env.CLOUD_INSTANCES}`)
    if (this.instances > 1 && !/^postgres(ql)?:\/\//.test(this.db)) throw new Error('CLOUD_INSTANCES=2 needs CLOUD_DB, a postgres:// URL: instances find each other through PostgreSQL')
  }

  // start brings up the cloud and the bridge (no card yet).
  // devWebhooks lets webhooks post to a receiver on loopback over http.
  static async start ({ jobTimeout = '6s', devWebhooks = false } = {}) {
    const s = new Stack()
    try {
      await s.#start(jobTimeout, devWebhooks)
    } catch (err) {
      await s.stop()
      throw err
    }
    return s
  }

  async #start (jobTimeout, devWebhooks) {
    this.bin = build(this.dir)
    const port = await freePort()
    this.endpoint = `http://127.0.0.1:${port}`
    const db = this.db || join(this.dir, 'cloud.db')
    const boot = join(this.dir, 'bootstrap.json')
    this.run('encoder-cloud', ['init', '--db', db, '--out', boot, '--endpoint', this.endpoint])
    this.boot = JSON.parse(readFileSync(boot, 'utf8'))
    const serve = ['serve', '--db', db, '--listen', `127.0.0.1:${port}`, '--job-timeout', jobTimeout]
    if (devWebhooks) serve.push('--dev-loopback-webhooks')
    this.cloud = this.spawn('cloud', 'encoder-cloud', serve)
    this.seam = SeamHttp.fromApiKey(this.boot.api_key, { endpoint: this.endpoint })
    await until('the cloud to answer', 15000, async () => (await this.seam.acs.encoders.list()) !== undefined)
    // The bridge's instance: the first, or with two instances the second.
    this.bridgeEndpoint = this.endpoint
    if (this.instances > 1) {
      const port2 = await freePort()
      this.bridgeEndpoint = `http://127.0.0.1:${port2}`
      // The same flags as the first: either instance may post a webhook.
      const serve2 = ['serve', '--db', db, '--listen', `127.0.0.1:${port2}`, '--job-timeout', jobTimeout, '--metrics-listen', 'off']
      if (devWebhooks) serve2.push('--dev-loopback-webhooks')
      this.cloud2 = this.spawn('cloud-b', 'encoder-cloud', serve2)
      const other = SeamHttp.fromApiKey(this.boot.api_key, { endpoint: this.bridgeEndpoint })
      await until('the second cloud instance to answer', 15000, async () => (await other.acs.encoders.list()) !== undefined)
    }

    const keys = join(this.dir, 'keys.json')
    this.run('encoder-bridge', ['keys', 'init', '--out', keys])
    const token = join(this.dir, 'bridge.token')
    writeFileSync(token, this.boot.bridge_token + '\n', { mode: 0o600 })
    this.config = join(this.dir, 'bridge.yaml')
    writeFileSync(this.config, [
      'version: 1',
      `keys: ${keys}`,
      `state_dir: ${join(this.dir, 'state')}`,
      // Debug, so the secrets test checks the most the bridge ever logs.
      'log:',
      '  level: debug',
      'cloud:',
      `  url: ${this.instances > 1 ? this.bridgeEndpoint.replace('http', 'ws') : (this.boot.websocket_url ?? this.endpoint.replace('http', 'ws'))}`,
      `  bridge_id: ${this.boot.bridge_id}`,
      `  token_file: ${token}`,
      'encoders:',
      `  - reader: ${this.reader}`,
      '    name: Front desk 1',
      ''
    ].join('\n'), { mode: 0o600 })
    await this.startBridge()
  }

  run (cmd, args) {
    return execFileSync(join(this.bin, cmd), args, { encoding: 'utf8' })
  }

  spawn (name, cmd, args) {
    const p = new Proc(name, join(this.bin, cmd), args, this.dir)
    this.procs.push(p)
    return p
  }

  // startBridge runs encoder-bridge and waits until the cloud lists its
  // encoder without errors.
  async startBridge () {
    this.bridge = this.spawn('bridge', 'encoder-bridge', ['run', '--config', this.config])
    this.encoder = await until('the encoder to come online', 20000, async () => {
      const list = await this.seam.acs.encoders.list()
      return list.find((e) => e.display_name === 'Front desk 1' && e.errors.length === 0)
    })
    return this.encoder
  }

  async stopBridge (signal = 'SIGTERM') {
    if (this.bridge) await this.bridge.stop(signal)
    this.bridge = null
  }

  // insertCard puts a virtual card of kind in the reader and waits until it
  // is attached. With kind null, extra names a --state file holding the
  // card.
  async insertCard (kind, extra = []) {
    await this.removeCard()
    const card = kind ? ['--card', kind] : []
    this.card = this.spawn('card', 'virtual-encoder', [...card, '--vpcd', this.vpcd, ...extra])
    await until('the virtual card', 10000, async () => /inserted/.test(this.card.output))
    // pcscd polls readers for a new card about every 400 ms.
    await sleep(600)
  }

  async removeCard () {
    if (!this.card) return
    await this.card.stop('SIGINT')
    this.card = null
    await sleep(600)
  }

  // credentialFile writes a credential JSON file for the encoder-bridge
  // CLI and returns its path.
  credentialFile (fields) {
    const path = join(this.dir, `credential-${Date.now()}.json`)
    const hour = 3600 * 1000
    writeFileSync(path, JSON.stringify({
      card_function_type: 'guest',
      starts_at: new Date(Date.now() - hour).toISOString().replace(/\.\d+Z$/, 'Z'),
      ends_at: new Date(Date.now() + 24 * hour).toISOString().replace(/\.\d+Z$/, 'Z'),
      entrance_ids: [],
      issue_sequence: 1,
      ...fields
    }), { mode: 0o600 })
    return path
  }

  logs () {
    return this.procs.map((p) => `--- ${p.name}\n${p.output}`).join('\n')
  }

  async stop () {
    for (const p of this.procs.reverse()) await p.stop('SIGTERM')
    if (!process.env.KEEP_STACK && existsSync(this.dir)) rmSync(this.dir, { recursive: true, force: true })
  }
}
