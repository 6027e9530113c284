// Two WebTorrent instances in headless Chromium, each in a page of its own, transfer a file
// through the tracker at the announce URL given: one seeds random bytes, the other adds the
// magnet link and downloads them. WebTorrent's browser bundle is loaded as an ES module from
// a page served here on 127.0.0.1 (a secure context, which WebTorrent's hashing needs).
// Prints one JSON line: what was seeded and what arrived, each with its SHA-256.
//
//   node browser.mjs ANNOUNCE_URL CHROMIUM SECONDS SIZE
//
// Chromium offers no loopback ICE candidates: run this in a network namespace with an
// address and a default route on an interface of its own (tests/realclients/webtorrent.py).
import http from 'node:http'
import { readFile } from 'node:fs/promises'
import puppeteer from 'puppeteer-core'

const [tracker, chromium, seconds, size] = process.argv.slice(2)
const bundle = await readFile(new URL('./node_modules/webtorrent/dist/webtorrent.min.js', import.meta.url))
const page = '<!DOCTYPE html><meta charset="utf-8"><title>WebTorrent</title>' +
  '<script type="module">import WebTorrent from "./webtorrent.min.js";' +
  'window.WebTorrent = WebTorrent; window.ready = true</script>'
const server = http.createServer((request, response) => {
  if (request.url === '/webtorrent.min.js') {
    response.writeHead(200, { 'content-type': 'text/javascript' })
    response.end(bundle)
  } else {
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
    response.end(page)
  }
})
await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
const url = `http://127.0.0.1:${server.address().port}/`

const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    // Raw host candidates rather than mDNS names, which another browser process cannot
    // resolve.
    '--disable-features=WebRtcHideLocalIpsWithMdns'
  ]
})
const timer = setTimeout(() => done({ error: `no transfer within ${seconds} seconds` }, 1),
  Number(seconds) * 1000)
const logs = []

async function done (result, code) {
  clearTimeout(timer)
  result.logs = logs
  process.stdout.write(JSON.stringify(result) + '\n')
  await browser.close().catch(() => {})
  server.close()
  process.exit(code)
}

async function open (name) {
  const tab = await browser.newPage()
  tab.on('console', message => logs.push(`${name}: ${message.text()}`))
  tab.on('pageerror', error => logs.push(`${name} error: ${error.message}`))
  await tab.goto(url)
  await tab.waitForFunction('window.ready === true')
  return tab
}

try {
  const seeder = await open('seeder')
  const leecher = await open('leecher')
  const seeded = await seeder.evaluate(async (tracker, size) => {
    const hex = buffer => Array.from(new Uint8Array(buffer), b => b.toString(16).padStart(2, '0')).join('')
    const bytes = new Uint8Array(size)
    for (let start = 0; start < size; start += 65536) {
      crypto.getRandomValues(bytes.subarray(start, Math.min(size, start + 65536)))
    }
    const client = new window.WebTorrent({ tracker: { rtcConfig: { iceServers: [] } } })
    window.client = client
    const torrent = await new Promise((resolve, reject) => {
      client.on('error', reject)
      client.seed(new File([bytes], 'payload.bin'), { announce: [tracker] }, resolve)
    })
    return {
      magnet: torrent.magnetURI,
      infoHash: torrent.infoHash,
      size,
      sha256: hex(await crypto.subtle.digest('SHA-256', bytes))
    }
  }, tracker, Number(size))
  const fetched = await leecher.evaluate(async magnet => {
    const hex = buffer => Array.from(new Uint8Array(buffer), b => b.toString(16).padStart(2, '0')).join('')
    const started = performance.now()
    const client = new window.WebTorrent({ tracker: { rtcConfig: { iceServers: [] } } })
    window.client = client
    const torrent = await new Promise((resolve, reject) => {
      client.on('error', reject)
      client.add(magnet, resolve)
    })
    if (!torrent.done) await new Promise(resolve => torrent.once('done', resolve))
    const data = await torrent.files[0].arrayBuffer()
    return {
      name: torrent.files[0].name,
      size: data.byteLength,
      sha256: hex(await crypto.subtle.digest('SHA-256', data)),
      seconds: (performance.now() - started) / 1000
    }
  }, seeded.magnet)
  await done({ seeded, fetched }, 0)
} catch (error) {
  await done({ error: String(error && error.stack ? error.stack : error) }, 1)
}
