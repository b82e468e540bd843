"""Token counts: brix sim with `--tokenizer` (the tiny model's tokenizer.json) against vLLM, and
the folder `brix sim tokenizer export` writes against the sim's built-in tokenizer, read by
transformers' AutoTokenizer as benchmark tools read it."""

import json
import subprocess

import httpx
import pytest

from compare import body, expect, get, same

TEXTS = [
    "hello world please tell me a short story about the quick brown fox",
    "  leading spaces\n\nand newlines, digits 1234567 and punctuation?!",
    "naïve café 東京 🚀",
]
CHATS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": TEXTS[0]},
     {"role": "assistant", "content": "ok"}, {"role": "user", "content": TEXTS[1]}],
]


def test_tokenize_matches_vllm(pair):
    for i, text in enumerate(TEXTS):
        a, b = pair.both("POST", "/tokenize", json={"model": "tiny", "prompt": text})
        same(f"tokenize.prompt{i}", body(a), body(b))
    for i, messages in enumerate(CHATS):
        a, b = pair.both("POST", "/tokenize", json={"model": "tiny", "messages": messages})
        same(f"tokenize.chat{i}", body(a), body(b))


def test_usage_prompt_tokens_match_vllm(pair):
    for i, text in enumerate(TEXTS):
        a, b = pair.both("POST", "/v1/completions", json={"model": "tiny", "prompt": text, "max_tokens": 1})
        expect(f"usage.completions{i}", "prompt_tokens", get(body(a), "usage", "prompt_tokens"),
               get(body(b), "usage", "prompt_tokens"))
    for i, messages in enumerate(CHATS):
        a, b = pair.both("POST", "/v1/chat/completions", json={"model": "tiny", "messages": messages, "max_tokens": 1})
        expect(f"usage.chat{i}", "prompt_tokens", get(body(a), "usage", "prompt_tokens"),
               get(body(b), "usage", "prompt_tokens"))


COUNT = r"""
import json, sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
req = json.load(sys.stdin)
def ids(x):
    x = x["input_ids"] if hasattr(x, "keys") else x
    return list(x[0]) if x and isinstance(x[0], list) else list(x)
print(json.dumps({
    "texts": [ids(tok(t)) for t in req["texts"]],
    "chats": [ids(tok.apply_chat_template(m, add_generation_prompt=True, tokenize=True)) for m in req["chats"]],
}))
"""


def test_exported_tokenizer_counts_as_the_sim(tmp_path, vllm_python, brix_bin, request):
    """Needs transformers (from .venv-vllm) but no running vLLM."""
    if not vllm_python.exists():
        pytest.skip(f"no {vllm_python} (scripts/vllm-cpu installs transformers with vLLM)")
    out = tmp_path / "tok"
    subprocess.run([brix_bin, "sim", "tokenizer", "export", str(out)], check=True, timeout=300)
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        assert (out / name).exists(), name
    hf = subprocess.run([str(vllm_python), "-c", COUNT, str(out)], input=json.dumps({"texts": TEXTS, "chats": CHATS}),
                        capture_output=True, text=True, check=True, timeout=300)
    hf = json.loads(hf.stdout.strip().splitlines()[-1])
    sim = request.getfixturevalue("builtin_sim")
    for text, ids in zip(TEXTS, hf["texts"]):
        r = httpx.post(sim.url + "/tokenize", json={"prompt": text}, timeout=30).json()
        assert r["tokens"] == ids, text
    for messages, ids in zip(CHATS, hf["chats"]):
        r = httpx.post(sim.url + "/tokenize", json={"messages": messages}, timeout=30).json()
        assert r["tokens"] == ids, messages
