"""A page a browser can read when it is not logged in: what a person sees instead of a JSON 401 when
they open a page or file without the token. API calls still get the JSON error."""

from __future__ import annotations

import html

from aiohttp import hdrs, web

from himalia import CONFIG, Unauthorized

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Log in · Himalia</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<link rel="icon" href="data:,">
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:10vh auto;padding:0 1em;color:#222}}
input{{font:inherit;padding:.3em;width:24em;max-width:100%}}button{{font:inherit;padding:.3em 1em}}
code{{background:#eee;padding:0 .2em}}</style></head>
<body><h1>Log in to this Jupyter server</h1>
<p>{message}.</p>
<p>Open the link with the token that <code>himalia serve</code> printed when it started
(<code>http://…/?token=…</code>), or paste the token here. <code>himalia list</code> shows the running
servers with their links.</p>
<form method="get" action="{action}"><input name="token" type="password" autocomplete="off"
 placeholder="token" aria-label="token" autofocus> <button type="submit">Log in</button></form>
</body></html>
"""


# the auth plugin's reasons, said for a person in a browser (its messages speak of headers)
BROWSER_MESSAGES = {
    "missing token": "You are not logged in",
    "invalid token": "That token is not this server's token",
    "invalid cookie": "Your login has expired, or the server was restarted with another token",
}


def _wants_html(request: web.Request) -> bool:
    """A browser navigating to a page (not a fetch from a script, not a websocket, not the REST API)."""
    if request.method not in ("GET", "HEAD") or request.headers.get(hdrs.UPGRADE):
        return False
    accept = request.headers.get(hdrs.ACCEPT, "")
    if "text/html" not in accept:
        return False
    base = request.app[CONFIG].server.base_url.rstrip("/")
    return "api" not in request.path[len(base):].split("/")  # /api/..., /lab/api/...


@web.middleware
async def login_page(request: web.Request, handler):
    """Outside authentication (order < 0): turns its 401 into an HTML page for browsers. Same status,
    so nothing that checks for 401 is fooled; the form sends `?token=` back to the same address."""
    try:
        return await handler(request)
    except Unauthorized as e:
        if not _wants_html(request):
            raise
        message = BROWSER_MESSAGES.get(e.reason or "", e.message[:1].upper() + e.message[1:])
        text = PAGE.format(message=html.escape(message),
                           action=html.escape(request.path, quote=True))
        return web.Response(status=401, text=text, content_type="text/html",
                            headers={hdrs.CACHE_CONTROL: "no-store"})
