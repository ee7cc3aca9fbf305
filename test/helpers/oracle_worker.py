"""The Python side of the test oracle (test/helpers/oracle.ts).

Reads requests from stdin and answers on stdout, each frame being a 4-byte
big-endian length of a JSON header followed by a payload:
  request:  {"code": str, "input": n}  + n bytes of input
  response: {"ok": true, "kind": "json"|"bytes", "json": ...} + bytes payload
            {"ok": false, "error": str, "traceback": str}
The code runs with `input` (bytes) and `args` (the request's JSON args) in its
namespace and leaves its answer in `result`: bytes go back raw, anything else as JSON.
"""
import json
import struct
import sys
import traceback

base = {'__name__': '__oracle__'}


def read_exact(n):
    buf = b''
    while len(buf) < n:
        chunk = sys.stdin.buffer.read(n - len(buf))
        if not chunk:
            sys.exit(0)
        buf += chunk
    return buf


def send(header, payload=b''):
    h = json.dumps(header).encode()
    out = sys.stdout.buffer
    out.write(struct.pack('>I', len(h)) + h + struct.pack('>I', len(payload)) + payload)
    out.flush()


while True:
    (hlen,) = struct.unpack('>I', read_exact(4))
    req = json.loads(read_exact(hlen))
    (ilen,) = struct.unpack('>I', read_exact(4))
    data = read_exact(ilen)
    ns = dict(base)
    ns.update(input=data, args=req.get('args'), result=None)
    try:
        exec(compile(req['code'], '<oracle>', 'exec'), ns)
        result = ns['result']
        if isinstance(result, (bytes, bytearray)):
            send({'ok': True, 'kind': 'bytes'}, bytes(result))
        else:
            send({'ok': True, 'kind': 'json', 'json': result})
    except BaseException as e:  # report everything, keep serving
        send({'ok': False, 'error': '%s: %s' % (type(e).__name__, e), 'traceback': traceback.format_exc()})
