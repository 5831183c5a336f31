"""The graph page in a real browser: headless Chromium (Debian's chromium + chromium-driver) via selenium.

Each page is opened from disk (file://) as a reader would. One browser session serves the
module. Screenshots are kept as artifacts in $VIZ_SCREENSHOT_DIR when set, else in pytest's
temporary folder (printed at the end: run with -s to see where, or look under
/tmp/pytest-of-$USER/pytest-current/viz_screenshots0/).
Without a browser the tests skip, saying why; with CI set they fail instead.
"""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad import autograd, viz
from rnn.model.layers import Recurrent
from browser_support import start_chromium

HOSTILE = "</script><script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">'\""


@pytest.fixture(scope="module")
def browser():
    driver = start_chromium()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = Path(os.environ["VIZ_SCREENSHOT_DIR"]) if os.environ.get("VIZ_SCREENSHOT_DIR") else (
        tmp_path_factory.mktemp("viz_screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    print(f"\ngraph page screenshots kept in {folder}")


def unrolled_lstm(steps, engine="eager", hidden=3):
    """(loss, layer, names, walk): the walk is the engine's order, seen through its own hook."""
    mg.random.manual_seed(0)
    layer = Recurrent("lstm", 2, hidden, engine=engine)
    x = mg.tensor(np.random.default_rng(0).standard_normal((1, steps, 2)).astype(np.float32))
    h0, c0 = (mg.tensor(np.zeros((1, hidden), np.float32)) for _ in range(2))
    outputs, _ = layer(x, [(h0, c0)])
    loss = outputs.sum()
    walk = []
    with autograd.observe_backward(lambda node, outs, ins: walk.append(node)):
        loss.backward()
    return loss, layer, {id(h0): "h0", id(c0): "c0"}, walk


def open_page(browser, path):
    browser.get(path.resolve().as_uri())
    assert browser.execute_script("return document.body.dataset.ready") == "1", browser.get_log("browser")


def drawn_nodes(browser) -> int:
    return browser.execute_script("return document.querySelectorAll('#graph g.node').length")


def click_node(browser, index):
    from selenium.webdriver.common.by import By
    element = browser.find_element(By.CSS_SELECTOR, f'#graph g.node[data-index="{index}"]')
    browser.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'center'})", element)
    element.click()


def panel_text(browser) -> str:
    return browser.execute_script("return document.getElementById('panel').textContent")


@pytest.mark.parametrize("graphviz_present", [True, False], ids=["graphviz", "fallback-layout"])
def test_page_draws_every_node_and_a_click_shows_the_panel(browser, screenshots, tmp_path, monkeypatch,
                                                           graphviz_present):
    if not graphviz_present:
        monkeypatch.setitem(sys.modules, "graphviz", None)
    loss, layer, names, walk = unrolled_lstm(steps=3)
    path = tmp_path / "lstm.html"
    view = mg.viz.to_html(loss, path, names=names, params=layer.named_parameters(), title="lstm, 3 steps")
    assert view.model["layout"].startswith("graphviz" if graphviz_present else "layered")
    open_page(browser, path)
    counted = viz._Graph(loss)
    assert drawn_nodes(browser) == len(counted.ops) + len(counted.leaves) + 1  # + the output box

    tanh = next(node for node in walk if node.name == "Tanh")
    click_node(browser, view.index_of(tanh))
    text = panel_text(browser)
    assert browser.execute_script("return document.getElementById('panel').dataset.node") == str(view.index_of(tanh))
    for expected in ("Tanh", "outputs", "inputs", "gradient after backward", "derivative rule", "rules.py",
                     "1.0 - out * out", "min/mean/max", "float32"):
        assert expected in text, expected
    first_value = float(tanh.outputs()[0].data.reshape(-1)[0])
    assert f"{first_value:.4g}" in text  # a few of its values

    click_node(browser, view.index_of(layer.weight_hh_l0))
    text = panel_text(browser)
    assert "weight_hh_l0" in text and f"{float(layer.weight_hh_l0.grad.reshape(-1)[0]):.4g}" in text
    browser.save_screenshot(str(screenshots / f"lstm3-{'graphviz' if graphviz_present else 'layered'}.png"))


