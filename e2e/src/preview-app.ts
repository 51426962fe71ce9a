import type { CommandHandle, Sandbox } from '@den/sdk';

/** Where the test app keeps its files inside the sandbox. */
export const PREVIEW_APP = {
  script: '/home/user/preview_app.py',
  /** 20 MiB of random bytes the app serves at GET /big (made by `startPreviewApp`) */
  bigFile: '/tmp/den-big.bin',
  bigBytes: 20 * 1024 * 1024,
  /** one line per WebSocket that ended: `client-close <code>`, `server-close`, or `eof` */
  wsEvents: '/tmp/den-ws-events.log',
} as const;

/**
 * A small HTTP/1.1 + WebSocket server for the preview proxy's end-to-end tests, in Python because the base image has
 * python3 but no npm packages. The WebSocket side is RFC 6455 by hand (handshake with sha1/base64, masked client
 * frames, text/binary echo, ping/pong, close handshake), so nothing beyond the standard library is needed.
 *
 * - `GET /anything`: JSON `{path, headers, peerPort}` describing the request as the app saw it; `peerPort` is the
 *   port of the proxy's connection, so equal values across requests prove the proxy reused a pooled connection.
 * - `GET /events`: Server-Sent Events, chunked, three events 400 ms apart, then the end.
 * - `GET /big`: the 20 MiB file, Content-Length framed.
 * - `POST /echo`: the request body back, streamed 64 KiB at a time while it still arrives.
 * - `GET /ws`: WebSocket echo; the text message `close-please` makes the server close with 4002.
 */
const PYTHON_APP = String.raw`
import base64, hashlib, json, struct, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
BIG = '${PREVIEW_APP.bigFile}'
WS_EVENTS = '${PREVIEW_APP.wsEvents}'
CHUNK = 64 * 1024


def note(line):
    with open(WS_EVENTS, 'a') as f:
        f.write(line + '\n')


def read_exact(rfile, n):
    data = b''
    while len(data) < n:
        part = rfile.read(n - len(data))
        if not part:
            return None
        data += part
    return data


def read_frame(rfile):
    head = read_exact(rfile, 2)
    if head is None:
        return None
    opcode = head[0] & 0x0F
    masked = head[1] & 0x80
    length = head[1] & 0x7F
    if length == 126:
        length = struct.unpack('!H', read_exact(rfile, 2))[0]
    elif length == 127:
        length = struct.unpack('!Q', read_exact(rfile, 8))[0]
    mask = read_exact(rfile, 4) if masked else b'\0\0\0\0'
    payload = read_exact(rfile, length) if length else b''
    if payload is None:
        return None
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def frame(opcode, payload):
    n = len(payload)
    if n < 126:
        head = struct.pack('!BB', 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack('!BBH', 0x80 | opcode, 126, n)
    else:
        head = struct.pack('!BBQ', 0x80 | opcode, 127, n)
    return head + payload


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type='application/json'):
        data = body.encode()
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        route = self.path.split('?')[0]
        if route == '/ws':
            return self.websocket()
        if route == '/events':
            return self.events()
        if route == '/big':
            return self.big()
        described = {'path': self.path, 'headers': {k.lower(): v for k, v in self.headers.items()},
                     'peerPort': self.client_address[1]}
        self.reply(200, json.dumps(described))

    def do_POST(self):
        length = int(self.headers.get('Content-Length', '0'))
        self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(length))
        self.end_headers()
        left = length
        while left > 0:
            part = self.rfile.read(min(CHUNK, left))
            if not part:
                break
            self.wfile.write(part)
            left -= len(part)

    def events(self):
        self.send_response(200)
        self.send_header('Content-Type', 'text/event-stream')
        self.send_header('Cache-Control', 'no-cache')
        self.send_header('Transfer-Encoding', 'chunked')
        self.end_headers()
        for i in range(3):
            event = ('data: event %d\n\n' % i).encode()
            self.wfile.write(b'%x\r\n%s\r\n' % (len(event), event))
            time.sleep(0.4)
        self.wfile.write(b'0\r\n\r\n')

    def big(self):
        with open(BIG, 'rb') as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(0)
            self.send_response(200)
            self.send_header('Content-Type', 'application/octet-stream')
            self.send_header('Content-Length', str(size))
            self.end_headers()
            while True:
                part = f.read(CHUNK)
                if not part:
                    break
                self.wfile.write(part)

    def websocket(self):
        key = self.headers.get('Sec-WebSocket-Key')
        if (self.headers.get('Upgrade') or '').lower() != 'websocket' or not key:
            return self.reply(426, json.dumps({'error': 'expected a WebSocket upgrade'}))
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101, 'Switching Protocols')
        self.send_header('Upgrade', 'websocket')
        self.send_header('Connection', 'Upgrade')
        self.send_header('Sec-WebSocket-Accept', accept)
        self.end_headers()
        self.close_connection = True
        while True:
            got = read_frame(self.rfile)
            if got is None:
                note('eof')
                return
            opcode, payload = got
            if opcode == 1 and payload == b'close-please':
                self.wfile.write(frame(8, struct.pack('!H', 4002) + b'server says bye'))
                note('server-close')
                return
            if opcode in (1, 2):
                self.wfile.write(frame(opcode, payload))
            elif opcode == 9:
                self.wfile.write(frame(10, payload))
            elif opcode == 8:
                code = struct.unpack('!H', payload[:2])[0] if len(payload) >= 2 else 1005
                self.wfile.write(frame(8, payload[:2]))
                note('client-close %d' % code)
                return


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(('0.0.0.0', int(sys.argv[1])), Handler).serve_forever()
`;

/**
 * Writes the test app into the sandbox, makes its 20 MiB file and starts it on `port` (bound to 0.0.0.0); resolves
 * once the SDK reports the port reachable. Returns the background process and the sha256 of the big file as
 * computed inside the sandbox.
 */
export async function startPreviewApp(
  sbx: Sandbox,
  port: number,
): Promise<{ server: CommandHandle; bigSha256: string }> {
  await sbx.files.write(PREVIEW_APP.script, PYTHON_APP);
  const made = await sbx.commands.run(
    `head -c ${PREVIEW_APP.bigBytes} /dev/urandom > ${PREVIEW_APP.bigFile} && sha256sum ${PREVIEW_APP.bigFile}`,
  );
  if (made.exitCode !== 0) throw new Error(`could not make ${PREVIEW_APP.bigFile}: ${made.stderr}`);
  const server = await sbx.commands.run(['python3', PREVIEW_APP.script, String(port)], { background: true });
  await sbx.ports.waitFor(port, { timeoutMs: 30_000 });
  return { server, bigSha256: made.stdout.split(' ')[0]! };
}
