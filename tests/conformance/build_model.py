"""Builds the tiny random model the conformance suite serves with a real vLLM, offline.

Writes DIR/base (a BPE tokenizer trained on generated text, a chat template, BOS/EOS, and a
random-weight LlamaForCausalLM in bf16), DIR/lora-r8 (a peft LoRA adapter of rank 8, what
`--max-lora-rank 8` accepts) and DIR/lora-r16 (rank 16, for vLLM's rank error). Seeded, so two
builds give the same tokenizer. Usage: python build_model.py DIR
"""

import os
import random
import sys

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

WORDS = (
    "the a an of to in is it that for on with as was by at be this from or have not are but "
    "which one all were we when there can more if will up out no so what about who said time "
    "model token request server cache prefix route queue latency stream reply prompt answer "
    "hello world please tell me story short long count number red blue green quick brown fox "
    "jumps over lazy dog alpha beta gamma delta one two three four five six seven eight nine ten"
).split()


def corpus(n=4000, seed=7):
    rng = random.Random(seed)
    for _ in range(n):
        yield " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20))) + rng.choice(".?!,")


def build(out):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="</s>",
        model_max_length=512,
    )
    fast.chat_template = CHAT_TEMPLATE
    base = os.path.join(out, "base")
    fast.save_pretrained(base)

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=512,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="bfloat16",
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.generation_config.bos_token_id = fast.bos_token_id
    model.generation_config.eos_token_id = fast.eos_token_id
    model.save_pretrained(base)

    from peft import LoraConfig, get_peft_model

    for rank in (8, 16):
        lora = LoraConfig(
            r=rank,
            lora_alpha=2 * rank,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            init_lora_weights=False,
        )
        peft_model = get_peft_model(LlamaForCausalLM(config).to(torch.bfloat16), lora)
        peft_model.save_pretrained(os.path.join(out, f"lora-r{rank}"))
    print(f"built {out}: vocab {len(fast)}")


if __name__ == "__main__":
    build(sys.argv[1])
