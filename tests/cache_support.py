"""What the kernel-cache tests share: the small programs their child processes run.

Small arrays normally run numpy's ufuncs (minigrad.elementwise.NUMPY_BELOW), which would
leave the kernel cache untouched; these programs put them on the Numba kernels, whose
cache is what is under test.
"""

# A small real computation: elementwise kernels (a generated module) and package kernels.
COMPUTE = """
import numpy as np, minigrad as mg
mg.elementwise.NUMPY_BELOW = 0  # the kernels (and so their cache) are under test: no numpy path for small arrays
x = mg.tensor(np.array([1.0, 2.0, 3.0], np.float32), requires_grad=True)
y = (x * x).tanh().sum()
y.backward()
print("ok", round(float(y.item()), 4), x.grad.round(4).tolist())
"""

# The CLI as a script file (not cli.py: the script's folder comes first on sys.path).
RUN_CLI = "import sys\nfrom cli.main import main\nsys.argv[0] = 'minigrad-rnn'\nmain()\n"
# The same, with small arrays on the kernels.
RUN_CLI_ON_KERNELS = "import minigrad.elementwise\nminigrad.elementwise.NUMPY_BELOW = 0\n" + RUN_CLI
