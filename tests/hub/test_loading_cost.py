"""The checkpoint loader's shape probe (every architecture built on the meta device) stays cheap.

Building a model under ``torch.device("meta")`` sends factory functions without a meta kernel
(``hann_window``, ``normal_``, float ``arange`` ...) through torch's Python decompositions, whose
first use imports sympy and some 800 modules, added to every model load (the model card's
"Speed and memory" gives the time on its CPU). A fresh process builds each architecture
the way :func:`unbake.hub.checkpoint.build_for_state` does and reports whether sympy came in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from unbake.hub.architectures import ARCHITECTURES

FOUR = ["drums", "bass", "other", "vocals"]
# the smallest settings each architecture accepts; the probe's cost does not depend on size
SETTINGS = {
    "center": {},
    "htdemucs": {"sources": FOUR},
    "hdemucs": {"sources": FOUR},
    "scnet": {},
    "bs_roformer": {"depth": 1, "dim": 32},
    "mel_band_roformer": {"depth": 1, "dim": 32},
    "masknet": {},
}

_PROBE = """
import json, sys
import torch
from unbake.hub.architectures import model_from_config
for arch, kwargs in json.loads(sys.argv[1]).items():
    with torch.device("meta"):
        model_from_config(arch, kwargs)
    print(arch, "sympy" in sys.modules)
"""


def test_every_architecture_is_covered():
    assert set(SETTINGS) == set(ARCHITECTURES)


def test_meta_probe_imports_no_decompositions():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    res = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(SETTINGS)], capture_output=True,
                         text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    imported = dict(line.split() for line in res.stdout.split("\n") if line.strip())
    assert set(imported) == set(SETTINGS)
    # cumulative: the first architecture listed is the one that brought the decompositions in
    assert [a for a, s in imported.items() if s == "True"] == []
