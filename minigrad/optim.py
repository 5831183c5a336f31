"""Optimizers and gradient clipping, with PyTorch 2.x's update rules and defaults.

    opt = mg.optim.Adam(model.parameters(), lr=3e-4)
    loss.backward()
    mg.optim.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad()

What is here: `Optimizer` (the shared machinery: parameter list, per-parameter state,
`zero_grad`, `state_dict` / `load_state_dict`), then one class per algorithm — `SGD`,
`Adam`, `AdamW`, `RMSprop`, `Adagrad` — whose `_update` mirrors the pseudo-code in the
torch.optim documentation line for line, and `clip_grad_norm_`.

Conventions shared by every optimizer:
  * one parameter group; the hyperparameters are attributes of the optimizer, so a
    learning-rate schedule is just `opt.lr = new_lr` between steps;
  * a parameter whose `.grad` is None is skipped (its state, including its step count,
    does not advance), as in PyTorch;
  * updates are done in place on `p.data` and never change its dtype: the state arrays
    are created with the parameter's dtype and every scalar is a Python float, which
    numpy applies at the array's precision (float32 stays float32);
  * `p.grad` is never modified by `step()` (weight decay makes a new array).

The update math is plain numpy, except in the two places that run over every weight at
every training step: Adam's update and the gradient norm are compiled kernels
(minigrad.kernels), one pass over the arrays instead of about ten numpy passes with
temporaries (at 2x256, Adam took ~3 ms of a ~100 ms step as numpy, ~0.3 ms compiled).
"""

import math

import numpy as np

from . import kernels
from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "clip_grad_norm_"]


def _flat(array: np.ndarray) -> np.ndarray:
    """A 1-d view of an array that a kernel updates in place."""
    if not array.flags.c_contiguous:  # reshape would copy, and the update would be lost
        raise ValueError("optimizer: a parameter's data must be a C-contiguous array to be updated in place")
    return array.reshape(-1)


