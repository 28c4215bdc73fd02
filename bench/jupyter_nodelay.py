"""Run jupyter_server with TCP_NODELAY on every accepted connection, websockets included.

Tornado turns Nagle's algorithm back on after each HTTP response, and a kernel websocket stays that way
after the upgrade, so small kernel messages wait for the peer's delayed ACK (~40 ms on Linux). This
wrapper pins nodelay on, then starts `jupyter_server.serverapp` with the given arguments.
"""

import sys

import tornado.httpserver
import tornado.iostream

_set_nodelay = tornado.iostream.IOStream.set_nodelay


def _always_nodelay(self: tornado.iostream.IOStream, value: bool) -> None:
    _set_nodelay(self, True)


_handle_stream = tornado.httpserver.HTTPServer.handle_stream


def _handle_stream_nodelay(self, stream, address):  # type: ignore[no-untyped-def]
    stream.set_nodelay(True)
    return _handle_stream(self, stream, address)


tornado.iostream.IOStream.set_nodelay = _always_nodelay  # type: ignore[method-assign]
tornado.httpserver.HTTPServer.handle_stream = _handle_stream_nodelay  # type: ignore[method-assign]

if __name__ == "__main__":
    from jupyter_server.serverapp import main

    sys.exit(main())
