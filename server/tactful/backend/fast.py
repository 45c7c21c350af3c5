"""A faster CPU decoding path for transformers models (setting ``fastDecode``).

One decoding step of a small model on a CPU is bound by memory traffic, not arithmetic: every
step reads all the weights once, and the stock path also copies the whole KV cache (``torch.cat``)
and runs bfloat16 attention kernels that are slow for a single query. The parts, each measured
in docs/benchmarks.md:

* ``PackedWeight``: weights packed as 4-bit groups of 32 (``_weight_int4pack_mm_for_cpu``) where
  that reproduces them (the embedded model comes from a 4-bit GGUF, so its weights already lie
  on such a grid), else as 8-bit rows (``_weight_int8pack_mm``).
* ``GrowingLayer``: a KV cache layer that writes into a preallocated float32 buffer grown in
  steps, instead of concatenating the whole cache at every token.
* ``Decoder``: a lean forward pass for generated tokens of Llama/Qwen2-style models on the packed
  weights, with fused products and float32 attention.
* ``decode_attention``: the attention the stock forward uses with this cache (float32; SDPA for
  prompts). Prompt prefill keeps the stock forward and the dense bfloat16 weights, which are
  faster there and keep warm and cold runs identical.

Imported only by ``hf.TransformersBackend`` once torch and transformers are loaded.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.models.llama.modeling_llama import rotate_half

log = logging.getLogger(__name__)

#: The attention implementation name registered with transformers.
ATTN_NAME = "tactful_decode"
#: Group size of the 4-bit packing.
GROUP = 32
#: Largest relative error (max abs error / max abs weight) for a layer to be packed as 4-bit;
#: weights that came from a 4-bit file re-pack with bfloat16 rounding error only (~0.3 %).
INT4_MAX_REL_ERROR = 0.01
#: The KV buffer grows in steps of this many tokens.
CACHE_STEP = 256


def kernels_available() -> bool:
    """True where this torch build has the CPU packed-weight kernels."""
    ops = torch.ops.aten
    return all(
        hasattr(ops, name)
        for name in (
            "_weight_int4pack_mm_for_cpu",
            "_convert_weight_to_int4pack_for_cpu",
            "_weight_int8pack_mm",
        )
    )


class PackedWeight:
    """A weight matrix packed for multiplying a few rows: 4-bit groups where exact, else 8-bit rows."""

    def __init__(self, weight: torch.Tensor, allow_int4: bool = True) -> None:
        w = weight.detach().float()
        n, k = w.shape
        self.out_features = n
        self.mode = "int8"
        self.rel_error = 1.0
        scale_max = float(w.abs().max()) or 1.0
        if allow_int4 and k % GROUP == 0:
            g = w.reshape(n, k // GROUP, GROUP)
            lo = g.amin(-1, keepdim=True)
            hi = g.amax(-1, keepdim=True)
            s = ((hi - lo) / 15).clamp_min(1e-12)
            q = torch.round((g - lo) / s).clamp(0, 15)
            err = float(((q * s + lo).reshape(n, k) - w).abs().max()) / scale_max
            if err <= INT4_MAX_REL_ERROR:
                self.mode = "int4"
                self.rel_error = err
                self.int4 = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
                    q.reshape(n, k).to(torch.int32), 1
                )
                # The kernel computes (q - 8) * scale + zero.
                zero = lo + 8 * s
                self.scales_zeros = (
                    torch.stack([s.squeeze(-1).t(), zero.squeeze(-1).t()], dim=-1)
                    .to(torch.bfloat16)
                    .contiguous()
                )
        if self.mode == "int8":
            s8 = (w.abs().amax(dim=1) / 127).clamp_min(1e-12)
            q8 = torch.round(w / s8[:, None]).clamp(-127, 127)
            self.rel_error = float((q8 * s8[:, None] - w).abs().max()) / scale_max
            self.int8 = q8.to(torch.int8).contiguous()
            self.scales8 = s8.to(torch.bfloat16)

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W.T`` for a 2-D ``x`` of a few rows, in ``x``'s dtype.

        The kernels take bfloat16 activations: a float32 ``x`` (a model run in float32 on a CPU
        without fast bfloat16) is rounded to bfloat16 for the product. With float32 activations
        the same kernels are about 10x slower on an AVX2-only CPU (docs/benchmarks.md)."""
        xb = x if x.dtype == torch.bfloat16 else x.to(torch.bfloat16)
        if self.mode == "int4":
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(
                xb, self.int4, GROUP, self.scales_zeros
            )
        else:
            out = torch.ops.aten._weight_int8pack_mm(xb, self.int8, self.scales8)
        return out if out.dtype == x.dtype else out.to(x.dtype)


