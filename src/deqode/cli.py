"""Command line: ``python -m deqode train EXPERIMENT --profile P``, ``python -m deqode list`` and
``python -m deqode download DATASET|CHAPTER [--verify]``.

The commands train exactly the configurations the notebooks use (:mod:`deqode.chapters`)
through :func:`deqode.train.fit`. Exit codes: 0 the run completed (or stopped at
``--max-epochs``), 1 the run failed (the reason is printed and in ``status.json``), 2 bad input
(unknown experiment, profile, device or option; a missing dataset; a changed configuration on
``--resume``), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from deqode.choices import ONE_THREAD_PROFILES, PROFILES, UnknownChoiceError
from deqode.errors import DatasetMissingError

EPILOG = """\
outputs (written atomically, only by rank 0):
  RESULTS_DIR/PROFILE/EXPERIMENT/{config.json, status.json, metrics.json, checkpoint.pt}
  status.json: state running|completed|stopped|failed and the reason; metrics.json: per-epoch
  history (train/test loss and accuracy, forward/backward NFE, time per phase, peak memory) and a
  summary with the best-epoch and the last-epoch test accuracy.

several GPUs (one process per GPU, DistributedDataParallel, nccl; gloo on CPU):
  torchrun --nproc_per_node 4 -m deqode train homoode-cifar10 --profile paper
  The configured batch size is the global batch; each rank takes batch / world size.

exit codes: 0 completed or stopped at --max-epochs, 1 the run failed (NaN/inf loss, exploding
state or solver failure; the last good checkpoint is kept), 2 bad input or a missing dataset,
130 interrupted.

examples:
  python -m deqode list
  python -m deqode train homoode-digits --profile smoke
  python -m deqode train homoode-cifar10 --profile paper --download --device cuda
  python -m deqode train homoode-cifar10 --profile paper --resume
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deqode",
        description="deqode: train the book's experiments (DEQs, Neural ODEs, HomoODE).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train one experiment configuration",
        description="Train one experiment (see `python -m deqode list`) with the one training "
        "loop of deqode.train.fit.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
    )
    train.add_argument("experiment", metavar="EXPERIMENT",
                       help="experiment name, e.g. homoode-digits (smoke) or homoode-cifar10 "
                       "(paper); `python -m deqode list` shows them all")
    train.add_argument("--profile", default="smoke", metavar="P",
                       help=f"run profile, one of {', '.join(PROFILES)}: smoke = does the code "
                       "run (minutes); cpu = narrowed models trained to a plateau on 2 CPU "
                       "cores; paper = the released settings on GPU "
                       "(default: %(default)s)")
    train.add_argument("--resume", action="store_true",
                       help="continue from RESULTS_DIR/PROFILE/EXPERIMENT/checkpoint.pt (same "
                       "configuration required); without a checkpoint, start afresh")
    train.add_argument("--device", default="auto", metavar="D",
                       help="auto (CUDA when present), cpu, cuda or cuda:N; under torchrun the "
                       "GPU index comes from LOCAL_RANK (default: %(default)s)")
    train.add_argument("--results-dir", default="results", metavar="R",
                       help="results root; relative paths are taken from the repository root "
                       "(default: %(default)s)")
    train.add_argument("--data-root", default="data", metavar="R",
                       help="dataset root; relative paths are taken from the repository root "
                       "(default: %(default)s)")
    train.add_argument("--download", action="store_true",
                       help="download missing torchvision datasets into the data root (network "
                       "needed); otherwise a missing dataset stops with instructions")
    train.add_argument("--epochs", type=int, metavar="N",
                       help="override the configured number of epochs (this also changes the "
                       "cosine schedule's length)")
    train.add_argument("--max-epochs", type=int, metavar="N",
                       help="stop once N epochs are complete without changing the schedule "
                       "(status 'stopped'; continue later with --resume)")
    train.add_argument("--seed", type=int, metavar="S", help="override the configured seed")
    train.add_argument("--batch-size", type=int, metavar="B",
                       help="override the global training batch size (all ranks together)")
    train.add_argument("--no-progress", action="store_true",
                       help="no tqdm progress bar (it is shown only on a terminal anyway)")
    train.add_argument("--quiet", action="store_true", help="no per-epoch log lines")
    train.add_argument("--threads", type=int, metavar="T",
                       help="torch CPU threads; default 1 for the smoke and cpu profiles on the "
                       "CPU (small models; on a shared 2-core machine more threads per process "
                       "oversubscribe the cores), else torch's choice")

    listing = commands.add_parser(
        "list", help="list experiments, models and datasets",
        description="List the experiments of each profile, the model builds and the datasets.",
    )
    listing.add_argument("--profile", default=None, metavar="P",
                         help=f"only this profile's experiments ({', '.join(PROFILES)})")
    check = commands.add_parser(
        "preflight", help="check that every dataset a profile needs is on disk",
        description="Exit non-zero, saying how to get each one, if a dataset the profile's "
                    "chapters need is missing.",
    )
    check.add_argument("--profile", required=True, metavar="P",
                       help=f"one of {', '.join(PROFILES)}")
    _add_download(commands)
    _add_search_parser(commands)
    return parser


