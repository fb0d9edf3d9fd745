"""setfit_core/engine/cpu/gelu.py: exact GELU through PyTorch's kernel in CPU phase 1, not oneDNN's per-shape ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from transformers.activations import GELUActivation

from setfit_core import EngineOptions, SetFitModel, TrainingArguments
from setfit_core.engine.cpu import gelu as cg
from setfit_core.training.embedding_phase import train_body
from tests.conftest import onednn_log


def _gelus(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (GELUActivation, nn.GELU))]


def test_same_values_and_gradients_as_torch_gelu():
    torch.manual_seed(0)
    x = torch.randn(3, 37, 64, dtype=torch.float32) * 3
    weights = torch.randn_like(x)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = nn.functional.gelu(a)
    (expected * weights).sum().backward()
    got = cg.gelu(b)
    (got * weights).sum().backward()
    # Two vectorised erf approximations: they agree to float32 rounding, and both match float64's GELU.
    exact = nn.functional.gelu(x.double()).float()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=3e-6)
    torch.testing.assert_close(got, exact, rtol=1e-5, atol=3e-6)
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=3e-6)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_runs_no_onednn_kernel_and_leaves_onednn_switched_on():
    x = torch.randn(67, 1536, requires_grad=True)
    assert "eltwise" in onednn_log(lambda: nn.functional.gelu(x).sum().backward())  # torch's own GELU does
    assert "eltwise" not in onednn_log(lambda: cg.gelu(x).sum().backward())
    assert torch._C._get_mkldnn_enabled()
    with pytest.raises(RuntimeError):
        cg.gelu(torch.randn(3, dtype=torch.complex64))  # fails inside the switch...
    assert torch._C._get_mkldnn_enabled()  # ...which is back on all the same


@pytest.fixture
def body(tiny_model_dir):
    return SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body


def test_swaps_the_exact_gelus_and_restores_them_also_on_error(body):
    originals = _gelus(body)
    assert originals  # BERT's intermediate activation
    keys = {k: v.data_ptr() for k, v in body.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"), cg.native_gelu(body) as swapped:
        assert swapped == len(originals) and not _gelus(body)
        assert {k: v.data_ptr() for k, v in body.state_dict().items()} == keys
        raise RuntimeError("boom")
    assert _gelus(body) == originals  # the very same modules


def test_leaves_approximate_gelus_alone():
    model = nn.Sequential(nn.GELU(approximate="tanh"), nn.GELU(), GELUActivation())
    with cg.native_gelu(model) as swapped:
        assert swapped == 2
        assert isinstance(model[0], nn.GELU) and model[0].approximate == "tanh"


def test_cpu_phase1_trains_with_the_native_gelu(tiny_model_dir, tiny_data):
    body = SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body
    seen = set()
    body[0].register_forward_pre_hook(
        lambda module, inputs: seen.add(any(isinstance(m, cg.NativeGELU) for m in body.modules())))
    args = TrainingArguments(max_steps=3, seed=5, batch_size=8, show_progress_bar=False)
    result = train_body(body, tiny_data["text"], np.asarray(tiny_data["label"]), args)
    assert seen == {True} and np.isfinite(result.train_loss) and result.engine.native_gelu
    assert _gelus(body) and not any(isinstance(m, cg.NativeGELU) for m in body.modules())
    seen.clear()
    result = train_body(body, tiny_data["text"], np.asarray(tiny_data["label"]), args,
                        engine=EngineOptions(native_gelu=False))
    assert seen == {False} and not result.engine.native_gelu
