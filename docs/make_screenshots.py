"""How the pictures of the graph page in docs/ were made (run from the repository's root):

    PYTHONPATH=. python docs/make_screenshots.py

Writes the page of an LSTM cell unrolled 3 steps with `minigrad-rnn graph --cell lstm --steps 3
--html` (eager engine, one backward run), opens it in headless Chromium (Debian's chromium and
chromium-driver, through selenium) and saves docs/graph-page-lstm.png (a node clicked: its
panel) and docs/graph-page-stepper.png (the backward stepper halfway through the walk).
"""

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser_support import start_chromium  # noqa: E402


def main():
    page = Path(tempfile.mkdtemp()) / "lstm.html"
    # This checkout's CLI, found through a sys.path set here (not `-m`, which would put the
    # working folder first, where a planted `cli` package would run instead).
    run_cli = f"import sys; sys.path.insert(0, {str(ROOT)!r}); sys.argv[0] = 'minigrad-rnn'; from cli.main import main; main()"
    subprocess.run([sys.executable, "-I", "-c", run_cli, "graph", "--cell", "lstm", "--steps", "3", "--html", str(page)],
                   check=True, cwd=ROOT)
    model = json.loads(re.search(r'id="graph-data">(.*?)</script>', page.read_text(encoding="utf-8"), re.S).group(1))
    browser = start_chromium(window=(1440, 900))
    try:
        browser.get(page.as_uri())
        # the cell state's tanh of the last step: the panel shows values, gradient and tanh's rule
        last_tanh = max(k for k, node in enumerate(model["nodes"]) if node["op"] == "Tanh")
        browser.execute_script("const box = document.querySelector(`#graph g.node[data-index='${arguments[0]}']`);"
                               "box.scrollIntoView({block: 'center', inline: 'center'});"
                               "box.dispatchEvent(new MouseEvent('click'))", last_tanh)
        browser.save_screenshot(str(ROOT / "docs" / "graph-page-lstm.png"))
        browser.get(page.as_uri())
        for _ in range(len(model["walk"]) // 2):
            browser.execute_script("document.getElementById('step-next').click()")
        browser.save_screenshot(str(ROOT / "docs" / "graph-page-stepper.png"))
    finally:
        browser.quit()
    print("wrote docs/graph-page-lstm.png and docs/graph-page-stepper.png")


if __name__ == "__main__":
    main()
