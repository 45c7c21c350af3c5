"""Fill-in-the-middle templates are detected from the tokenizer's special tokens."""

from __future__ import annotations

from tactful.backend.fim import detect_fim


def test_families() -> None:
    sc = detect_fim(["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<|endoftext|>"])
    assert sc is not None and sc.family == "starcoder"
    assert sc.render("a", "b") == "<fim_prefix>a<fim_suffix>b<fim_middle>"
    qw = detect_fim(["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_pad|>"])
    assert qw is not None and qw.family == "qwen2.5-coder"
    assert qw.render("a", "b") == "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>"
    ds = detect_fim(["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"])
    assert ds is not None and ds.render("a", "b") == "<｜fim▁begin｜>a<｜fim▁hole｜>b<｜fim▁end｜>"
    cl = detect_fim(["▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"])
    assert cl is not None and cl.family == "codellama"
    assert cl.render("a", "b") == "<PRE> a <SUF>b <MID>"


def test_no_fim_tokens_means_prefix_only() -> None:
    assert detect_fim(["<|endoftext|>", "<|im_start|>", "<filename>"]) is None
    assert detect_fim(["<fim_prefix>", "<fim_middle>"]) is None  # incomplete set
