"""GPU check at the seed's dimensions: throughput, projected epoch time, memory, MFU, CPU agreement.

Run by benchmarks/gpu_check.sh on a machine with an NVIDIA GPU (bf16 autocast, as the train rule
uses). Rank mode, d_model 128, 4 layers, 2 heads, FFN 256, batch 128, 978 tokens, 100,000 synthetic
profiles. Prints, for the eager and the ``torch.compile``d model side by side (fused AdamW, fixed-size
index masks, no host sync per step): samples/s and tokens/s of the bare training step, the projected
time of one epoch of 100,425 profiles (the seed's data set; it took 25 minutes; target <= 8 s), peak
GPU memory and model-FLOPs utilisation against the GPU's dense bf16 peak; then one epoch of the
pipeline's own ``train()`` (HDF5 loader included, ``compile: auto``) on the 100,000 profiles, and
whether a CUDA step and a CPU step of the same model agree to bf16 tolerance.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))
from l1kformer.model import L1kFormer, positions_mask  # noqa: E402
from l1kformer.settings import ModelConfig, split_settings  # noqa: E402
from l1kformer.tasks import get_task  # noqa: E402
from l1kformer.train import random_positions  # noqa: E402
from bench_config import defaults  # noqa: E402

DENSE_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0}
DIMS = dict(mode="rank", n_genes=978, trunk="transformer", value_encoder="linear", attn_bias="none",
            rank_view="sequence", d_model=128, n_layers=4, n_heads=2, d_ff=256, dense_width=1024, dense_depth=2,
            dropout=0.0)
TASK = get_task("rank")


def loss_of(net, inputs, index, x):
    return TASK.masked_loss(net, inputs, index, x)[1]


def peak_tflops(name):
    for key, value in DENSE_BF16_TFLOPS.items():
        if key in name:
            return value
    return float("nan")


def bare_steps(model, tokens, batch, steps, device, compiled):
    """The training step as train() runs it: (seconds for ``steps`` steps after warm-up, last loss)."""
    cfg = split_settings(defaults("train", **DIMS, batch_size=batch))[1]
    opt = model.configure_optimizer(1e-3, 0.01, fused=True)
    net = torch.compile(model) if compiled else model
    gen = torch.Generator(device=device).manual_seed(0)
    n = len(tokens)

    def step(i):
        x = tokens[(i * batch) % (n - batch):][:batch]
        index = random_positions(batch, 978, 0.15, gen, device)
        inputs, _ = TASK.corrupt(x, positions_mask(x, index), cfg, model.cfg.n_genes, gen)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_of(net, inputs, index, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    for i in range(20):  # warm-up (and compilation)
        step(i)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for i in range(steps):
        loss = step(i)
    torch.cuda.synchronize()
    return time.perf_counter() - t, float(loss)


def cpu_agreement(batch=8):
    torch.manual_seed(0)
    cpu_model = L1kFormer(ModelConfig(**DIMS))
    gpu_model = L1kFormer(ModelConfig(**DIMS))
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model.cuda()
    x = torch.stack([torch.randperm(978) for _ in range(batch)])
    index = torch.rand(batch, 978).argsort(1)[:, :147].sort(1).values
    inputs = x.masked_fill(positions_mask(x, index), 978)
    loss_cpu = loss_of(cpu_model, inputs, index, x)
    loss_cpu.backward()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss_gpu = loss_of(gpu_model, inputs.cuda(), index.cuda(), x.cuda())
    loss_gpu.backward()
    rel = abs(float(loss_gpu) - float(loss_cpu)) / abs(float(loss_cpu))
    g_cpu = torch.cat([p.grad.flatten() for p in cpu_model.parameters()])
    g_gpu = torch.cat([p.grad.flatten().float().cpu() for p in gpu_model.parameters()])
    cos = float(torch.nn.functional.cosine_similarity(g_cpu, g_gpu, dim=0))
    return float(loss_cpu), float(loss_gpu), rel, cos


def pipeline_epoch(n_profiles, batch):
    import h5py
    from l1kformer.train import train

    with tempfile.TemporaryDirectory() as d:
        ranks = torch.rand(n_profiles, 978, device="cuda").argsort(1).to(torch.int16).cpu().numpy()
        with h5py.File(f"{d}/ranks.h5", "w") as h5:
            h5.create_dataset("ranks", data=ranks, chunks=(1024, 978))
        rows = np.arange(n_profiles)
        val = rows[::50]
        split = {"train": np.setdiff1d(rows, val), "val": val, "test": val[:0]}
        positions = np.sort(np.argsort(np.random.default_rng(0).random((len(val), 978)), 1)[:, :147], 1)
        settings = defaults("train", **DIMS, epochs=1, batch_size=batch, device="cuda", warmup_steps=50)
        t = time.perf_counter()
        _, state = train(settings, f"{d}/ranks.h5", split, (val, positions.astype(np.int16)),
                         f"{d}/ckpt.pt", log=lambda m: None, progress=False)
        return time.perf_counter() - t, state["history"][0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--profiles", type=int, default=100_000)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device visible")
    name = torch.cuda.get_device_name()
    print(f"# {name}; torch {torch.__version__}; CUDA {torch.version.cuda}", flush=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    tokens = torch.rand(a.profiles, 978, device="cuda").argsort(1)
    rates = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = L1kFormer(ModelConfig(**DIMS)).cuda()
        seconds, loss = bare_steps(model, tokens, a.batch, a.steps, "cuda", compiled)
        samples_s = a.steps * a.batch / seconds
        rates[compiled] = samples_s
        achieved = model.flops_per_token() * samples_s * 978 / 1e12
        print(f"{'compiled' if compiled else 'eager'} training step, bf16: {a.steps} steps of {a.batch} in "
              f"{seconds:.2f} s; {samples_s:,.0f} samples/s, {samples_s * 978:,.0f} tokens/s; last loss {loss:.3f}; "
              f"projected epoch of 100,425 profiles {100_425 / samples_s:.1f} s (target <= 8 s); peak GPU memory "
              f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB; {achieved:.1f} TFLOP/s, MFU "
              f"{100 * achieved / peak_tflops(name):.1f} % of {peak_tflops(name):.0f} TFLOP/s dense bf16", flush=True)
        del model
    print(f"compiled / eager: {rates[True] / rates[False]:.2f}x samples/s", flush=True)
    l_cpu, l_gpu, rel, cos = cpu_agreement()
    ok = rel < 2e-2 and cos > 0.99
    print(f"CPU fp32 vs CUDA bf16, same weights and batch: loss {l_cpu:.5f} vs {l_gpu:.5f} (rel. diff {rel:.2e}), "
          f"gradient cosine {cos:.5f}: {'AGREE' if ok else 'DISAGREE'}", flush=True)
    del tokens
    wall, row = pipeline_epoch(a.profiles, a.batch)
    print(f"pipeline train(): one epoch of {a.profiles:,} profiles (HDF5 loader, validation included) in "
          f"{wall:.1f} s; {row['samples_per_s']:,.0f} samples/s in the training loop; peak memory "
          f"{row['peak_mem_mb'] / 1024:.2f} GiB")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
