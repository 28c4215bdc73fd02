"""A page in the root, opened through /files/ by a logged-in user in a real headless Chromium, can
neither read the `_xsrf` cookie nor act through the API with the login cookie (issue 20, item 1).

Without the sandbox (`Content-Security-Policy: sandbox allow-scripts`) the page runs on the API's own
origin: it reads `_xsrf` and its POST creates a file (reproduced before the fix). Sandboxed, it runs in
an opaque origin: no cookies, and its requests carry `Origin: null`, which the core refuses.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from himalia.testing import serve_process

pytestmark = pytest.mark.timeout(240)

ATTACK = """<!doctype html><title>innocent</title><script>
(async () => {
  const out = {};
  try { out.cookie = document.cookie; } catch (e) { out.cookie_error = e.name; }
  const xsrf = ((out.cookie || '').match(/_xsrf=([^;]+)/) || [])[1] || '';
  try {
    const r = await fetch('/api/contents', { method: 'POST', credentials: 'include',
      headers: { 'X-XSRFToken': xsrf, 'Content-Type': 'application/json' }, body: '{"type": "file"}' });
    out.post = r.status;
  } catch (e) { out.post_error = String(e); }
  try {  // a "simple" request: no preflight, so only the server can refuse it
    const r = await fetch('/api/contents', { method: 'POST', credentials: 'include', body: '{"type": "file"}' });
    out.simple_post = r.status;
  } catch (e) { out.simple_post_error = String(e); }
  window.__attempt = out;
})();
</script>"""


def test_a_page_from_the_root_cannot_act_as_the_user(tmp_path: Path, chromium: Path, run_node, jupyter_env) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "innocent.html").write_text(ATTACK)
    token = secrets.token_hex(16)
    with serve_process("--root-dir", str(root), "--token", token, env=jupyter_env(tmp_path)) as server:
        env = {**jupyter_env(tmp_path), "HIMALIA_URL": server.url, "HIMALIA_TOKEN": token, "PAGE": "innocent.html",
               "CHROMIUM": str(chromium), "USER_DATA_DIR": str(tmp_path / "chromium")}
        run = run_node("user_content.mjs", env, timeout=180)
        run.assert_step("browser: log in with ?token= (login and _xsrf cookies set)")
        opened = run.assert_step("browser: open the page from the root through /files/")
    attempt = opened["attempt"]
    assert sorted(p.name for p in root.iterdir()) == ["innocent.html"], f"the page acted as the user: {attempt}"
    assert "cookie" not in attempt and attempt["cookie_error"] == "SecurityError", attempt
    assert "post" not in attempt and "simple_post" not in attempt, attempt  # both refused: network errors
    assert opened["headers"]["content-security-policy"] == "sandbox allow-scripts"
    assert opened["headers"]["x-content-type-options"] == "nosniff"
