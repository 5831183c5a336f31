"""How large a graph the graph page (mg.viz.to_html) handles: file size, time to write, time to load.

    PYTHONPATH=. python benchmarks/bench_viz_page.py --steps 3 64 400 --repeat 3

For each step count, an eager LSTM (input 2, hidden 3, batch 1) is unrolled and one backward
run; the page of its loss is written (seconds to build + lay out + write, file size), then
opened from disk in headless Chromium (Debian's chromium + chromedriver) `--repeat` times:
load = from navigation start until the page's script has drawn (`document.body.dataset.ready`),
plus the number of boxes drawn and the time to press the backward stepper to its last step.
Figures are medians; they vary with the machine's load, so quote them with the command.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import minigrad as mg  # noqa: E402
from rnn.model.layers import Recurrent  # noqa: E402
from browser_support import start_chromium  # noqa: E402


def unrolled_loss(steps):
    mg.random.manual_seed(0)
    layer = Recurrent("lstm", 2, 3, engine="eager")
    x = mg.tensor(np.random.default_rng(0).standard_normal((1, steps, 2)).astype(np.float32))
    outputs, _ = layer(x)
    loss = outputs.sum()
    with mg.viz.record_backward() as walk:
        loss.backward()
    return loss, layer, walk


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[3, 64, 400])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="viz-bench-"))
    browser = start_chromium()
    try:
        for steps in args.steps:
            loss, layer, walk = unrolled_loss(steps)
            path = folder / f"lstm{steps}.html"
            started = time.perf_counter()
            view = mg.viz.to_html(loss, path, params=layer.named_parameters(), walk=walk)
            written = time.perf_counter() - started
            loads, ends, drawn = [], [], 0
            for _ in range(args.repeat):
                browser.get(path.as_uri())
                loads.append(float(browser.execute_script("return document.body.dataset.drawnMs")))
                drawn = browser.execute_script("return document.querySelectorAll('#graph g.node').length")
                started = time.perf_counter()
                browser.execute_script("document.getElementById('step-end').click()")
                browser.execute_script("return document.querySelector('#graph g.node.current') !== null")
                ends.append(time.perf_counter() - started)
            print(f"steps {steps:4d}: {len(view.model['nodes']):6d} nodes, layout {view.model['layout']}, "
                  f"write {written:.2f} s, file {os.path.getsize(path) / 1e6:.2f} MB, "
                  f"load {statistics.median(loads) / 1000:.2f} s (median of {args.repeat}), drawn {drawn}, "
                  f"jump to last backward step {statistics.median(ends) * 1000:.0f} ms", flush=True)
    finally:
        browser.quit()


if __name__ == "__main__":
    main()
