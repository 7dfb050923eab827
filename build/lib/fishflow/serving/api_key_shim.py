"""Run a server module with its API key from the environment instead of the command line.

    <python> -P api_key_shim.py <module> [args...]

`/proc/<pid>/cmdline` is readable by every user of a shared node, `/proc/<pid>/environ` only by
the owner and root: the launcher puts the key into the environment, and this shim appends
`--api-key <key>` to `sys.argv` inside the process, then runs `<module>` as `python -m` would.
Every server fishflow starts (demo, fish-speech 0.1.0, git d3df505 and 3dd1f85) reads
`--api-key` with argparse from `sys.argv`.

Standalone on purpose (the standard library only): it runs under the fish-speech server's own
Python, which has no fishflow installed. `-P` keeps the shim's folder and the working directory
off `sys.path`, so a `tools/` folder there cannot shadow the server.
"""

import os
import runpy
import sys

KEY_ENV = "FISHFLOW_SERVER_API_KEY"


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(f"usage: python -P {sys.argv[0]} MODULE [ARGS...]")
    module, args = sys.argv[1], sys.argv[2:]
    # Popped: the server's own children (uvicorn workers, tools) do not inherit it.
    key = os.environ.pop(KEY_ENV, None)
    # argv[0] is replaced by the module's file, as with `python -m`.
    sys.argv = [module, *args, *(["--api-key", key] if key else [])]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
