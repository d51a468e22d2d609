"""The command's exit: status, output and exit handlers as with ``sys.exit``, also where the
interpreter's teardown is skipped (torch loaded)."""

import subprocess
import sys
import textwrap

import pytest


def _run(body: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent('''
        import atexit, sys, threading, time
        import unbake.cli as cli
        ''') + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("torch_loaded", [False, True])
@pytest.mark.parametrize("code, status, err", [(None, 0, ""), (0, 0, ""), (3, 3, ""), ("bad input", 1, "bad input")])
def test_exit_status_output_and_handlers(torch_loaded, code, status, err):
    res = _run(f'''
        if {torch_loaded}:
            import torch
        atexit.register(lambda: print("handler ran", flush=True))
        def late():
            time.sleep(0.3)
            print("thread done", flush=True)
        threading.Thread(target=late).start()
        print("unflushed", end="")
        cli._exit({code!r})
        ''')
    assert res.returncode == status, res.stderr
    assert res.stdout == "unflushedthread done\nhandler ran\n"
    assert err in res.stderr
