"""The transformers/torch backend: loading (embedded default, local folder or hub id),
greedy generation with per-document KV-cache reuse, token healing, and cancellation within
one decoding step. torch and transformers are imported lazily, inside ``load``."""

from __future__ import annotations

import bisect
import copy
import itertools
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tactful.backend import embedded, stops
from tactful.backend.fim import FimTemplate, detect_fim
from tactful.backend.types import GenerateRequest, Generation, LineScores, ModelError

if TYPE_CHECKING:
    from tactful.backend.fast import Decoder

log = logging.getLogger(__name__)

#: Prefill long prompts in chunks so that a cancel is seen between chunks.
PREFILL_CHUNK = 256
#: Tokens per forward pass of ``score_into_slot``: a cancel (a completion waiting) is seen
#: between chunks, so they are kept short.
SCORE_CHUNK = 128
#: The scoring pass turns logits into log-probabilities this many positions at a time.
SCORE_ROWS = 8
#: Vocabulary rows per product of the scoring pass's output layer on the CPU: a 49k-row product
#: runs at about 39 GFLOP/s on an AVX2 core, blocks of 512 rows at about 56 (the same sums).
HEAD_BLOCK = 512
#: Documents whose KV caches are kept (least recently used is dropped).
MAX_SLOTS = 4
_HEAL_CHARS = " \t\n\r"

Progress = Callable[[str, int], None]


