"""bf16 matrix products for CPU phase 1: the precision switch, tiled rows, exact attention products."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from setfit_core import EngineOptions, SetFitModel, TrainingArguments
from setfit_core.engine.cpu import matmul as cm
from setfit_core.engine.cpu.attention import own_attention
from setfit_core.engine.cpu.dropout import fast_dropouts
from setfit_core.engine.cpu.gelu import native_gelu
from setfit_core.tokenization import tokenize
from setfit_core.training.embedding_phase import train_body
from tests.conftest import onednn_log

needs_amx = pytest.mark.skipif(
    not cm.amx_available(),
    reason="needs a CPU with AMX tiles (Intel Xeon Sapphire Rapids or later) and torch's oneDNN fp32_precision",
)
# Which layers and settings are in place can be checked on any CPU: bf16_matmul="always" applies them without AMX.
needs_bf16_setting = pytest.mark.skipif(not cm.bf16_supported(), reason="this torch has no oneDNN fp32_precision")


def _precision() -> str | None:
    return getattr(getattr(torch.backends.mkldnn, "matmul", None), "fp32_precision", None)


def _linears(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if type(m) is nn.Linear]


def test_tiled_linear_is_the_same_layer():
    torch.manual_seed(0)
    linear = nn.Linear(24, 40)
    tiled = cm.TiledLinear(linear)
    assert tiled.weight is linear.weight and tiled.bias is linear.bias
    # Up to one tile, then several tiles (the last one overlapping the one before): cm.TILE_ROWS is 256.
    for shape in [(1, 24), (3, 7, 24), (64, 24), (2, 65, 24), (256, 24), (3, 150, 24), (700, 24)]:
        x = torch.randn(shape, requires_grad=True)
        expected = linear(x)
        (expected * torch.arange(expected.numel()).view_as(expected)).sum().backward()
        grads = x.grad.clone(), linear.weight.grad.clone(), linear.bias.grad.clone()
        x.grad = linear.weight.grad = linear.bias.grad = None
        out = tiled(x)
        (out * torch.arange(out.numel()).view_as(out)).sum().backward()
        assert out.shape == expected.shape
        torch.testing.assert_close(out, expected)
        for got, want in zip((x.grad, linear.weight.grad, linear.bias.grad), grads, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)  # tiles sum weight grads in another order
        linear.weight.grad = linear.bias.grad = None


class _ProductRows(TorchFunctionMode):
    """The row counts of the matrix products run inside (for a weight gradient, the rows it sums over)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: set[int] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.mm, nn.functional.linear):
            self.rows.add(args[0].shape[0])
        elif func is torch.addmm:
            self.rows.add(args[1].shape[0])
        elif func is torch.Tensor.addmm_:
            self.rows.add(args[1].shape[1])
        elif func in (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__):
            raise AssertionError(f"a product not counted here: {func}")
        return func(*args, **(kwargs or {}))


def test_tiled_linear_multiplies_few_shapes():
    tiled = cm.TiledLinear(nn.Linear(8, 8))
    with _ProductRows() as seen:
        for rows in range(1, 1100):
            tiled(torch.randn(rows, 8, requires_grad=True)).sum().backward()
    assert seen.rows == {64, 128, 192, 256} == set(cm.row_counts())  # 1,099 row counts, 4 shapes for oneDNN


def test_tiled_linear_keeps_its_input_itself():
    """No padded copy of more than 256 rows is kept for backward: Q, K and V reading one input keep that one
    tensor (up to 256 rows, a padded copy each: one product is cheaper there than two tiles)."""
    layers = [cm.TiledLinear(nn.Linear(24, 24)) for _ in range(3)]
    for rows in (64, 300, 1035):
        x = torch.randn(rows, 24, requires_grad=True)
        h = x * 2
        kept: list[torch.Tensor] = []

        def keep(t: torch.Tensor, kept: list[torch.Tensor] = kept) -> torch.Tensor:
            kept.append(t)
            return t

        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            sum(layer(h) for layer in layers).sum().backward()
        inputs = [t for t in kept if t.shape != (24, 24)]
        assert len(inputs) == 3 and all(t.untyped_storage().data_ptr() == h.untyped_storage().data_ptr()
                                        for t in inputs)


def _onednn_kernels_created(run) -> list[str]:
    """oneDNN's log lines of kernels compiled (primitive cache misses) while `run()` runs."""
    log = onednn_log(run, torch.backends.mkldnn.VERBOSE_ON_CREATION)
    return [line for line in log.splitlines() if "create:cache_miss" in line]


