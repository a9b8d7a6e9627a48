"""The Module base: a tree of named parameters and sub-modules.

Attributes that are parameters (``Tensor`` with ``requires_grad``) or modules
register themselves in assignment order, so ``named_parameters()`` walks the
tree in a fixed order (the order optimizers and checkpoints rely on). Buffers
(``register_buffer``: state that is not trained, such as batch norm's running
statistics) are in ``state_dict`` and checkpoints beside the parameters.
"""
import numpy as np

from ..autograd import Tensor


def parameter(values):
    """A trainable float32 tensor holding ``values`` (initialisation is plain numpy)."""
    return Tensor(np.asarray(values, dtype=np.float32), requires_grad=True)


class Module:
    def __init__(self):
        object.__setattr__(self, "_params", {})
        object.__setattr__(self, "_children", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if isinstance(value, Module):
            self._children[name] = value
        elif isinstance(value, Tensor) and value.requires_grad:
            self._params[name] = value
        object.__setattr__(self, name, value)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} defines no forward")

    def named_parameters(self, prefix=""):
        for name, p in self._params.items():
            yield prefix + name, p
        for name, child in self._children.items():
            yield from child.named_parameters(prefix + name + ".")

    def register_buffer(self, name, values):
        """A float32 state tensor ``name`` that is saved and moved but not trained."""
        tensor = Tensor(np.asarray(values, dtype=np.float32))
        self._buffers[name] = tensor
        object.__setattr__(self, name, tensor)

    def named_buffers(self, prefix=""):
        for name, b in self._buffers.items():
            yield prefix + name, b
        for name, child in self._children.items():
            yield from child.named_buffers(prefix + name + ".")

    def named_state(self):
        """Parameters, then buffers: everything ``state_dict`` holds."""
        yield from self.named_parameters()
        yield from self.named_buffers()

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def num_parameters(self):
        return sum(p.data.size for p in self.parameters())

    def modules(self):
        yield self
        for child in self._children.values():
            yield from child.modules()

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device):
        """Move every parameter's and buffer's data to ``device`` ("cpu" or "cuda") in place
        (gradients dropped; a no-op for those already there): the parameter tensors
        stay the same objects, so optimizers keep pointing at them (build an
        optimizer after the move: its state goes where the data is)."""
        for _, p in self.named_state():
            if p.device != device:
                p.data = p.to(device).data
                p.grad = None
        return self

    def state_dict(self):
        """name -> a host copy of the parameter's (or buffer's) float32 array."""
        return {name: p.to("cpu").data.copy() for name, p in self.named_state()}

    def load_state_dict(self, state):
        params = dict(self.named_state())
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if missing or unexpected:
            raise KeyError(f"state dict does not match {type(self).__name__}: "
                           f"missing {missing}, unexpected {unexpected}")
        for name, p in params.items():
            value = np.asarray(state[name])
            if value.shape != p.data.shape:
                raise ValueError(f"{name}: shape {value.shape} in the state dict, "
                                 f"{p.data.shape} in the model")
            if p.device == "cpu":
                p.data[...] = value
            else:
                p.data.copy_to_device(np.ascontiguousarray(value, dtype=np.float32))

    def extra_repr(self):
        return ""

    def __repr__(self):
        own = sum(p.data.size for p in self._params.values())
        head = f"{type(self).__name__}({self.extra_repr()})"
        if not self._children:
            return head + (f"  [{own:,} params]" if own else "")
        lines = [f"{head}  [{self.num_parameters():,} params]"]
        lines += [f"  ({name}): parameter {p.data.shape}" for name, p in self._params.items()]
        for name, child in self._children.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        return "\n".join(lines)


class ModuleList(Module):
    """Sub-modules kept in a list, registered under their index."""

    def __init__(self, modules):
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def __iter__(self):
        return iter(self._children.values())

    def __len__(self):
        return len(self._children)

    def __getitem__(self, i):
        return self._children[str(i)]