def _plain(value):
    """A hyperparameter as a Python bool, int or float: numpy scalars would promote
    float32 arrays to float64 (NEP 50) and do not belong in a JSON checkpoint."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(value)


class Optimizer:
    """Holds the parameters, their per-parameter state and the hyperparameters.

    Subclasses define `_new_state(p)`, the dict of state a parameter starts with, and
    `_update(p, grad, state)`, which changes `p.data` in place and updates `state`.
    """

    # The per-parameter state names a subclass may store (checked by load_state_dict).
    _state_names = ()

    def __init__(self, params, defaults):
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of Parameters (e.g. model.parameters()), not a single tensor")
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        for p in params:
            if isinstance(p, dict):
                raise TypeError("parameter groups (dicts) are not supported: pass the parameters themselves")
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
        if len({id(p) for p in params}) != len(params):
            # Stepping a parameter twice per step() is never what was meant.
            raise ValueError("some parameters appear more than once in the parameter list")
        self.params = params
        self.defaults = dict(defaults)  # the values given at construction
        for name, value in defaults.items():
            setattr(self, name, value)
        self.state = [{} for _ in params]  # state[i] belongs to params[i]

    def __repr__(self):
        settings = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.defaults)
        return f"{type(self).__name__}({len(self.params)} parameters, {settings})"

    def zero_grad(self):
        """Forget the gradients (set to None, so the next backward() starts from nothing)."""
        for p in self.params:
            p.grad = None

    def step(self, closure=None):
        """Update every parameter that has a gradient. `closure`, if given, recomputes
        the loss (calling backward) and its result is returned, as in PyTorch."""
        loss = closure() if closure is not None else None
        for p, state in zip(self.params, self.state):
            if p.grad is None:
                continue
            if not state:  # first step for this parameter
                state.update(self._new_state(p))
            self._update(p, np.asarray(p.grad), state)
        return loss

    def _new_state(self, p) -> dict:
        """The state a parameter starts with (arrays in the parameter's dtype)."""
        return {}

    def _update(self, p, grad, state):
        raise NotImplementedError

    def _hyperparameters(self) -> dict:
        """Current hyperparameters as plain numbers; a tuple (Adam's betas) becomes
        one entry per element: "betas.0", "betas.1"."""
        out = {}
        for name in self.defaults:
            value = getattr(self, name)
            if isinstance(value, tuple):
                out.update({f"{name}.{j}": _plain(v) for j, v in enumerate(value)})
            else:
                out[name] = _plain(value)
        return out

    def state_dict(self) -> dict:
        """A flat snapshot: hyperparameter name -> number, and "state.<i>.<name>" ->
        a copy of parameter i's state (numpy arrays, and Python ints for step counts).

        Only arrays and plain numbers, so a checkpoint can store the arrays as tensors
        and the numbers as JSON. The arrays are copies: later steps do not change it.
        """
        out = self._hyperparameters()
        for i, state in enumerate(self.state):
            for name, value in state.items():
                out[f"state.{i}.{name}"] = value.copy() if isinstance(value, np.ndarray) else _plain(value)
        return out

    def load_state_dict(self, state_dict: dict):
        """Restore hyperparameters and state from `state_dict()` output, exactly.

        Everything is checked before anything is changed: a bad dict leaves the
        optimizer as it was.
        """
        expected = self._hyperparameters()
        given = {key for key in state_dict if not key.startswith("state.")}
        if given != set(expected):
            missing, unexpected = sorted(set(expected) - given), sorted(given - set(expected))
            raise ValueError(
                f"load_state_dict: the hyperparameters do not match {type(self).__name__}'s: "
                f"missing {missing or 'nothing'}, unexpected {unexpected or 'nothing'}"
            )
        hyper = {key: type(expected[key])(state_dict[key]) for key in expected}

        # The state needed depends on the hyperparameters (amsgrad, centered, momentum):
        # set them first, and put the old ones back if the state does not fit.
        previous = {name: getattr(self, name) for name in self.defaults}
        self._set_hyperparameters(hyper)
        try:
            self.state = self._checked_state(state_dict)
        except ValueError:
            for name, value in previous.items():
                setattr(self, name, value)
            raise
        return self

    def _set_hyperparameters(self, flat: dict):
        for name, value in self.defaults.items():
            if isinstance(value, tuple):
                setattr(self, name, tuple(flat[f"{name}.{j}"] for j in range(len(value))))
            else:
                setattr(self, name, flat[name])

    def _checked_state(self, state_dict: dict) -> list:
        """The "state.<i>.<name>" entries as a list of per-parameter dicts, copied into
        each parameter's dtype, after checking indices, names and shapes."""
        new_state = [{} for _ in self.params]
        for key, value in state_dict.items():
            if not key.startswith("state."):
                continue
            parts = key.split(".")
            if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) >= len(self.params):
                raise ValueError(f"load_state_dict: {key!r} does not name the state of one of the "
                                 f"{len(self.params)} parameters")
            index, name = int(parts[1]), parts[2]
            if name not in self._state_names:
                raise ValueError(f"load_state_dict: {type(self).__name__} keeps no state called {name!r} ({key!r})")
            p = self.params[index]
            if name == "step":
                new_state[index][name] = int(value)
                continue
            array = np.asarray(value)
            if array.shape != p.shape:
                raise ValueError(f"load_state_dict: {key!r} has shape {array.shape}, parameter {index} has shape {p.shape}")
            new_state[index][name] = np.array(array, dtype=p.dtype)  # a copy, in the parameter's dtype
        for index, state in enumerate(new_state):
            missing = sorted(set(self._new_state(self.params[index])) - set(state)) if state else []
            if missing:
                raise ValueError(f"load_state_dict: the state of parameter {index} lacks {missing}")
        return new_state


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum and weight decay.

    torch.optim.SGD's algorithm:
        g = g + weight_decay * p
        b = g                                   on the first step
        b = momentum * b + (1 - dampening) * g  afterwards
        g = g + momentum * b  (nesterov)   or   g = b
        p = p - lr * g
    """

    _state_names = ("momentum_buffer",)

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        if not 0.0 <= lr:  # (written so that NaN is rejected too)
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=float(lr), momentum=float(momentum), dampening=float(dampening),
                                      weight_decay=float(weight_decay), nesterov=bool(nesterov)))

    def _update(self, p, g, state):
        if self.weight_decay != 0:
            g = g + self.weight_decay * p.data  # L2 penalty: its gradient is weight_decay * p
        if self.momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                # The buffer starts as the first gradient itself (no dampening), like torch.
                # np.array, not astype: for a 0-d parameter `g` may be a numpy scalar, and
                # the buffer must be an array that the in-place updates below can change.
                buf = state["momentum_buffer"] = np.array(g, dtype=p.dtype)
            else:
                buf *= self.momentum
                buf += (1 - self.dampening) * g
            g = g + self.momentum * buf if self.nesterov else buf
        p.data -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba), with optional L2 weight decay and AMSGrad.

    torch.optim.Adam's algorithm, at step t:
        g = g + weight_decay * p               (AdamW instead: p = p * (1 - lr * weight_decay))
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)                  (amsgrad; then v_max is used instead of v)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    _state_names = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _decoupled_weight_decay = False  # True in AdamW

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=float(lr), betas=(float(betas[0]), float(betas[1])), eps=float(eps),
                                      weight_decay=float(weight_decay), amsgrad=bool(amsgrad)))

    def _new_state(self, p):
        state = {
            "step": 0,
            "exp_avg": np.zeros_like(p.data),  # m: running mean of the gradient
            "exp_avg_sq": np.zeros_like(p.data),  # v: running mean of its square
        }
        if self.amsgrad:
            state["max_exp_avg_sq"] = np.zeros_like(p.data)
        return state

    def _update(self, p, g, state):
        beta1, beta2 = self.betas
        state["step"] += 1
        t = state["step"]
        # m and v start at zero, so early on they underestimate; dividing by
        # 1 - beta^t removes that bias.
        step_size = self.lr / (1 - beta1 ** t)
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** t)
        decoupled = self._decoupled_weight_decay
        # Per element, in p's dtype (kernels.adam_update, one pass over the arrays):
        #   p = p * (1 - lr * weight_decay)                          AdamW only
        #   g = g + weight_decay * p                                 Adam only
        #   m = m + (1 - beta1) * (g - m)                            (torch's lerp)
        #   v = v * beta2 + (1 - beta2) * g * g
        #   v_max = max(v_max, v), used instead of v                 amsgrad only
        #   p = p - step_size * (m / (sqrt(v) / bias_correction2_sqrt + eps))
        coefficients = np.array([1 - self.lr * self.weight_decay if decoupled else 1.0,
                                 0.0 if decoupled else self.weight_decay,
                                 1 - beta1, beta2, 1 - beta2, step_size, bias_correction2_sqrt, self.eps], p.dtype)
        v = _flat(state["exp_avg_sq"])
        v_max = _flat(state["max_exp_avg_sq"]) if self.amsgrad else v[:0]  # empty: no amsgrad
        g = np.ascontiguousarray(g, p.dtype).reshape(-1)
        kernels.adam_update(_flat(p.data), g, _flat(state["exp_avg"]), v, v_max, coefficients)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p = p * (1 - lr * weight_decay)
    before the Adam step, instead of adding weight_decay * p to the gradient."""

    _decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


