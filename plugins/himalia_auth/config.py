"""The `[plugins.auth]` table."""

from __future__ import annotations

import re
from dataclasses import dataclass

from himalia import setting


@dataclass(frozen=True)
class AuthConfig:
    token: str = setting("", "Token clients must present. Empty: $JUPYTER_TOKEN if set, else a random "
                             "token printed at start-up.", secret=True)
    allow_origin: str = setting("", "Origin allowed to make cross-origin requests ('*' for any). "
                                    "Empty: same-origin only.")
    allow_origin_pat: str = setting("", "Regular expression of allowed origins (full match).")
    allow_credentials: bool = setting(False, "Send Access-Control-Allow-Credentials to allowed origins.")
    disable_check_xsrf: bool = setting(False, "Skip the XSRF check for cookie-authenticated requests. "
                                              "Unsafe: only for trusted, same-origin deployments.")
    cookie_max_age: int = setting(14 * 24 * 3600, "Lifetime of the login cookie, in seconds.")

    def __post_init__(self) -> None:
        if self.allow_origin_pat:
            try:
                re.compile(self.allow_origin_pat)
            except re.error as e:
                raise ValueError(f"'allow_origin_pat' is not a valid regular expression ({e}): "
                                 f"{self.allow_origin_pat!r}") from None
