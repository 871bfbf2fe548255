// The main job, end to end: encoder-cloud, encoder-bridge and a virtual
// card on the real pcscd, driven through Seam's own JavaScript SDK.
// Run it with `make demo`. DEMO_KEEP=1 leaves everything running until
// Ctrl-C, to try other calls against the printed endpoint and API key.
import { Stack } from './lib/stack.mjs'

const say = (s) => console.log(`\n== ${s}`)
const show = (v) => console.log(JSON.stringify(v, null, 2))

say('starting encoder-cloud (SQLite in a temporary directory, loopback only) and encoder-bridge')
const stack = await Stack.start({ jobTimeout: '30s' })
const stop = async () => { await stack.stop(); process.exit(0) }
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
try {
  const { seam } = stack
  console.log(`cloud:   ${stack.endpoint} (workspace ${stack.boot.workspace_id})`)
  console.log(`bridge:  ${stack.boot.bridge_id}, encoder "${stack.encoder.display_name}" on reader "${stack.reader}"`)
  console.log(`logs:    ${stack.dir}`)

  say(`virtual MIFARE Classic 1K card placed on "${stack.reader}" (vpcd ${stack.vpcd})`)
  await stack.insertCard('mifare_classic_1k')

  say('seam.acs.encoders.list()')
  show(await seam.acs.encoders.list())

  say('seam.acs.credentials.create({ access_method: "card", starts_at, ends_at })')
  const now = Date.now()
  const cred = await seam.acs.credentials.create({
    acs_system_id: stack.boot.acs_system_id,
    access_method: 'card',
    starts_at: new Date(now).toISOString(),
    ends_at: new Date(now + 3 * 24 * 3600 * 1000).toISOString()
  })
  show(cred)

  say('seam.acs.encoders.encodeCredential({ acs_encoder_id, acs_credential_id }) answers once the card is written:')
  const first = await seam.acs.encoders.encodeCredential(
    { acs_encoder_id: stack.encoder.acs_encoder_id, acs_credential_id: cred.acs_credential_id },
    { waitForActionAttempt: false })
  show(first)

  say('seam.actionAttempts.get() reads the same attempt (a client polls it while it is "pending"):')
  show(await seam.actionAttempts.get({ action_attempt_id: first.action_attempt_id }, { waitForActionAttempt: true }))

  say('seam.acs.encoders.scanCredential({ acs_encoder_id }):')
  show(await seam.acs.encoders.scanCredential({ acs_encoder_id: stack.encoder.acs_encoder_id }))

  if (process.env.DEMO_KEEP) {
    say(`running until Ctrl-C. API key for ${stack.endpoint}: ${stack.boot.api_key}`)
    await new Promise(() => {})
  }
  say('done: the card was encoded, read back by the bridge and scanned through the cloud')
} catch (err) {
  console.error(err)
  console.error(stack.logs())
  process.exitCode = 1
} finally {
  await stack.stop()
}
