"""Training throughput of l1kformer's rank-mode model against Hugging Face BertForMaskedLM.

    pip install '.[bench]' && python benchmarks/train_bench.py

Same width, depth, heads, FFN size, batch and sequence length (978 rank tokens, 15 % masked, vocab =
978 genes + specials), same dropout rate, same optimiser (AdamW), fp32 on the CPU. It runs at two
dropout rates: 0.02 (Geneformer's setting for BertForMaskedLM) and 0. BERT applies dropout to the
attention probabilities as well, which makes PyTorch's SDPA fall back to the unfused path; l1kformer
applies it to residual branches only and keeps the fused kernel, so the gap is large with dropout and
small without (then both run the same SDPA kernel and differ only by the MLM head, which BERT
computes at every position and l1kformer at masked positions only). The two models are
timed alternately in one run (rounds of ``--steps`` training steps each) so that machine noise hits
both alike; the figure is training tokens/s (batch x 978 per step) and the ratio ours / BERT.
BERT is used as Geneformer trains it: BertForMaskedLM with labels = -100 at unmasked positions.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))
from l1kformer.model import L1kFormer  # noqa: E402
from l1kformer.settings import ModelConfig  # noqa: E402
from l1kformer.tasks import get_task  # noqa: E402


def make_ours(a):
    """The seed's layout (gene ids in rank order, a logit per gene), as BERT's."""
    cfg = ModelConfig(mode="rank", n_genes=978, trunk="transformer", value_encoder="linear", attn_bias="none",
                      rank_view="sequence", dense_width=1, dense_depth=1, d_model=a.d_model, n_layers=a.n_layers,
                      n_heads=a.n_heads, d_ff=a.d_ff, dropout=a.dropout_rate)
    model, task = L1kFormer(cfg), get_task("rank")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(tokens, masked):
        index = masked.nonzero()[:, 1].view(len(tokens), -1)  # every profile has 147 masked positions
        loss = task.loss(model(task.mask_inputs(tokens, masked, 978), index), task.targets(tokens, index))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model, step


def make_bert(a):
    from transformers import BertConfig, BertForMaskedLM

    cfg = BertConfig(vocab_size=978 + 2, hidden_size=a.d_model, num_hidden_layers=a.n_layers,
                     num_attention_heads=a.n_heads, intermediate_size=a.d_ff, max_position_embeddings=978,
                     hidden_dropout_prob=a.dropout_rate, attention_probs_dropout_prob=a.dropout_rate)
    model = BertForMaskedLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    mask_id = 978

    def step(tokens, masked):
        inputs = tokens.masked_fill(masked, mask_id)
        labels = tokens.masked_fill(~masked, -100)
        loss = model(input_ids=inputs, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model, step


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--n-layers", type=int, default=4)
    ap.add_argument("--n-heads", type=int, default=2)
    ap.add_argument("--d-ff", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--dropout", type=float, nargs="+", default=[0.02, 0.0])
    ap.add_argument("--steps", type=int, default=3, help="training steps per round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    import transformers

    tokens = torch.stack([torch.randperm(978) for _ in range(a.batch)])
    masked = torch.rand(a.batch, 978).argsort(1) < 147
    print(f"# torch {torch.__version__}, transformers {transformers.__version__}, {a.threads} threads; "
          f"d_model {a.d_model}, layers {a.n_layers}, heads {a.n_heads}, ffn {a.d_ff}, batch {a.batch}, "
          f"seq 978")
    for dropout in a.dropout:
        a.dropout_rate = dropout
        compare(a, tokens, masked)


def compare(a, tokens, masked):
    torch.manual_seed(0)
    models = {"l1kformer": make_ours(a), "bert": make_bert(a)}
    for name, (model, _) in models.items():
        attn = getattr(model.config, "_attn_implementation", "?") if name == "bert" else "sdpa"
        print(f"# dropout {a.dropout_rate}: {name}: {sum(p.numel() for p in model.parameters()):,} "
              f"parameters, attention implementation {attn}")
    rates = {name: [] for name in models}
    for name, (_, step) in models.items():  # warm-up
        step(tokens, masked)
    for _ in range(a.rounds):
        for name, (_, step) in models.items():
            t = time.perf_counter()
            for _ in range(a.steps):
                step(tokens, masked)
            rates[name].append(a.steps * a.batch * 978 / (time.perf_counter() - t))
    for name, values in rates.items():
        print(f"dropout {a.dropout_rate}: {name:>10}: {statistics.median(values):10,.0f} training tokens/s "
              f"(median of {a.rounds} rounds: {', '.join(f'{v:,.0f}' for v in values)})")
    ratios = [o / b for o, b in zip(rates["l1kformer"], rates["bert"])]
    print(f"dropout {a.dropout_rate}: ratio l1kformer / bert: {statistics.median(ratios):.2f}x "
          f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})", flush=True)


if __name__ == "__main__":
    main()