# ---- download ---------------------------------------------------------------------------------
def _add_download(commands: argparse._SubParsersAction) -> None:
    fetch = commands.add_parser(
        "download", help="fetch datasets (or say where to put them) and verify their files",
        description="Fetch the datasets torchvision can fetch (MNIST, CIFAR-10/100, SVHN; the "
        "Tancik images) into ROOT/<name>/ and print exact placement instructions for the rest "
        "(Tiny-ImageNet, ImageNet). A CHAPTER (homoode, nag, sim, continuous-deq, ...) stands "
        "for the datasets it needs in --profile. An existing torchvision data folder "
        "(ROOT/MNIST/raw, ROOT/cifar-10-batches-py, ...) is used where it is. Exit codes: 0 "
        "every dataset in place (--verify: every file OK), 1 some dataset still to be placed or "
        "a download failed (--verify: a file damaged or missing), 2 an unknown name.",
    )
    fetch.add_argument("targets", nargs="+", metavar="DATASET|CHAPTER",
                       help="dataset names (see `python -m deqode list`; also imagenet) or "
                       "chapter names")
    fetch.add_argument("--verify", action="store_true",
                       help="fetch nothing; check each file against its known md5 (MNIST's "
                       "unpacked IDX files against their headers) and report it OK, damaged or "
                       "missing")
    fetch.add_argument("--profile", metavar="P", default="paper",
                       help="the profile whose datasets a CHAPTER stands for (default: paper)")
    fetch.add_argument("--root", metavar="R", default="data",
                       help="the dataset root, as train's --data-root (default: data)")


def _download_targets(targets: Sequence[str], profile: str) -> list[str]:
    from deqode.chapters import needs
    from deqode.data import download

    names: list[str] = []
    for target in targets:
        chapter = needs.chapter_of(target)
        if chapter is not None:
            found = needs.chapter_datasets(chapter, profile)
        elif target in download.known_names():
            found = [target]
        else:
            valid = ", ".join(repr(n) for n in [*download.known_names(), *needs.chapter_names()])
            raise UnknownChoiceError(f"unknown dataset or chapter {target!r}; valid choices: "
                                     f"{valid}")
        names.extend(n for n in found if n not in names)
    return names


def _download(args: argparse.Namespace) -> int:
    from deqode.data import download

    names = _download_targets(args.targets, args.profile)
    good = True
    for name in names:
        if args.verify:
            checks = download.verify_set(name, args.root)
            print(f"{name}:" if checks else f"{name}: generated or bundled, no files to verify")
            for c in checks:
                print(f"  {c.status.upper():8s}{c.path}  ({c.detail})")
            good &= all(c.status == "ok" for c in checks)
        else:
            outcome = download.fetch(name, args.root)
            print(f"{name}: {outcome.status}: {outcome.message}")
            good &= outcome.in_place
    if not names:
        print("nothing to do: no dataset named")
    return 0 if good else 1




def _list(profile: str | None) -> None:
    from deqode import chapters as experiments
    from deqode import data, models

    for prof in [profile] if profile else list(PROFILES):
        print(f"experiments (profile {prof}):")
        rows = []
        for name in experiments.experiment_names(prof):
            cfg = experiments.get(name, prof)
            model, dataset = (v if isinstance(v, str) else getattr(v, "__name__", repr(v))
                              for v in (cfg.model, cfg.dataset))
            length = (f"epochs {cfg.epochs}" if cfg.iterations is None
                      else f"steps {cfg.iterations}")
            rows.append((name, f"model {model}", f"data {dataset}", length,
                         f"batch {cfg.batch_size}"))
        widths = [max((len(row[i]) for row in rows), default=0) for i in range(4)]
        for *padded, batch in rows:
            cells = [f"{cell:{w}s}" for cell, w in zip(padded, widths, strict=True)]
            print("  " + "  ".join([*cells, batch]))
    print("models:", ", ".join(models.names()))
    print("datasets:", ", ".join(data.dataset_names()))