class GrowingLayer(DynamicLayer):
    """A dynamic KV cache layer backed by a float32 buffer that grows in ``CACHE_STEP`` steps.

    ``keys``/``values`` are views of the first ``length`` positions, so crop is free and a
    decoding step writes one position instead of copying the whole cache."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._length = 0
        self._kbuf: torch.Tensor | None = None
        self._vbuf: torch.Tensor | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        need = self._length + n
        if self._kbuf is None or self._vbuf is None or need > self._kbuf.shape[-2]:
            cap = (need // CACHE_STEP + 1) * CACHE_STEP
            kbuf = key_states.new_empty(
                (*key_states.shape[:-2], cap, key_states.shape[-1]), dtype=torch.float32
            )
            vbuf = value_states.new_empty(
                (*value_states.shape[:-2], cap, value_states.shape[-1]), dtype=torch.float32
            )
            if self._length and self._kbuf is not None and self._vbuf is not None:
                kbuf[..., : self._length, :] = self._kbuf[..., : self._length, :]
                vbuf[..., : self._length, :] = self._vbuf[..., : self._length, :]
            self._kbuf, self._vbuf = kbuf, vbuf
        self._kbuf[..., self._length : need, :] = key_states
        self._vbuf[..., self._length : need, :] = value_states
        self._length = need
        self.keys = self._kbuf[..., :need, :]
        self.values = self._vbuf[..., :need, :]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._length if self.is_initialized else 0

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        if tokens_to_remove == 0 or not self.is_initialized or self._kbuf is None:
            return
        assert self._vbuf is not None
        self._length = max(0, self._length + tokens_to_remove)
        self.keys = self._kbuf[..., : self._length, :]
        self.values = self._vbuf[..., : self._length, :]

    def reset(self) -> None:
        self._length = 0
        self._kbuf = self._vbuf = None
        super().reset()


def new_cache(config: Any) -> Any:
    """The backend's cache (:func:`tactful.backend.model.full_cache`: every position kept)
    with ``GrowingLayer``s for its plain layers."""
    from tactful.backend.model import full_cache

    cache = full_cache(config)
    cache.layers = [
        GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers
    ]
    return cache


def fork_cache(cache: Any, length: int, config: Any) -> Any:
    """A new cache holding a copy of the first ``length`` positions of ``cache``."""
    out = new_cache(config)
    for src, dst in zip(cache.layers, out.layers, strict=True):
        if not src.is_initialized or src.get_seq_length() == 0 or length <= 0:
            continue
        dst.update(src.keys[..., :length, :], src.values[..., :length, :])
    return out


def decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention in float32: one query token without extras as two grouped matmuls; prompt
    tokens by SDPA over the key/value heads as they are (no copy per query head); else the
    stock SDPA path."""
    dtype = query.dtype
    b, heads, q_len, dim = query.shape
    special = any(kwargs.get(k) is not None for k in ("softcap", "sinks", "position_bias"))
    kv_heads = key.shape[1]
    plain = not special and not dropout and heads % kv_heads == 0
    if q_len != 1 and plain and (attention_mask is not None or key.shape[-2] == q_len):
        # Prompt tokens (the scoring pass): SDPA on the key/value heads as they are. With a mask,
        # the stock path copies every key/value head once per query head first (``repeat_kv``).
        out = torch.nn.functional.scaled_dot_product_attention(
            query.to(key.dtype),
            key,
            value.to(key.dtype),
            attn_mask=attention_mask,
            scale=scaling,
            is_causal=attention_mask is None,
            enable_gqa=heads != kv_heads,
        )
        return out.transpose(1, 2).contiguous().to(dtype), None
    if q_len != 1 or special or heads % kv_heads or dropout:
        out, _ = sdpa_attention_forward(
            module,
            query.to(key.dtype),
            key,
            value.to(key.dtype),
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            **kwargs,
        )
        return out.to(dtype), None
    groups = heads // kv_heads
    q = query.to(key.dtype).reshape(b, kv_heads, groups, dim)
    scores = torch.matmul(q, key.transpose(-1, -2))
    scores.mul_(scaling if scaling is not None else dim**-0.5)
    if attention_mask is not None:
        mask = attention_mask[:, :, -1:, : key.shape[-2]]
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.to(scores.dtype)
    probs = torch.softmax(scores, dim=-1)
    out = torch.matmul(probs, value.to(probs.dtype))  # b, kv_heads, groups, dim
    return out.reshape(b, heads, 1, dim).transpose(1, 2).contiguous().to(dtype), None


