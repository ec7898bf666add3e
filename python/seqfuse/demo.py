"""`seqfuse demo`: the main job on embedded defaults, no downloads, a few minutes on 2 cores.

It trains the sine and hihell seeds, shows what they learned, exports them to every format
(verified against eager) and benchmarks the backends on them. Checked by tests/test_cli.py
(which runs the demo end to end on its quick settings).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from seqfuse.train.loop import TrainOptions, train


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="folder for everything the demo writes")
    p.add_argument("--skip-export", action="store_true", help="train only")
    p.add_argument("--skip-bench", action="store_true", help="do not benchmark")
    p.add_argument(
        "--formats",
        default="torchscript,onnx,aoti,native",
        help="export formats (aoti compiles for ~10-30 s per model)",
    )
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    progress = not args.no_progress
    print("== seqfuse demo: 1/3 train ==")
    ckpts = {}
    for task in ("sine", "hihell"):
        r = train(
            TrainOptions(
                task=task, save_dir=str(out / task), progress=progress, seed=0, quiet=False
            )
        )
        ckpts[task] = r["checkpoint"]
        m = r["metrics"]
        if task == "sine":
            print(f"sine: next-value MSE on held-out waves {m['mse']:.2e} (bar: < 1e-3)")
        else:
            print(f"hihell: the RNN now reads 'hihell' and says '{m['predicted']}'")

    if not args.skip_export:
        from seqfuse.export import export_checkpoint, format_table

        print("\n== seqfuse demo: 2/3 export (each artifact reloaded and checked vs eager) ==")
        for task, ckpt in ckpts.items():
            manifest = export_checkpoint(
                ckpt, args.formats.split(","), out / task / "export", progress=progress
            )
            print(f"{task}: {out / task / 'export' / 'manifest.json'}")
            print(format_table(manifest) + "\n")

    if not args.skip_bench:
        from seqfuse.bench import demo_benchmark

        print("\n== seqfuse demo: 3/3 benchmark (median latency, outputs checked first) ==")
        demo_benchmark(ckpts, out / "bench", progress=progress)

    print(f"\nseqfuse demo: done; files are under {out.resolve()}")
    return 0