def cpu_has_bf16() -> bool:
    """True where bfloat16 matmuls are fast on this CPU (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def row_blocks(rows: int) -> list[tuple[int, int]]:
    """Row ranges of about ``SCORE_ROWS`` that cover ``rows`` rows of a scoring chunk's logits. A
    lone last row joins the block before it: torch splits a reduction with a single output
    across threads, which would change the order of its sum (``token_scores``)."""
    bounds = [*range(0, rows, SCORE_ROWS), rows]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]
    return list(itertools.pairwise(bounds))


def token_scores(
    torch: Any, logits: Any, targets: Any
) -> tuple[list[float], list[float], list[bool]]:
    """For each of the first ``len(targets)`` rows of ``logits`` (positions, vocabulary): the
    log-probability of the next token ``targets[i]``, the entropy of the distribution, and
    whether the next token is the most likely one.

    The rows are taken a few at a time (``row_blocks``), so that their float32 log-probabilities
    stay in the CPU cache: about 1.6x faster than the whole chunk at once, and the same
    arithmetic row by row, so the results are identical to it bit for bit (tested)."""
    n = len(targets)
    lp: list[float] = []
    ent: list[float] = []
    greedy: list[bool] = []
    for lo, hi in row_blocks(logits.shape[0]):
        logp = torch.log_softmax(logits[lo:hi].float(), dim=-1)
        k = max(0, min(hi, n) - lo)  # rows with a next token to score
        want = targets[lo : lo + k]
        ent.extend((-(logp.exp() * logp).sum(-1))[:k].tolist())
        lp.extend(logp[torch.arange(k), want].tolist())
        greedy.extend((logp[:k].argmax(-1) == want).tolist())
    return lp, ent, greedy


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class _Slot:
    ids: list[int] = field(default_factory=list)
    cache: Any = None


class TransformersBackend:
    """A Hugging Face causal LM behind tactful's ``Backend`` interface."""

    def __init__(self, model: Any, tokenizer: Any, name: str, device: str) -> None:
        import torch

        self.model = model
        self.tok = tokenizer
        self.name = name
        self.device = device
        self._torch = torch
        specials = list(getattr(tokenizer, "all_special_tokens", []))
        specials += list(getattr(tokenizer, "additional_special_tokens", []) or [])
        specials += list(tokenizer.get_vocab().keys()) if len(tokenizer) < 300_000 else []
        self.fim_template: FimTemplate | None = detect_fim(t for t in specials if "<" in t)
        self.fim = self.fim_template is not None
        self._stop_ids = self._collect_stop_ids()
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._lock = threading.RLock()
        self._heal: _HealIndex | None = None
        #: The fast CPU decoder when it is on (see ``fast.py``), else None.
        self.fast: Decoder | None = None
        #: Totals since start, for benchmarks and the status command.
        self.stats = {
            "prefilled": 0,
            "reused": 0,
            "generated": 0,
            "calls": 0,
            "cancelled": 0,
            "finished": 0,
        }

    # --- loading -------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        spec: str | None,
        *,
        cache_dir: Path,
        device: str = "auto",
        dtype: str = "auto",
        threads: int = 0,
        fast_decode: bool = True,
        progress: Progress | None = None,
    ) -> TransformersBackend:
        """Load ``spec`` (None: the embedded model; a folder; or a hub id)."""
        report = progress or (lambda _m, _p: None)
        report("Loading torch", 2)
        try:
            import torch
            import transformers
            from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

            transformers.utils.logging.set_verbosity_error()
            transformers.utils.logging.disable_progress_bar()
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ModelError(
                f"torch/transformers are not installed: {exc}. Run scripts/setup.sh."
            ) from exc

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "bfloat16" if device != "cpu" or cpu_has_bf16() else "float32"
        torch_dtype = getattr(torch, dtype)

        if spec is None:
            path: str = str(embedded.ensure_converted(cache_dir, report))
            name = embedded.MODEL_NAME
        else:
            expanded = Path(spec).expanduser()
            looks_local = spec.startswith((".", "/", "~")) or expanded.exists()
            if looks_local:
                if not expanded.is_dir():
                    raise ModelError(f"Model folder not found: {expanded}")
                if not (expanded / "config.json").is_file():
                    raise ModelError(
                        f"{expanded} is not a Hugging Face model folder (no config.json)"
                    )
            path = str(expanded) if looks_local else spec
            name = expanded.name if looks_local else spec
        report(f"Loading {name}", 50)
        try:
            config = AutoConfig.from_pretrained(path, trust_remote_code=False)
            archs = getattr(config, "architectures", None) or []
            if archs and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
                raise ModelError(
                    f"{name} is not a causal language model (architectures: {', '.join(archs)})"
                )
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=torch_dtype, trust_remote_code=False, use_safetensors=True
            )
        except ModelError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelError(f"Could not load model {name!r}: {msg}") from exc
        model.to(device).eval()  # type: ignore[arg-type]
        if device == "cpu":
            # Leave a core free by default: with every core busy, torch's threads spin against
            # the editor and other processes and each decoding step gets several times slower.
            torch.set_num_threads(threads or max(1, (os.cpu_count() or 2) - 1))
        backend = cls(model, tokenizer, name, device)
        # float32 takes the fast path (bfloat16 activations into the packed products) only where
        # it was chosen for lack of fast bfloat16, not where the user asked for float32 instead.
        fast_dtypes = (torch.bfloat16,) if cpu_has_bf16() else (torch.bfloat16, torch.float32)
        if fast_decode and device == "cpu" and torch_dtype in fast_dtypes:
            from tactful.backend import fast

            try:
                backend.fast = fast.enable(model)
            except Exception as exc:  # a model or torch build the packing does not handle
                log.warning("fast decoding off for %s: %s", name, exc)
                backend.fast = None
        report("Warming up", 90)
        backend._heal_index()  # the token-healing index, built once
        backend.generate(GenerateRequest(prefix="def add(a, b):", max_new_tokens=2))
        report(f"{name} ready", 100)
        return backend

    def _collect_stop_ids(self) -> set[int]:
        ids: set[int] = set()
        eos = self.tok.eos_token_id
        if isinstance(eos, int):
            ids.add(eos)
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for e in gen_eos if isinstance(gen_eos, list) else [gen_eos]:
            if isinstance(e, int):
                ids.add(e)
        names = list(self.fim_template.stop_tokens) if self.fim_template else []
        names += ["<|endoftext|>", "<|im_end|>", "<|im_start|>", "<file_sep>", "<|file_sep|>"]
        vocab = self.tok.get_vocab()
        for n in names:
            for v in (n, "▁" + n):
                if v in vocab:
                    ids.add(vocab[v])
        return ids

    # --- helpers -------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self.tok.encode(text, add_special_tokens=False))

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))

    def drop_cache(self, cache_key: str) -> None:
        with self._lock:
            self._slots.pop(cache_key, None)

    def _heal_index(self) -> _HealIndex:
        if self._heal is None:
            n = len(self.tok)
            strings = self.tok.batch_decode([[i] for i in range(n)], skip_special_tokens=False)
            special = set(getattr(self.tok, "all_special_ids", []))
            self._heal = _HealIndex(
                self._torch,
                (
                    (i, s)
                    for i, s in enumerate(strings)
                    if s and i not in special and i not in self._stop_ids and "\ufffd" not in s
                ),
            )
        return self._heal

    def _allowed_for_heal(self, heal: str) -> Any:
        """Ids (ascending, a tensor) of the tokens that fit a healed prompt end ``heal``: those
        that start with it and those that are a prefix of it."""
        return self._heal_index().allowed(heal)

    def _forward(self, ids: list[int], cache: Any, decode: bool = False) -> Any:
        """Logits after ``ids``. Prompt tokens always take the stock path with the model's own
        weights; ``decode`` (generated tokens) may take the fast decoder."""
        if decode and self.fast is not None:
            start = cache.get_seq_length()
            try:
                return self.fast.forward(ids, cache)
            except RuntimeError as exc:
                if "out of memory" in str(exc).lower():
                    raise
                # Keep serving: undo this step's partial cache writes, use the stock path from now.
                log.warning("fast decoding failed, using the stock path from now: %s", exc)
                self.fast = None
                for layer in cache.layers:  # layers before the failure hold the new tokens
                    extra = layer.get_seq_length() - start
                    if extra > 0:
                        layer.crop(-extra)
        torch = self._torch
        inp = torch.tensor([ids], device=self.device)
        out = self.model(input_ids=inp, cache=cache, use_cache=True, logits_to_keep=1)
        return out.logits[0, -1].float()

    def _all_logits(self, ids: list[int], cache: Any) -> Any:
        """Logits of every position of ``ids`` after ``cache`` (the scoring pass), the stock
        forward's. With the CPU fast path (Llama/Qwen2-style models, whose logits are the output
        layer's product) the output layer runs in blocks of ``HEAD_BLOCK`` vocabulary rows."""
        torch = self._torch
        inp = torch.tensor([ids], device=self.device)
        if self.fast is None:
            return self.model(input_ids=inp, cache=cache, use_cache=True).logits[0]
        hidden = self.model.model(input_ids=inp, cache=cache, use_cache=True).last_hidden_state[0]
        weight = self.model.lm_head.weight
        out = hidden.new_empty((hidden.shape[0], weight.shape[0]))
        for i in range(0, weight.shape[0], HEAD_BLOCK):
            out[:, i : i + HEAD_BLOCK] = torch.nn.functional.linear(
                hidden, weight[i : i + HEAD_BLOCK]
            )
        return out

    def _new_cache(self) -> Any:
        if self.fast is not None:
            from tactful.backend import fast

            return fast.new_cache(self.model.config)
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def _fork(self, cache: Any, length: int) -> Any:
        """A copy of the first ``length`` positions of ``cache``."""
        if self.fast is not None:
            from tactful.backend import fast

            return fast.fork_cache(cache, length, self.model.config)
        out = copy.deepcopy(cache)
        self._crop(out, length)
        return out

    def _crop(self, cache: Any, length: int) -> None:
        extra = cache.get_seq_length() - length
        if extra > 0:
            cache.crop(-extra)

    # --- generation ----------------------------------------------------------------------------
    def _build_prompt(self, req: GenerateRequest) -> tuple[str, str]:
        """The prompt text and the text healed away from its end (regenerated, then dropped)."""
        if req.use_fim and self.fim_template is not None and req.suffix:
            return self.fim_template.render(req.prefix, req.suffix), ""
        base = req.prefix.rstrip(_HEAL_CHARS)
        heal = req.prefix[len(base) :]
        if not heal and base:
            # Back off a trailing partial word too ("ret" -> allow "return").
            ids = self.encode(base)
            if ids:
                last = self.tok.decode(ids[-1:])
                if (
                    last
                    and last.strip()
                    and (last[-1].isalnum() or last[-1] == "_")
                    and len(last) < len(base)
                ):
                    base, heal = base[: -len(last)], last
        return base, heal

    def generate(self, req: GenerateRequest) -> Generation:
        with self._lock, self._torch.inference_mode():
            return self._generate(req)

    def _generate(self, req: GenerateRequest) -> Generation:
        torch = self._torch
        t0 = time.perf_counter()
        if req.cancel.is_set():  # superseded while queued: not even the prompt is needed
            self.stats["cancelled"] += 1
            return self._finish(Generation(text="", cancelled=True), t0)
        prompt, heal = self._build_prompt(req)
        ids = self.encode(prompt)
        if not ids:
            bos = (
                self.tok.bos_token_id
                if self.tok.bos_token_id is not None
                else self.tok.eos_token_id
            )
            ids = [bos]
        self.stats["calls"] += 1
        slot: _Slot | None = None
        if req.cache_key is not None:
            slot = self._slots.pop(req.cache_key, None) or _Slot()
            self._slots[req.cache_key] = slot
            while len(self._slots) > MAX_SLOTS:
                self._slots.popitem(last=False)
        else:
            slot = _Slot()
        if slot.cache is None:
            slot.cache = self._new_cache()
            slot.ids = []
        if req.keep_slot and slot.ids:
            # Work on a copy of the shared prefix: the slot keeps the scored text for the next
            # line's regeneration.
            shared = min(_common_prefix(slot.ids, ids), len(ids) - 1)
            slot = _Slot(ids=slot.ids[:shared], cache=self._fork(slot.cache, shared))
        cache = slot.cache
        keep = min(_common_prefix(slot.ids, ids), len(ids) - 1)
        self._crop(cache, keep)
        slot.ids = ids[:keep]
        gen = Generation(text="", prompt_tokens=len(ids), reused_tokens=keep)
        req.partial = gen
        self.stats["reused"] += keep
        try:
            # All prompt tokens but the last take the stock path and stay in the document's
            # cache. The last one goes through the decoder like a generated token, cold and warm
            # alike (so a warm run still equals a cold one): typing mid-word heals back to the
            # same prompt, and then the whole prefill is one decoder step, not a stock forward.
            last = len(ids) - 1
            pos = keep
            logits = None
            while pos <= last:
                if req.cancel.is_set():
                    gen.cancelled = True
                    self.stats["cancelled"] += 1
                    return self._finish(gen, t0)
                if pos < last:
                    chunk = ids[pos : min(pos + PREFILL_CHUNK, last)]
                    # A chunk always runs to its end, even when the request is cancelled
                    # meanwhile: the next request for the document shares these tokens, and
                    # cutting chunks part way would lose the prefill of each keystroke's prompt
                    # to the next keystroke.
                    self._forward(chunk, cache)
                    pos += len(chunk)
                    slot.ids = ids[:pos]
                else:
                    chunk = ids[last:]
                    logits = self._forward(chunk, cache, decode=True)
                    pos += 1
                self.stats["prefilled"] += len(chunk)
            assert logits is not None
            dec = _Continuation(self, req, heal, gen)
            while not dec.exhausted:
                if req.cancel.is_set():
                    gen.cancelled = True
                    self.stats["cancelled"] += 1
                    break
                best = dec.step(logits)
                if best is None:
                    break
                logits = self._forward([best], cache, decode=True)
            text = dec.text
            # Keep only the stock-computed prompt in the document's cache: the last prompt token and
            # the generated ones come from the packed-weight decoder, and a later prompt must see
            # exactly what a cold run sees.
            self._crop(cache, len(slot.ids))
            gen.text = self._cut(text, req)
            if not gen.cancelled:
                self.stats["finished"] += 1
        except (RuntimeError, MemoryError) as exc:
            if req.cache_key is not None:
                self._slots.pop(req.cache_key, None)
            if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
                if self.device == "cuda":
                    torch.cuda.empty_cache()
                raise ModelError(
                    "The model ran out of memory while generating; try a shorter context or a smaller model"
                ) from exc
            raise
        return self._finish(gen, t0)

    def generate_many(self, reqs: Sequence[GenerateRequest]) -> list[Generation]:
        """Greedy continuations of several prefixes of one scored text (``keep_slot`` requests
        on one ``cache_key``), decoded together: each step runs one token of every continuation
        in one pass of the fast decoder, which costs little more than one token on a CPU. The
        texts are what ``generate`` gives one at a time. Requests that cannot join the batch (no
        fast decoder, no scored slot, fill-in-the-middle, a prompt that tokenises differently
        before its last token) are run one at a time."""
        with self._lock, self._torch.inference_mode():
            out: list[Generation | None] = [None] * len(reqs)
            slot = None
            key = reqs[0].cache_key if reqs else None
            if self.fast is not None and key is not None:
                slot = self._slots.get(key)
                if slot is not None:
                    self._slots.move_to_end(key)  # in use: the last to be dropped
            batch: list[tuple[int, GenerateRequest, str, list[int], int]] = []
            for n, req in enumerate(reqs):
                if (
                    slot is None
                    or slot.cache is None
                    or not slot.ids
                    or req.cache_key != key
                    or not req.keep_slot
                    or (req.use_fim and self.fim_template is not None and req.suffix)
                    or req.cancel.is_set()
                ):
                    continue
                prompt, heal = self._build_prompt(req)
                ids = self.encode(prompt)
                shared = min(_common_prefix(slot.ids, ids), len(ids) - 1)
                if ids and shared == len(ids) - 1:
                    batch.append((n, req, heal, ids, shared))
            if len(batch) > 1 and slot is not None:
                t0 = time.perf_counter()
                gens = self._decode_batch(slot, batch)
                if gens is not None:  # else all of them run one at a time below
                    for (n, *_), gen in zip(batch, gens, strict=True):
                        out[n] = self._finish(gen, t0)
            for n, req in enumerate(reqs):
                if out[n] is None:
                    out[n] = self._generate(req)
            return [g for g in out if g is not None]

    def _decode_batch(
        self, slot: _Slot, batch: Sequence[tuple[int, GenerateRequest, str, list[int], int]]
    ) -> list[Generation] | None:
        """The batch's generations; None where the batched step failed (run them one by one)."""
        from tactful.backend import fast

        assert self.fast is not None
        decs: list[_Continuation] = []
        for _n, req, heal, ids, shared in batch:
            gen = Generation(text="", prompt_tokens=len(ids), reused_tokens=shared)
            req.partial = gen
            self.stats["calls"] += 1
            self.stats["reused"] += shared
            self.stats["prefilled"] += 1
            decs.append(_Continuation(self, req, heal, gen))
        steps = max(d.limit for d in decs) + 1
        state = fast.Batch(slot.cache, [shared for *_, shared in batch], steps)
        live = list(range(len(decs)))
        tokens = [ids[-1] for *_, ids, _shared in batch]
        try:
            while live:
                logits = self.fast.forward_batch(tokens, state)
                going: list[int] = []
                tokens = []
                for row, d in enumerate(live):
                    dec = decs[d]
                    best = None
                    if dec.req.cancel.is_set():
                        dec.gen.cancelled = True
                        self.stats["cancelled"] += 1
                    elif not dec.exhausted:
                        best = dec.step(logits[row])
                    if best is None:
                        dec.gen.text = self._cut(dec.text, dec.req)
                        if not dec.gen.cancelled:
                            self.stats["finished"] += 1
                        continue
                    going.append(row)
                    tokens.append(best)
                if going and len(going) < len(live):
                    state.keep(going)
                live = [live[row] for row in going]
        except (RuntimeError, ValueError, MemoryError) as exc:
            if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
                raise ModelError(
                    "The model ran out of memory while regenerating lines; the text is too long"
                ) from exc
            log.warning("batched decoding failed, decoding one at a time: %s", exc)
            for _n, req, *_ in batch:
                req.partial = None
            return None
        return [d.gen for d in decs]

    def _finish(self, gen: Generation, t0: float) -> Generation:
        gen.seconds = time.perf_counter() - t0
        return gen

    @staticmethod
    def _should_stop(text: str, req: GenerateRequest) -> bool:
        return stops.should_stop(text, req)

    @staticmethod
    def _cut(text: str, req: GenerateRequest) -> str:
        return stops.cut(text, req)

    # --- scoring -------------------------------------------------------------------------------
    def score(self, text: str, cancel: threading.Event | None = None) -> LineScores:
        with self._lock, self._torch.inference_mode():
            return self._score(text, cancel or threading.Event())

    def _score(self, text: str, cancel: threading.Event) -> LineScores:
        torch = self._torch
        line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
        nlines = len(line_starts)
        lp: list[list[float]] = [[] for _ in range(nlines)]
        ent: list[list[float]] = [[] for _ in range(nlines)]
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids: list[int] = list(enc["input_ids"])
        offsets = enc["offset_mapping"]
        if not ids:
            return LineScores(lp, ent, 0)
        bos = self.tok.bos_token_id if self.tok.bos_token_id is not None else self.tok.eos_token_id
        seq = [bos, *ids] if bos is not None else ids
        shift = 1 if bos is not None else 0
        window = 2048
        cache = self._new_cache()
        pos = 0
        while pos < len(seq) - 1:
            if cancel.is_set():
                raise InterruptedError("scoring cancelled")
            if pos and pos % window == 0:
                cache = self._new_cache()  # restart context on very long files
            chunk = seq[pos : min(pos + 256, len(seq) - 1, (pos // window + 1) * window)]
            out = self.model(input_ids=torch.tensor([chunk]), cache=cache, use_cache=True)
            logits = out.logits[0].float()  # (chunk, vocab)
            logp = torch.log_softmax(logits, dim=-1)
            entropy = -(logp.exp() * logp).sum(-1)
            for j in range(len(chunk)):
                target_pos = pos + j + 1  # index in seq of the predicted token
                tok_index = target_pos - shift
                if tok_index < 0 or tok_index >= len(ids):
                    continue
                start = offsets[tok_index][0]
                # A token that starts with the newline belongs to the line it ends.
                piece = text[start : offsets[tok_index][1]]
                anchor = start + (len(piece) - len(piece.lstrip("\n")) if piece.strip() else 0)
                line = (
                    bisect.bisect_right(line_starts, min(anchor, len(text) - 1 if text else 0)) - 1
                )
                lp[line].append(float(logp[j, seq[target_pos]]))
                ent[line].append(float(entropy[j]))
            pos += len(chunk)
        return LineScores(lp, ent, len(ids))

    def log_prob(self, prefix: str, continuation: str, suffix: str = "") -> float:
        with self._lock, self._torch.inference_mode():
            torch = self._torch
            if suffix and self.fim_template is not None:
                ctx = self.encode(self.fim_template.render(prefix, suffix))
            else:
                ctx = self.encode(prefix)
            cont = self.encode(continuation)
            if not cont:
                return 0.0
            bos = (
                self.tok.bos_token_id
                if self.tok.bos_token_id is not None
                else self.tok.eos_token_id
            )
            if not ctx:
                ctx = [bos]
            seq = ctx + cont
            out = self.model(input_ids=torch.tensor([seq]), logits_to_keep=len(cont) + 1)
            logp = torch.log_softmax(out.logits[0, :-1].float(), dim=-1)  # predicts cont tokens
            total = sum(float(logp[i, t]) for i, t in enumerate(cont))
            return total if math.isfinite(total) else -1e9

    def score_into_slot(
        self, text: str, cache_key: str, cancel: threading.Event | None = None
    ) -> LineScores:
        with self._lock, self._torch.inference_mode():
            return self._score_into_slot(text, cache_key, cancel or threading.Event())

    def _score_into_slot(self, text: str, cache_key: str, cancel: threading.Event) -> LineScores:
        torch = self._torch
        line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
        lp: list[list[float]] = [[] for _ in line_starts]
        ent: list[list[float]] = [[] for _ in line_starts]
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids: list[int] = list(enc["input_ids"])
        offsets = enc["offset_mapping"]
        self._slots.pop(cache_key, None)
        if not ids:
            return LineScores(lp, ent, 0)
        cache = self._new_cache()
        slot = _Slot(ids=[], cache=cache)
        greedy: list[bool] = [False]
        pos = 0
        try:
            while pos < len(ids):
                if cancel.is_set():
                    raise InterruptedError("scoring cancelled")
                chunk = ids[pos : pos + SCORE_CHUNK]
                logits = self._all_logits(chunk, cache)
                targets = torch.tensor(
                    ids[pos + 1 : pos + len(chunk) + 1], dtype=torch.long, device=self.device
                )
                n = len(targets)
                tok_lp, tok_ent, tok_greedy = token_scores(torch, logits, targets)
                greedy.extend(tok_greedy)
                for j in range(n):
                    t = pos + j + 1
                    start, end = offsets[t]
                    piece = text[start:end]
                    anchor = start + (len(piece) - len(piece.lstrip("\n")) if piece.strip() else 0)
                    line = bisect.bisect_right(line_starts, min(anchor, len(text) - 1)) - 1
                    lp[line].append(tok_lp[j])
                    ent[line].append(tok_ent[j])
                pos += len(chunk)
                slot.ids = ids[:pos]
                self.stats["prefilled"] += len(chunk)
        except (RuntimeError, MemoryError) as exc:
            if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
                raise ModelError(
                    "The model ran out of memory while scoring; the text is too long"
                ) from exc
            raise
        self._slots[cache_key] = slot
        while len(self._slots) > MAX_SLOTS:
            self._slots.popitem(last=False)
        starts = [int(o[0]) for o in offsets]
        return LineScores(lp, ent, len(ids), token_starts=starts, token_greedy=greedy[: len(ids)])


class _Continuation:
    """One greedy continuation: picks each token (healing the prompt's end back first) and
    applies the stop rules. The sequential and the batched decoding loops share it, so they
    choose the same tokens from the same logits."""

    def __init__(
        self, backend: TransformersBackend, req: GenerateRequest, heal: str, gen: Generation
    ) -> None:
        self.backend = backend
        self.req = req
        self.heal = heal
        self.heal_left = heal
        self.gen = gen
        self.ids: list[int] = []
        self.text = ""
        self.steps = 0
        self.limit = req.max_new_tokens + (4 if heal else 0)

    @property
    def exhausted(self) -> bool:
        return self.steps >= self.limit

    def step(self, logits: Any) -> int | None:
        """Take the next token from ``logits``; returns it when the continuation goes on (the
        caller runs it through the model), None when it has ended."""
        b, req, gen = self.backend, self.req, self.gen
        torch = b._torch
        self.steps += 1
        logp = torch.log_softmax(logits, dim=-1)
        if self.heal_left:
            idx = b._allowed_for_heal(self.heal_left)
            if not len(idx):
                return None
            best = int(idx[int(torch.argmax(logp[idx]))])
        else:
            best = int(torch.argmax(logp))
        if best in b._stop_ids:
            gen.stopped = True
            return None
        self.ids.append(best)
        gen.token_logprobs.append(float(logp[best]))
        piece = b.tok.decode([best])
        gen.tokens.append(piece)
        b.stats["generated"] += 1
        if self.heal_left:
            if piece.startswith(self.heal_left):
                self.text += piece[len(self.heal_left) :]
                self.heal_left = ""
            else:
                self.heal_left = self.heal_left[len(piece) :]
        else:
            decoded = b.tok.decode(self.ids)
            self.text = decoded[len(self.heal) :] if self.heal else decoded
        gen.text = self.text
        req.publish(gen)
        if b._should_stop(self.text, req):
            gen.stopped = True
            return None
        if len(gen.tokens) >= self.limit:
            return None
        return best


class _HealIndex:
    """The vocabulary sorted by token text, for token healing: which tokens fit the text healed
    away from a prompt's end. Tokens that start with it lie in one run of the sorted texts (found
    by bisection); tokens that are a prefix of it are looked up by each of its prefixes. A scan
    of the vocabulary took about 13 ms a call; the id tensors of recent heal texts are kept."""

    #: Heal texts whose id tensors are kept.
    KEEP = 256

    def __init__(self, torch: Any, tokens: Iterable[tuple[int, str]]) -> None:
        self._torch = torch
        pairs = sorted((s, i) for i, s in tokens)
        self.texts = [s for s, _ in pairs]
        self.ids = [i for _, i in pairs]
        self.by_text: dict[str, list[int]] = {}
        for s, i in pairs:
            self.by_text.setdefault(s, []).append(i)
        self._recent: OrderedDict[str, Any] = OrderedDict()

    def allowed(self, heal: str) -> Any:
        got = self._recent.get(heal)
        if got is not None:
            self._recent.move_to_end(heal)
            return got
        lo = bisect.bisect_left(self.texts, heal)
        hi = bisect.bisect_left(self.texts, heal + "\U0010ffff", lo)
        ids = set(self.ids[lo:hi])
        for k in range(1, len(heal)):
            ids.update(self.by_text.get(heal[:k], ()))
        got = self._torch.tensor(sorted(ids), dtype=self._torch.long)
        self._recent[heal] = got
        while len(self._recent) > self.KEEP:
            self._recent.popitem(last=False)
        return got
