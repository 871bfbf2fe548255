// Times Seam's JavaScript SDK on its defaults against a running cloud, for
// BenchmarkSDK in hwtest (which starts the cloud, the bridge and the card
// and passes them here): one encodeCredential first (the card is then one
// this system issued), then BENCH_N calls of BENCH_OP (encode or scan).
// Prints {calls: [{start, end, status}], floor: [ms]}: each call's times in
// milliseconds since the Unix epoch, so the caller can match them with the
// card's I/O, and after each call the time of one acs.encoders.get.
import { SeamHttp } from '@seamapi/http/connect'

const env = (name) => {
  const v = process.env[name]
  if (!v) throw new Error(`${name} is not set`)
  return v
}
const seam = SeamHttp.fromApiKey(env('BENCH_API_KEY'), { endpoint: env('BENCH_ENDPOINT') })
const encoder = env('BENCH_ENCODER_ID')
const credential = env('BENCH_CREDENTIAL_ID')
const op = env('BENCH_OP')
const n = Number(env('BENCH_N'))

const calls = {
  encode: () => seam.acs.encoders.encodeCredential({ acs_encoder_id: encoder, acs_credential_id: credential }),
  scan: () => seam.acs.encoders.scanCredential({ acs_encoder_id: encoder })
}
if (!calls[op]) throw new Error(`BENCH_OP must be encode or scan, not ${op}`)

// Wall-clock milliseconds with sub-millisecond resolution.
const now = () => performance.timeOrigin + performance.now()

await calls.encode()
const out = { calls: [], floor: [] }
for (let i = 0; i < n; i++) {
  let start = now()
  const attempt = await calls[op]()
  out.calls.push({ start, end: now(), status: attempt.status })
  // The floor: the SDK, HTTP and the API's key check and one read, for a
  // call that runs no job.
  start = now()
  await seam.acs.encoders.get({ acs_encoder_id: encoder })
  out.floor.push(now() - start)
}
console.log(JSON.stringify(out))
