"""Run `himalia` on uvloop (optional; `pip install uvloop`): the same CLI, another event loop."""

import asyncio
import sys

import uvloop

if __name__ == "__main__":
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from himalia.cli import main

    sys.exit(main())