@needs_amx
def test_kernels_are_compiled_on_entry_not_during_training(body):
    """Compiled mid-step, a kernel's allocations would pin freed activation memory in the heap (gelu.py)."""

    def steps():
        for texts, words in ((4, 3), (4, 9), (7, 17), (9, 40), (20, 60)):  # 20 to 1,240 rows: padded and tiled
            features = tokenize(body, [" ".join(["word"] * words)] * texts, None)
            body(features)["sentence_embedding"].sum().backward()

    with fast_dropouts(body), own_attention(body) as own, native_gelu(body):
        assert own
        with cm.bf16_matmuls(body):
            pass  # compiles, as on entry to phase 1
        with cm.bf16_matmuls(body):
            created = _onednn_kernels_created(steps)
        # The control: the same steps with bf16 products but the plain layers compile kernels as they go.
        with cm._precision("bf16"):
            control = _onednn_kernels_created(steps)
    assert created == []
    assert control, "the check saw no kernel being compiled"


@needs_amx
def test_inside_products_are_bf16_but_exact_matmul_stays_fp32():
    torch.manual_seed(0)
    a, b = torch.randn(256, 384, requires_grad=True), torch.randn(384, 384, requires_grad=True)
    before = _precision()
    exact = a @ b
    exact.sum().backward()
    exact_grads = a.grad.clone(), b.grad.clone()
    a.grad = b.grad = None
    with cm.bf16_matmuls(nn.Sequential()) as on:
        assert on
        rounded = (a @ b).detach()
        kept = cm.exact_matmul(a, b)
        kept.sum().backward()
    assert _precision() == before
    assert not torch.equal(rounded, exact.detach())  # the setting bites: inputs rounded to bf16...
    torch.testing.assert_close(rounded, exact.detach(), rtol=0.05, atol=0.5)  # ...accumulated in fp32
    assert torch.equal(kept, exact)
    assert torch.equal(a.grad, exact_grads[0]) and torch.equal(b.grad, exact_grads[1])


@pytest.fixture
def body(tiny_model_dir):
    return SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body


@needs_bf16_setting
def test_swap_inside_and_restore_after_also_on_error(body):
    originals, before = _linears(body), _precision()
    keys = {k: v.data_ptr() for k, v in body.state_dict().items()}
    assert originals
    with pytest.raises(RuntimeError, match="boom"), cm.bf16_matmuls(body):
        assert not _linears(body)
        assert sum(isinstance(m, cm.TiledLinear) for m in body.modules()) == len(originals)
        assert _precision() == "bf16"
        # The same parameters under the same names: optimizers and saved bodies see no difference.
        assert {k: v.data_ptr() for k, v in body.state_dict().items()} == keys
        raise RuntimeError("boom")
    assert _linears(body) == originals  # the very same modules
    assert _precision() == before


def test_disabled_nothing_changes(body):
    originals, before = _linears(body), _precision()
    with cm.bf16_matmuls(body, enabled=False) as on:
        assert not on and _linears(body) == originals and _precision() == before


def test_auto_means_only_where_the_cpu_has_amx(tiny_model_dir, tiny_data):
    _, _, result = _train_recording(tiny_model_dir, tiny_data)
    assert result.engine.bf16_matmul == cm.amx_available()
    _, _, result = _train_recording(tiny_model_dir, tiny_data, engine=EngineOptions(bf16_matmul="never"))
    assert not result.engine.bf16_matmul


def _train_recording(tiny_model_dir, tiny_data, engine: EngineOptions | None = None, **overrides):
    """Train a few steps; record the matmul precision and layer types the body's forward passes saw."""
    body = SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body
    seen = set()
    body[0].register_forward_pre_hook(
        lambda module, inputs: seen.add((_precision(), any(isinstance(m, cm.TiledLinear) for m in body.modules())))
    )
    args = TrainingArguments(max_steps=4, seed=5, batch_size=8, show_progress_bar=False, **overrides)
    result = train_body(body, tiny_data["text"], np.asarray(tiny_data["label"]), args, engine=engine)
    return seen, body, result


ALWAYS = EngineOptions(bf16_matmul="always")


@needs_bf16_setting
def test_cpu_phase1_trains_with_bf16_products_then_restores(tiny_model_dir, tiny_data):
    before = _precision()
    seen, body, result = _train_recording(tiny_model_dir, tiny_data, engine=ALWAYS)
    assert seen == {("bf16", True)}
    assert _precision() == before and not any(isinstance(m, cm.TiledLinear) for m in body.modules())
    assert np.isfinite(result.train_loss) and result.engine.bf16_matmul


@needs_bf16_setting
def test_not_under_autocast_nor_without_the_cpu_attention(tiny_model_dir, tiny_data):
    seen, _, result = _train_recording(tiny_model_dir, tiny_data, engine=ALWAYS, use_amp=True)
    assert seen == {(_precision(), False)} and not result.engine.bf16_matmul
    # Without phase 1's own attention, attention's per-head products would be bf16 too.
    seen, _, result = _train_recording(tiny_model_dir, tiny_data, engine=ALWAYS.replace(fast_dropout=False))
    assert seen == {(_precision(), False)} and not result.engine.bf16_matmul