class RMSprop(Optimizer):
    """RMSprop (Hinton), optionally centered and with momentum.

    torch.optim.RMSprop's algorithm:
        g = g + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        centered:  g_avg = alpha * g_avg + (1 - alpha) * g;  v~ = v - g_avg^2   (else v~ = v)
        momentum:  b = momentum * b + g / (sqrt(v~) + eps);  p = p - lr * b
        otherwise: p = p - lr * g / (sqrt(v~) + eps)
    """

    _state_names = ("step", "square_avg", "grad_avg", "momentum_buffer")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        super().__init__(params, dict(lr=float(lr), alpha=float(alpha), eps=float(eps), weight_decay=float(weight_decay),
                                      momentum=float(momentum), centered=bool(centered)))

    def _new_state(self, p):
        state = {"step": 0, "square_avg": np.zeros_like(p.data)}  # step is not used by the update; torch keeps it
        if self.momentum > 0:
            state["momentum_buffer"] = np.zeros_like(p.data)
        if self.centered:
            state["grad_avg"] = np.zeros_like(p.data)
        return state

    def _update(self, p, g, state):
        state["step"] += 1

        if self.weight_decay != 0:
            g = g + self.weight_decay * p.data
        square_avg = state["square_avg"]
        square_avg *= self.alpha
        square_avg += (1 - self.alpha) * g * g
        if self.centered:
            # Centered: divide by an estimate of the gradient's variance, not its raw second moment.
            grad_avg = state["grad_avg"]
            grad_avg += (1 - self.alpha) * (g - grad_avg)  # alpha*g_avg + (1-alpha)*g, as torch's lerp
            avg = np.sqrt(square_avg - grad_avg * grad_avg) + self.eps
        else:
            avg = np.sqrt(square_avg) + self.eps
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            buf += g / avg
            p.data -= self.lr * buf
        else:
            p.data -= self.lr * (g / avg)


