"""Run `himalia` with each disconnected session keeping its own copy of the iopub it misses, as before
the output log replaced the reconnect buffers (issue 17), so `python -m bench.restart` can put the relay
before and after side by side."""

import sys

if __name__ == "__main__":
    import himalia_kernels.hub

    himalia_kernels.hub.SESSION_COPIES = True
    from himalia.cli import main

    sys.exit(main())
