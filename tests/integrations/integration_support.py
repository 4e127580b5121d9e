"""Tiny models and data shared by the framework tests."""
import torch
from torch import nn

VOCAB, CONTEXT = 32, 8


def tiny_llama(seed=0, tied=False):
    """A one-layer LLaMA causal LM built from a config in code (nothing downloaded)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=CONTEXT,
                         tie_word_embeddings=tied)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def token_rows(n=24, seed=1):
    """Language-model rows in the form Hugging Face's Trainer takes: input_ids and labels."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (n, CONTEXT), generator=g)
    return [{"input_ids": row, "labels": row.clone()} for row in ids]


class TinyLM(nn.Module):
    """Embedding, a hidden block, a norm and an untied head: every kind param_groups knows."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(VOCAB, 16)
        self.up = nn.Linear(16, 32)
        self.down = nn.Linear(32, 16)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, VOCAB, bias=False)

    def forward(self, ids):
        h = self.embed(ids)
        h = h + self.down(torch.relu(self.up(h)))
        return self.head(self.norm(h))


def lm_loss(model, ids):
    logits = model(ids[:, :-1])
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))


def token_batches(n=8, batch=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (batch, CONTEXT), generator=g) for _ in range(n)]


def same_params(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def max_difference(a: nn.Module, b: nn.Module) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a.parameters(), b.parameters()))