AttentionInterface.register(ATTN_NAME, decode_attention)
AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)


#: Architectures whose decoder layers ``Decoder`` reproduces (pre-norm, RMSNorm, rotary, SwiGLU).
DECODER_MODEL_TYPES = ("llama", "qwen2")


class Decoder:
    """A lean forward pass for a few new tokens of a Llama-style model, on packed weights.

    The stock module tree costs about as much Python overhead per token as the matrix products
    themselves on a 135M model; this runs the same arithmetic as transformers' Llama/Qwen2
    layers (residual stream in the model's dtype, float32 norms and attention, bfloat16
    activations into the packed products) with fused QKV and gate/up products. It reads and writes the same ``GrowingLayer`` cache as the stock forward, which
    still runs prompt prefill with the dense weights."""

    def __init__(self, model: Any) -> None:
        cfg = model.config
        inner = model.model
        self.embed = inner.embed_tokens.weight
        self.rotary = inner.rotary_emb
        self.final_norm = (inner.norm.weight, float(inner.norm.variance_epsilon))
        self.head = PackedWeight(model.lm_head.weight, allow_int4=False)
        self.heads = int(cfg.num_attention_heads)
        self.kv_heads = int(cfg.num_key_value_heads)
        self.head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads)
        self.scaling = self.head_dim**-0.5
        self.layers: list[dict[str, Any]] = []
        for layer in inner.layers:
            att, mlp = layer.self_attn, layer.mlp
            qkv_w = torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight])
            biases = [att.q_proj.bias, att.k_proj.bias, att.v_proj.bias]
            qkv_b = None
            if any(b is not None for b in biases):
                qkv_b = torch.cat(
                    [
                        b if b is not None else torch.zeros(p.weight.shape[0], dtype=qkv_w.dtype)
                        for b, p in zip(biases, (att.q_proj, att.k_proj, att.v_proj), strict=True)
                    ]
                ).detach()
            self.layers.append(
                {
                    "norm1": (
                        layer.input_layernorm.weight,
                        float(layer.input_layernorm.variance_epsilon),
                    ),
                    "norm2": (
                        layer.post_attention_layernorm.weight,
                        float(layer.post_attention_layernorm.variance_epsilon),
                    ),
                    "qkv": PackedWeight(qkv_w),
                    "qkv_bias": qkv_b,
                    "o": PackedWeight(att.o_proj.weight),
                    "o_bias": None if att.o_proj.bias is None else att.o_proj.bias.detach(),
                    "gate_up": PackedWeight(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])),
                    "down": PackedWeight(mlp.down_proj.weight),
                }
            )
        self.q_size = self.heads * self.head_dim
        self.kv_size = self.kv_heads * self.head_dim
        self.inter = int(cfg.intermediate_size)

    @staticmethod
    def supports(model: Any) -> bool:
        cfg = model.config
        inner = getattr(model, "model", None)
        return (
            getattr(cfg, "model_type", None) in DECODER_MODEL_TYPES
            and getattr(cfg, "hidden_act", None) == "silu"
            and not getattr(cfg, "mlp_bias", False)
            and int(getattr(cfg, "pretraining_tp", 1) or 1) == 1
            and not getattr(cfg, "use_sliding_window", False)
            and inner is not None
            and all(hasattr(inner, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb"))
            and hasattr(model, "lm_head")
            and model.lm_head.bias is None
        )

    def counts(self) -> dict[str, int]:
        out = {"int4": 0, "int8": 0}
        for layer in self.layers:
            for key in ("qkv", "o", "gate_up", "down"):
                out[layer[key].mode] += 1
        out[self.head.mode] += 1
        return out

    @staticmethod
    def _norm(x: torch.Tensor, weight_eps: tuple[torch.Tensor, float]) -> torch.Tensor:
        weight, eps = weight_eps
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        return weight * h.to(x.dtype)

    def _qkv(
        self, layer: dict[str, Any], h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A layer's rotated queries, keys and values for the m tokens of ``h``: (m, heads, d)
        each; ``cos``/``sin`` are (m, 1, d)."""
        m = h.shape[0]
        x = self._norm(h, layer["norm1"])
        qkv = layer["qkv"].mm(x)
        if layer["qkv_bias"] is not None:
            qkv = qkv + layer["qkv_bias"]
        q = qkv[:, : self.q_size].reshape(m, self.heads, self.head_dim)
        k = qkv[:, self.q_size : self.q_size + self.kv_size].reshape(
            m, self.kv_heads, self.head_dim
        )
        v = qkv[:, self.q_size + self.kv_size :].reshape(m, self.kv_heads, self.head_dim)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        return q, k, v

    def _after_attention(
        self, layer: dict[str, Any], h: torch.Tensor, att: torch.Tensor
    ) -> torch.Tensor:
        """The residual stream after a layer's attention output ``att`` (m, hidden) and its MLP."""
        o = layer["o"].mm(att.contiguous())
        if layer["o_bias"] is not None:
            o = o + layer["o_bias"]
        h = h + o
        x = self._norm(h, layer["norm2"])
        gu = layer["gate_up"].mm(x)
        act = torch.nn.functional.silu(gu[:, : self.inter]) * gu[:, self.inter :]
        return h + layer["down"].mm(act.contiguous())

    def forward(self, ids: list[int], cache: Any) -> torch.Tensor:
        """Run ``ids`` (a few tokens) after what ``cache`` holds; float32 logits of the last one."""
        m = len(ids)
        start = cache.get_seq_length()
        h = self.embed[torch.tensor(ids)]  # m, hidden (the model's dtype)
        pos = torch.arange(start, start + m).unsqueeze(0)
        cos, sin = self.rotary(h.unsqueeze(0), pos)  # 1, m, head_dim
        cos = cos[0].unsqueeze(1)  # m, 1, d (broadcast over heads)
        sin = sin[0].unsqueeze(1)
        hd, nh, nkv = self.head_dim, self.heads, self.kv_heads
        groups = nh // nkv
        causal = None
        if m > 1:
            total = start + m
            rows = torch.arange(start, total).unsqueeze(1)
            causal = torch.arange(total).unsqueeze(0) > rows  # m, total: True where hidden
        for i, layer in enumerate(self.layers):
            q, k, v = (t.transpose(0, 1) for t in self._qkv(layer, h, cos, sin))  # heads, m, d
            keys, values = cache.layers[i].update(k.unsqueeze(0), v.unsqueeze(0))
            kf, vf = keys[0], values[0]  # nkv, total, d (float32)
            qf = q.float().reshape(nkv, groups * m, hd)
            scores = torch.matmul(qf, kf.transpose(-1, -2)).mul_(self.scaling)
            if causal is not None:
                scores = scores.view(nkv, groups, m, -1).masked_fill(causal, float("-inf"))
                scores = scores.view(nkv, groups * m, -1)
            probs = torch.softmax(scores, dim=-1)
            att = torch.matmul(probs, vf)  # nkv, groups*m, d
            att = att.reshape(nh, m, hd).transpose(0, 1).reshape(m, nh * hd).to(h.dtype)
            h = self._after_attention(layer, h, att)
        last = self._norm(h[-1:], self.final_norm)
        return self.head.mm(last.contiguous())[0].float()

    def forward_batch(self, ids: list[int], batch: Batch) -> torch.Tensor:
        """One token for each of several continuations of one shared prefix; float32 logits
        (one row per token).

        Continuation ``b`` sees the first ``batch.shared[b]`` positions of the shared cache, then
        its own earlier tokens, which ``batch`` holds apart: the shared cache is read, never
        written, so many lines of one scored window decode together without copying it."""
        m = len(ids)
        t = batch.length
        h = self.embed[torch.tensor(ids)]  # m, hidden
        pos = (batch.shared + t).unsqueeze(0)  # 1, m
        cos, sin = self.rotary(h.unsqueeze(0), pos)
        cos = cos[0].unsqueeze(1)  # m, 1, d (broadcast over heads)
        sin = sin[0].unsqueeze(1)
        hd, nh, nkv = self.head_dim, self.heads, self.kv_heads
        groups = nh // nkv
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, h, cos, sin)  # m, heads, d
            pk, pv = batch.write(i, k, v)  # nkv, m, t + 1, d
            sk, sv = batch.shared_kv[i]  # nkv, n, d
            n = sk.shape[-2]
            qf = q.float().reshape(m, nkv, groups, hd).transpose(0, 1)  # nkv, m, g, d
            s_scores = torch.matmul(qf.reshape(nkv, m * groups, hd), sk.transpose(-1, -2))
            s_scores = s_scores.view(nkv, m, groups, n).masked_fill(batch.hidden, float("-inf"))
            p_scores = torch.matmul(qf, pk.transpose(-1, -2))  # nkv, m, g, t + 1
            scores = torch.cat([s_scores, p_scores], dim=-1).mul_(self.scaling)
            probs = torch.softmax(scores, dim=-1)
            att = torch.matmul(probs[..., :n].reshape(nkv, m * groups, n), sv).view(
                nkv, m, groups, hd
            ) + torch.matmul(probs[..., n:], pv)  # nkv, m, g, d
            att = att.transpose(0, 1).reshape(m, nh * hd).to(h.dtype)
            h = self._after_attention(layer, h, att)
        batch.length += 1
        last = self._norm(h, self.final_norm)
        return self.head.mm(last.contiguous()).float()


class Batch:
    """The state of several continuations decoding together after one shared cache (see
    :meth:`Decoder.forward_batch`): how much of the shared cache each sees, and the keys and
    values of their own tokens (float32, preallocated for ``steps`` tokens)."""

    def __init__(self, cache: Any, shared: list[int], steps: int) -> None:
        self.shared_kv = [(layer.keys[0], layer.values[0]) for layer in cache.layers]
        n = self.shared_kv[0][0].shape[-2]
        if any(s > n for s in shared):
            raise ValueError("a continuation sees more of the shared cache than it holds")
        self.shared = torch.tensor(shared)
        #: True where a continuation must not see a shared position: 1, m, 1, n.
        self.hidden = (torch.arange(n).unsqueeze(0) >= self.shared.unsqueeze(1))[None, :, None, :]
        nkv, hd = self.shared_kv[0][0].shape[0], self.shared_kv[0][0].shape[-1]
        m = len(shared)
        self.keys = [torch.empty(nkv, m, steps, hd) for _ in cache.layers]
        self.values = [torch.empty(nkv, m, steps, hd) for _ in cache.layers]
        self.length = 0

    def write(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.length
        if t >= self.keys[layer].shape[2]:
            raise ValueError("the batch ran past the steps it was made for")
        self.keys[layer][:, :, t] = k.float().transpose(0, 1)
        self.values[layer][:, :, t] = v.float().transpose(0, 1)
        return self.keys[layer][:, :, : t + 1], self.values[layer][:, :, : t + 1]

    def keep(self, rows: list[int]) -> None:
        """Go on with these continuations only (the others have ended)."""
        idx = torch.tensor(rows)
        self.shared = self.shared[idx]
        self.hidden = self.hidden[:, idx]
        self.keys = [k[:, idx] for k in self.keys]
        self.values = [v[:, idx] for v in self.values]


#: Weight dtypes the fast path takes: bfloat16, and float32 where the CPU lacks fast bfloat16.
DTYPES = (torch.bfloat16, torch.float32)


def enable(model: Any) -> Decoder | None:
    """Prepare ``model`` (bfloat16 or float32, on the CPU) for the fast path; None where it does
    not apply."""
    if not kernels_available():
        log.info("fast decode off: this torch build lacks the packed-weight kernels")
        return None
    if next(model.parameters()).dtype not in DTYPES or not Decoder.supports(model):
        return None
    decoder = Decoder(model)
    try:
        model.set_attn_implementation(ATTN_NAME)
    except (ValueError, AttributeError, NotImplementedError) as exc:
        log.info("fast decode off: %s", exc)
        return None
    return decoder