class Adagrad(Optimizer):
    """Adagrad (Duchi et al.): each coordinate's step shrinks with its summed squared gradients.

    torch.optim.Adagrad's algorithm, at step t:
        lr_t = lr / (1 + (t - 1) * lr_decay)
        g = g + weight_decay * p
        s = s + g * g                  (s starts at initial_accumulator_value)
        p = p - lr_t * g / (sqrt(s) + eps)
    """

    _state_names = ("step", "sum")

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= lr_decay:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise ValueError(f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        super().__init__(params, dict(lr=float(lr), lr_decay=float(lr_decay), weight_decay=float(weight_decay),
                                      initial_accumulator_value=float(initial_accumulator_value), eps=float(eps)))

    def _new_state(self, p):
        return {"step": 0, "sum": np.full_like(p.data, self.initial_accumulator_value)}

    def _update(self, p, g, state):
        state["step"] += 1

        if self.weight_decay != 0:
            g = g + self.weight_decay * p.data
        clr = self.lr / (1 + (state["step"] - 1) * self.lr_decay)
        state["sum"] += g * g
        std = np.sqrt(state["sum"]) + self.eps
        p.data -= clr * (g / std)


def clip_grad_norm_(params, max_norm, norm_type=2.0) -> float:
    """Scale the gradients in place so that their total norm is at most `max_norm`.

    Like torch.nn.utils.clip_grad_norm_: the norm is taken over all gradients as if
    they were one vector (parameters whose grad is None are skipped), and when it is
    larger than `max_norm` every gradient is multiplied by max_norm / (norm + 1e-6).
    `norm_type` is p of the p-norm, or math.inf for the largest absolute value.
    Returns the total norm before clipping, as a float.
    """
    if isinstance(params, Tensor):
        params = [params]
    norm_type = float(norm_type)
    if not (norm_type > 0):
        raise ValueError(f"norm_type must be positive (or inf), got {norm_type}")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0

    if norm_type == math.inf:
        total_norm = max((float(np.max(np.abs(g))) for g in grads if g.size), default=0.0)
    else:
        # Summed in float64 so that float32 gradients cannot overflow when raised to the power.
        total = sum(kernels.sum_abs_power(np.ascontiguousarray(g).reshape(-1), norm_type) for g in grads)
        total_norm = math.sqrt(total) if norm_type == 2.0 else total ** (1.0 / norm_type)

    clip_coef = float(max_norm) / (total_norm + 1e-6)
    if clip_coef < 1:  # only ever scale down
        for g in grads:
            g *= clip_coef  # in place: a Python float keeps the gradient's dtype
    return total_norm