def _train(args: argparse.Namespace) -> int:
    from deqode import chapters as experiments
    from deqode.devices import resolve_device
    from deqode.train import fit

    config = experiments.get(args.experiment, args.profile)
    try:
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as err:
        raise UnknownChoiceError(str(err)) from err
    threads = args.threads
    if threads is None and args.profile in ONE_THREAD_PROFILES and device.type == "cpu":
        threads = 1
    overrides = {k: v for k, v in (("epochs", args.epochs), ("seed", args.seed),
                                   ("batch_size", args.batch_size)) if v is not None}
    if overrides:
        config = config.replace(**overrides)
    result = fit(
        config, profile=args.profile, device=args.device, results_dir=args.results_dir,
        data_root=args.data_root, resume=args.resume, max_epochs=args.max_epochs,
        download=args.download, progress=False if args.no_progress else None, quiet=args.quiet,
        threads=threads,
    )
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 reports
    if result.failed:
        if main_rank:
            print(f"deqode: run {config.name} failed: {result.reason}", file=sys.stderr)
        return 1
    s = result.summary
    metric = next((k[5:] for k in s if k.startswith("best_") and k != "best_epoch"), None)
    if main_rank and not args.quiet and metric and s[f"best_{metric}"] is not None:
        label = metric.replace("_", " ")  # the task's selection metric, e.g. test acc
        print(f"[{config.name}] {result.state}: best {label} {s[f'best_{metric}']:.4f} "
              f"(epoch {s['best_epoch']}), last {s[f'last_{metric}']:.4f}, "
              f"{s['wall_time_s']:.1f}s -> {result.out_dir}")
    return 0


def _add_search_parser(commands: argparse._SubParsersAction) -> None:
    search = commands.add_parser(
        "search", help="SIM's optional random search (Optuna), stored for the notebook",
        description="Random search with ASHA-style early stopping of one SIM variant on one "
        "dataset (the official Ray Tune protocol, with Optuna); every trial and the best "
        "configuration go to RESULTS_DIR/PROFILE/sim-search/TASK-DATASET-VARIANT.json, "
        "which notebook 15 reads with tune=True for its final runs.",
        epilog="example:\n  python -m deqode search classification --dataset mnist "
        "--variant single-tier --profile paper --device cuda",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    search.add_argument("task", choices=["classification"],
                        help="the SIM task searched (classification: T1)")
    search.add_argument("--dataset", required=True, metavar="D",
                        help="a dataset of the profile's T1 setup (paper: mnist, cifar10, svhn)")
    search.add_argument("--variant", required=True, metavar="V",
                        help="SIM variant: single-tier or two-tier")
    search.add_argument("--profile", default="paper", metavar="P",
                        help=f"one of {', '.join(PROFILES)} (default: %(default)s)")
    search.add_argument("--n-trials", type=int, metavar="N",
                        help="trials (default: the official 200)")
    search.add_argument("--backend", default="optuna", metavar="B",
                        help="optuna (random search with pruning; pip install 'deqode[tune]') or "
                        "random (no early stopping, no dependency) (default: %(default)s)")
    search.add_argument("--seed", type=int, default=777,
                        help="the sampler's seed (default: the official %(default)s)")
    search.add_argument("--device", default="auto", metavar="D",
                        help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    search.add_argument("--results-dir", default="results", metavar="R",
                        help="results root (default: %(default)s)")
    search.add_argument("--data-root", default="data", metavar="R",
                        help="dataset root (default: %(default)s)")


def _search(args: argparse.Namespace) -> int:
    from deqode.chapters import sim
    from deqode.choices import check_profile
    from deqode.devices import resolve_device

    check_profile(args.profile)
    try:
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as err:
        raise UnknownChoiceError(str(err)) from err
    try:
        path = sim.classification_search(
            args.dataset, args.variant, args.profile, n_trials=args.n_trials,
            backend=args.backend, seed=args.seed, device=device, data_root=args.data_root,
            results_dir=args.results_dir)
    except ImportError as err:  # the optuna backend without Optuna
        print(f"deqode: error: {err}", file=sys.stderr)
        return 2
    print(f"search stored: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            _list(args.profile)
            return 0
        if args.command == "download":
            return _download(args)
        if args.command == "preflight":
            from deqode import chapters

            chapters.preflight(args.profile)
            return 0
        if args.command == "search":
            return _search(args)
        return _train(args)
    except UnknownChoiceError as err:
        print(f"deqode: error: {err}", file=sys.stderr)
        return 2
    except DatasetMissingError as err:
        hint = "" if getattr(args, "download", True) else (
            "\n(or rerun with --download to fetch the torchvision datasets)")
        print(f"deqode: error: {err}{hint}", file=sys.stderr)
        return 2
    except ValueError as err:  # invalid option values, a changed configuration on --resume
        print(f"deqode: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deqode: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
