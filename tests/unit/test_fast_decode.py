"""The fast CPU decoding path (tactful.backend.fast): packed weights, the growing KV cache,
float32 decode attention, and the lean decoder against the stock transformers forward."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tactful.backend import fast  # noqa: E402

pytestmark = pytest.mark.skipif(not fast.kernels_available(), reason="no packed-weight kernels")


def test_weights_on_a_4bit_grid_pack_as_int4_and_multiply_like_dense() -> None:
    g = torch.Generator().manual_seed(0)
    n, k = 96, 128
    q = torch.randint(0, 16, (n, k // fast.GROUP, fast.GROUP), generator=g).float()
    scale = torch.rand(n, k // fast.GROUP, 1, generator=g) * 0.02 + 0.001
    low = -torch.rand(n, k // fast.GROUP, 1, generator=g) * 0.1
    q[..., 0], q[..., 1] = 0, 15  # every group spans its grid, as a 4-bit file's do
    w = (q * scale + low).reshape(n, k).to(torch.bfloat16)
    packed = fast.PackedWeight(w)
    assert packed.mode == "int4"
    assert packed.rel_error < fast.INT4_MAX_REL_ERROR
    x = torch.randn(3, k, generator=g).to(torch.bfloat16)
    ref = x.float() @ w.float().t()
    got = packed.mm(x).float()
    assert (got - ref).abs().max() <= 0.02 * ref.abs().max()
    # float32 activations (a model run in float32) come back in float32, rounded like bf16 ones.
    got32 = packed.mm(x.float())
    assert got32.dtype == torch.float32
    assert (got32 - ref).abs().max() <= 0.02 * ref.abs().max()


def test_gaussian_weights_fall_back_to_int8_rows_with_a_small_error() -> None:
    g = torch.Generator().manual_seed(1)
    w = torch.randn(64, 96, generator=g).to(torch.bfloat16)
    packed = fast.PackedWeight(w)
    assert packed.mode == "int8"  # 4-bit groups would lose too much here
    assert packed.rel_error < 0.005
    x = torch.randn(2, 96, generator=g).to(torch.bfloat16)
    ref = x.float() @ w.float().t()
    assert (packed.mm(x).float() - ref).abs().max() <= 0.02 * ref.abs().max()
    # The output head is never packed as 4-bit.
    assert fast.PackedWeight(w, allow_int4=False).mode == "int8"


def test_growing_layer_behaves_like_a_dynamic_layer_across_growth_and_crops() -> None:
    from transformers.cache_utils import DynamicLayer

    g = torch.Generator().manual_seed(2)
    grow, ref = fast.GrowingLayer(), DynamicLayer()
    for n, crop in [(200, 0), (100, -50), (1, 0), (300, -7), (1, 0), (1, -3)]:
        k = torch.randn(1, 3, n, 8, generator=g)
        v = torch.randn(1, 3, n, 8, generator=g)
        gk, gv = grow.update(k, v)
        rk, rv = ref.update(k, v)
        assert torch.equal(gk, rk) and torch.equal(gv, rv)
        grow.crop(crop)
        ref.crop(crop)
        assert grow.get_seq_length() == ref.get_seq_length()
    assert grow.get_seq_length() == 200 + 50 + 1 + 293 + 1 - 2


def test_fork_copies_the_prefix_and_leaves_the_source_alone() -> None:
    from transformers import LlamaConfig

    config = LlamaConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2
    )
    cache = fast.new_cache(config)
    assert all(isinstance(layer, fast.GrowingLayer) for layer in cache.layers)
    g = torch.Generator().manual_seed(3)
    for layer in cache.layers:
        layer.update(torch.randn(1, 2, 40, 8, generator=g), torch.randn(1, 2, 40, 8, generator=g))
    fork = fast.fork_cache(cache, 25, config)
    assert fork.get_seq_length() == 25
    for src, dst in zip(cache.layers, fork.layers, strict=True):
        assert torch.equal(dst.keys, src.keys[..., :25, :])
        dst.update(torch.zeros(1, 2, 5, 8), torch.zeros(1, 2, 5, 8))
        assert src.get_seq_length() == 40 and src.keys[..., 25:30, :].abs().sum() > 0


@pytest.mark.parametrize("masked", [False, True])
def test_decode_attention_matches_sdpa(masked: bool) -> None:
    g = torch.Generator().manual_seed(4)

    class Attn(torch.nn.Module):
        num_key_value_groups = 3
        is_causal = True

    q = torch.randn(1, 9, 1, 16, generator=g).to(torch.bfloat16)
    k = torch.randn(1, 3, 50, 16, generator=g)
    v = torch.randn(1, 3, 50, 16, generator=g)
    mask = None
    if masked:
        mask = torch.ones(1, 1, 1, 50, dtype=torch.bool)
        mask[..., :10] = False
    got, _ = fast.decode_attention(Attn(), q, k, v, mask, scaling=0.25)
    kk = k.repeat_interleave(3, dim=1)
    vv = v.repeat_interleave(3, dim=1)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.float(), kk, vv, attn_mask=mask, scale=0.25
    ).transpose(1, 2)
    assert got.dtype == torch.bfloat16 and got.shape == (1, 1, 9, 16)
    assert (got.float() - ref).abs().max() < 0.02


@pytest.mark.model
def test_decoder_reproduces_the_stock_forward_on_the_embedded_model() -> None:
    from tactful import paths
    from tactful.backend.hf import TransformersBackend

    backend = TransformersBackend.load(None, cache_dir=paths.cache_dir())
    decoder = backend.fast
    # bfloat16 where the CPU has fast bf16 matmuls, else float32: both take the fast path.
    assert decoder is not None, f"the embedded model in {backend.model.dtype} on a CPU is fast"
    counts = decoder.counts()
    assert counts["int4"] == 4 * 30 and counts["int8"] == 1  # exact 4-bit body, 8-bit head
    text = (
        "import os\n\n\ndef read_config(path):\n    with open(path) as f:\n"
        "        lines = [line.strip() for line in f]\n    return dict(\n"
    )
    ids = backend.encode(text)
    with torch.inference_mode():
        stock, mine = backend._new_cache(), backend._new_cache()
        backend.model(input_ids=torch.tensor([ids[:-6]]), cache=stock, use_cache=True)
        backend.model(input_ids=torch.tensor([ids[:-6]]), cache=mine, use_cache=True)
        for part in (ids[-6:-5], ids[-5:-1], ids[-1:]):
            ref = (
                backend.model(
                    input_ids=torch.tensor([part]), cache=stock, use_cache=True, logits_to_keep=1
                )
                .logits[0, -1]
                .float()
            )
            got = decoder.forward(part, mine)
            assert stock.get_seq_length() == mine.get_seq_length()
            assert int(got.argmax()) == int(ref.argmax())
            top = torch.topk(ref, 20).indices
            assert (got[top] - ref[top]).abs().max() < 1.0, "logits drift beyond bf16 noise"


@pytest.mark.model
def test_bench_decode_prints_both_paths(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from tactful.tools.bench import decode

    assert decode.main(["--contexts", "40,80", "--steps", "3", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    for name in ("fast", "stock"):
        for ctx in ("40", "80"):
            row = runs[name][ctx]
            assert 0 < row["step_p50_ms"] <= row["step_p95_ms"]


def _tiny(model_type: str, dtype: torch.dtype = torch.bfloat16, **extra: object) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        model_type,
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        **extra,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=dtype).eval()


@pytest.mark.parametrize(
    ("model_type", "dtype", "extra"),
    [
        ("llama", torch.bfloat16, {}),
        ("llama", torch.bfloat16, {"attention_bias": True}),
        ("qwen2", torch.bfloat16, {}),
        ("llama", torch.float32, {}),
        ("qwen2", torch.float32, {}),
    ],
)
def test_decoder_matches_stock_forward_on_other_architectures(
    model_type: str, dtype: torch.dtype, extra: dict[str, object]
) -> None:
    """Random weights (not on a 4-bit grid, so 8-bit rows) and biases where the family has
    them, in bfloat16 and in float32 (CPUs without fast bfloat16 run models in float32)."""
    model = _tiny(model_type, dtype, **extra)
    decoder = fast.enable(model)
    assert decoder is not None
    assert decoder.counts()["int4"] == 0  # random weights do not re-pack exactly as 4-bit
    ids = list(range(5, 45))
    with torch.inference_mode():
        stock, mine = fast.new_cache(model.config), fast.new_cache(model.config)
        model(input_ids=torch.tensor([ids[:30]]), cache=stock, use_cache=True)
        model(input_ids=torch.tensor([ids[:30]]), cache=mine, use_cache=True)
        for part in (ids[30:31], ids[31:35], ids[35:36]):
            ref = (
                model(input_ids=torch.tensor([part]), cache=stock, use_cache=True, logits_to_keep=1)
                .logits[0, -1]
                .float()
            )
            got = decoder.forward(part, mine)
            scale = float(ref.abs().max())
            assert float((got - ref).abs().max()) <= 0.05 * scale + 0.05


def test_unsupported_architectures_keep_the_stock_path() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=300, n_embd=64, n_layer=2, n_head=4, n_positions=128)
    model = GPT2LMHeadModel(config).to(torch.bfloat16).eval()
    assert fast.enable(model) is None
    assert fast.enable(_tiny("llama", torch.float16)) is None  # float16: not the fast path


@pytest.mark.model
def test_a_failing_decoder_falls_back_to_the_stock_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault in the fast decoder half-way through its layers: the request still gets the
    stock path's answer, the cache is rolled back, and the backend stays on the stock path."""
    from tactful import paths
    from tactful.backend.hf import TransformersBackend
    from tactful.backend.types import GenerateRequest

    backend = TransformersBackend.load(None, cache_dir=paths.cache_dir())
    if backend.fast is None:
        pytest.skip("no fast path on this CPU")
    prompt = "def mean(xs):\n    return sum(xs) / "
    stock = TransformersBackend.load(None, cache_dir=paths.cache_dir(), fast_decode=False)
    expected = stock.generate(GenerateRequest(prefix=prompt, max_new_tokens=6)).text

    real_update = fast.GrowingLayer.update
    calls = {"n": 0}

    def flaky(
        self: fast.GrowingLayer, k: torch.Tensor, v: torch.Tensor, *a: object, **kw: object
    ) -> object:
        if k.shape[-2] == 1 and self.get_seq_length() > 0:
            calls["n"] += 1
            if calls["n"] == 5:  # the fifth layer of the first decoding step
                raise RuntimeError("injected kernel failure")
        return real_update(self, k, v, *a, **kw)

    monkeypatch.setattr(fast.GrowingLayer, "update", flaky)
    out = backend.generate(GenerateRequest(prefix=prompt, max_new_tokens=6))
    assert backend.fast is None
    assert out.text == expected
