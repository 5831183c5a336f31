"""Fixtures shared by several test files. (Plain helpers they share are modules beside this
one: cli_support.py runs the CLI, helpers.py checks ops and makes leaves, train_support.py
makes the tiny training settings.)

It also places the tests on pytest-xdist's workers (`--dist loadgroup`, pyproject.toml): one
file's tests stay on one worker, as they share its compiled kernels and module fixtures, and
the files that compile the float64 kernels of every cell share one worker, so that each of
those kernels is compiled, or loaded from the kernel cache, once per run, not once per worker."""

import pytest

# The files that build fused layers of every built-in cell in float64 (gradchecks, the
# sampler against the forward pass, the elementwise cells, the folded projection, higher order).
SHARE_CELL_KERNELS = {"test_rnn.py", "test_sampler.py", "test_elementwise_cells.py", "test_charlm_fold.py",
                      "test_higher_order.py"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group("cell_kernels" if name in SHARE_CELL_KERNELS else name))


@pytest.fixture(scope="session")
def draw_id():
    """The compiled sampling loop's draw: draw_id(logits, rng, temperature, top_k, greedy[, top_p])
    -> the id drawn (-1 for non-finite logits). Compiled once per run, for a tiny float64 model."""
    import minigrad as mg
    from rnn.model.charlm import CharLM, ModelConfig
    from rnn.sample import Sampler

    mg.random.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=7, cell="rnn", embed=3, hidden=4, layers=1, dtype="float64"))
    return Sampler(model, model.initial_state(1)).loop.draw_id
