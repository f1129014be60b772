"""Serve this folder's web page on http://127.0.0.1:8000 with the two headers that let it use threads.

    python serve.py [--port 8000] [--bind 127.0.0.1]

Browsers give a page SharedArrayBuffer, and so ONNX Runtime Web its worker threads, only when the
page is cross-origin isolated: served with Cross-Origin-Opener-Policy: same-origin and
Cross-Origin-Embedder-Policy: require-corp. `python -m http.server` sends neither, and the page then
runs on one thread. Standard library only.
"""

from __future__ import annotations

import argparse
import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}


class IsolatedHandler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".wasm": "application/wasm"}

    def end_headers(self):
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format, *args):  # quiet: a page load is a dozen requests
        pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Serve the bundle's web page, cross-origin isolated (threads).")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent, help="folder to serve")
    args = parser.parse_args(argv)
    handler = functools.partial(IsolatedHandler, directory=str(args.root))
    with ThreadingHTTPServer((args.bind, args.port), handler) as server:
        print(f"serving {args.root} at http://{args.bind}:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