def test_the_stepper_highlights_the_nodes_in_the_order_backward_walked(browser, screenshots, tmp_path):
    from selenium.webdriver.common.by import By
    loss, layer, names, walk = unrolled_lstm(steps=3)
    path = tmp_path / "stepper.html"
    view = mg.viz.to_html(loss, path, names=names, params=layer.named_parameters())
    open_page(browser, path)
    assert browser.execute_script("return document.querySelectorAll('#graph g.node.current').length") == 0
    pressed = 0
    for target in (1, 2, 7, 23):
        while pressed < target:
            browser.find_element(By.ID, "step-next").click()
            pressed += 1
        current = browser.find_elements(By.CSS_SELECTOR, "#graph g.node.current")
        assert len(current) == 1
        node = walk[target - 1]
        assert current[0].get_attribute("data-index") == str(view.index_of(node))
        flows = browser.execute_script("return document.querySelectorAll('#graph g.edge.flow').length")
        assert flows == sum(parent.requires_grad for parent in node.inputs)  # each gradient sent back, drawn
        assert f"Backward step {target} of {len(walk)}" in panel_text(browser)
        assert "gradient flowing into each input" in panel_text(browser)
    browser.save_screenshot(str(screenshots / "lstm3-stepper.png"))
    browser.find_element(By.ID, "step-prev").click()
    current = browser.find_element(By.CSS_SELECTOR, "#graph g.node.current")
    assert current.get_attribute("data-index") == str(view.index_of(walk[pressed - 2]))


def test_hostile_names_render_as_text_and_never_run(browser, tmp_path):
    x = mg.tensor([[1.0, 2.0]], requires_grad=True)
    loss = (x * x).sum()
    path = tmp_path / "hostile.html"
    view = mg.viz.to_html(loss, path, names={x: HOSTILE}, params=[(HOSTILE + "w", x)], title=HOSTILE)
    open_page(browser, path)
    assert browser.execute_script("return window.__pwned === undefined")
    assert browser.execute_script("return document.querySelectorAll('img, #panel script, #graph script').length") == 0
    assert browser.execute_script("return document.getElementById('title').textContent") == HOSTILE
    assert browser.title == HOSTILE
    click_node(browser, view.index_of(x))
    assert HOSTILE in panel_text(browser)
    assert browser.execute_script("return window.__pwned === undefined")


def test_the_stepper_draws_no_gradient_into_inputs_that_take_none(browser, tmp_path):
    from selenium.webdriver.common.by import By
    loss, layer, names, walk = unrolled_lstm(steps=3, engine="fused")
    path = tmp_path / "fused.html"
    view = mg.viz.to_html(loss, path, names=names, params=layer.named_parameters())
    open_page(browser, path)
    position = next(k for k, node in enumerate(walk) if node.name == "FusedRecurrence")
    for _ in range(position + 1):
        browser.find_element(By.ID, "step-next").click()
    fused = walk[position]
    assert [parent.requires_grad for parent in fused.inputs] == [True, True, True, False, False]  # h0, c0: no grad
    flowing = browser.execute_script(
        "return [...document.querySelectorAll('#graph g.edge.flow')].map(e => Number(e.dataset.edge))")
    sources = sorted(view.model["edges"][k]["from"] for k in flowing)
    assert sources == sorted(view.index_of(parent.grad_fn or parent) for parent in fused.inputs[:3])
    assert "def step_backward" in panel_text(browser)  # the fused node's kernel, in its panel


def test_a_64_step_rnn_draws_only_near_the_view_and_the_stepper_reaches_the_end(browser, screenshots, tmp_path):
    from selenium.webdriver.common.by import By
    loss, layer, names, walk = unrolled_lstm(steps=64)
    path = tmp_path / "lstm64.html"
    view = mg.viz.to_html(loss, path, names=names, params=layer.named_parameters())
    assert len(view.model["nodes"]) > viz.DRAW_ALL_LIMIT
    open_page(browser, path)
    assert 0 < drawn_nodes(browser) < len(view.model["nodes"])
    assert browser.find_element(By.ID, "depth-group").is_displayed()
    browser.find_element(By.ID, "step-end").click()
    current = browser.find_element(By.CSS_SELECTOR, "#graph g.node.current")  # drawn where the walk ended
    assert current.get_attribute("data-index") == str(view.index_of(walk[-1]))
    browser.save_screenshot(str(screenshots / "lstm64-last-step.png"))
