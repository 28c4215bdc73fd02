"""Run `himalia` with the relay writing each message on its own (one `send_frame` per message, as before
issue 22), so one bench run can put the relay before and after side by side."""

import sys

if __name__ == "__main__":
    import himalia_kernels.hub

    himalia_kernels.hub.COALESCE = False
    from himalia.cli import main

    sys.exit(main())
