"""The `[plugins.auth]` table."""

from __future__ import annotations

from dataclasses import dataclass

from himalia import setting


@dataclass(frozen=True)
class AuthConfig:
    token: str = setting("", "Token clients must present. Empty: $JUPYTER_TOKEN if set, else a random "
                             "token printed at start-up.", secret=True)
    disable_check_xsrf: bool = setting(False, "Skip the XSRF check for cookie-authenticated requests. "
                                              "Unsafe: only for trusted, same-origin deployments.")
    cookie_max_age: int = setting(14 * 24 * 3600, "Lifetime of the login cookie, in seconds.")


MOVED = {key: f"[server] {key} (the core checks origins, whatever identity provider is active)"
         for key in ("allow_origin", "allow_origin_pat", "allow_credentials")}
"""Keys this table used to have → where they are now."""
