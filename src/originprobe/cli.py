"""The `originprobe` command line. Each command is a thin layer over `originprobe.pipeline`.

Exit status: 0 on success (skipped files are listed in errors.csv and summarised), 1 when
`--strict` is given and some files were skipped, 2 on a usage or input error, with a message that
names the file and the reason.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_SKIPPED, EXIT_ERROR = 1, 2


def _csv(s: str | None) -> list[str] | None:
    return None if s is None else [x.strip() for x in s.split(",") if x.strip()]


def _user_errors() -> tuple[type[BaseException], ...]:
    from .backbones import UnknownBackboneError, WeightsNotFoundError
    from .data import DatasetError, ImageDecodeError, SplitLeakError
    from .features import StoreError
    from .heads.selection import SelectionLeakError
    from .openset import UnsupportedScoreError
    from .pipeline import BundleError
    return (DatasetError, SplitLeakError, WeightsNotFoundError, UnknownBackboneError, BundleError,
            UnsupportedScoreError, StoreError, SelectionLeakError, ImageDecodeError,
            FileNotFoundError, NotADirectoryError, PermissionError, ValueError)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data",
                   help="folder tree <root>/<label>/..., manifest CSV (path,label) or annotation file")
    p.add_argument("--class-names", help="class names, one per line (for annotation files)")
    p.add_argument("--root", help="root that annotation-file paths are relative to")
    p.add_argument("--known", help="comma-separated known classes (required with --data)")
    g = p.add_argument_group("benchmark protocols (instead of --data/--known)")
    g.add_argument("--protocol", help="e.g. genimage:split1, osma:split3, diffusionforensics; "
                                      "see `originprobe protocols`")
    g.add_argument("--group", default="all", help="unknown group of the protocol (osma: seed, "
                                                  "arch, dataset, all)")
    g.add_argument("--annotations", help="folder holding the protocol's annotation files "
                                         "(default: --root)")
    g.add_argument("--train-per-class", type=int,
                   help="cap per class when annotations are made from the raw GenImage tree")
    g.add_argument("--test-per-class", type=int, help="same, for the test files")
    p.add_argument("--dry-run", action="store_true",
                   help="resolve the data or protocol, print samples per class and role and any "
                        "missing files; extract nothing")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from .backbones import DEFAULT_BACKBONE
    from .pipeline.prepare import DEFAULT_CACHE
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help="see `originprobe backbones`")
    p.add_argument("--weights", help="weights file or directory for the backbone")
    p.add_argument("--layers", default="all", help='"all", or layers "a,b"; "a+b" concatenates')
    p.add_argument("--combine-layers", type=int, default=3, metavar="N",
                   help="greedily concatenate up to N layers while validation accuracy rises "
                        "(1: single layer, as in the seed paper)")
    p.add_argument("--head", default="linear", help="linear, knn, gaussian, ncm, reference")
    p.add_argument("--score", help="open-set score (default: the head's own)")
    p.add_argument("--target-tpr", type=float, default=0.95,
                   help="fraction of known validation samples the reject threshold keeps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=DEFAULT_CACHE, help="feature cache directory")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--workers", type=int, help="image decoding worker processes")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--strict", action="store_true", help="exit 1 if any file was skipped")


def _config(a: argparse.Namespace):
    from .pipeline import RunConfig
    if a.protocol:
        for flag in ("data", "known", "unknown", "test_data"):
            if getattr(a, flag, None):
                raise ValueError(f"--{flag.replace('_', '-')} cannot be combined with --protocol: "
                                 "the protocol fixes data and classes")
    elif not a.data or not a.known:
        raise ValueError("give --data and --known, or --protocol NAME --root DIR")
    if hasattr(a, "out") and not a.out and not a.dry_run:
        raise ValueError("--out is required")
    return RunConfig(
        data=a.data, known=_csv(a.known) or [], unknown=_csv(getattr(a, "unknown", None)),
        test_data=getattr(a, "test_data", None), class_names=a.class_names, root=a.root,
        backbone=a.backbone, weights=a.weights, layers=a.layers,
        combine_layers=a.combine_layers, head=a.head, score=a.score,
        target_tpr=a.target_tpr, seed=a.seed, cache=a.cache, batch_size=a.batch_size,
        workers=a.workers, device=a.device, progress=not a.no_progress, strict=a.strict,
        jpeg_align=getattr(a, "jpeg_align", None), robustness=getattr(a, "robustness", None),
        low_data=getattr(a, "low_data", None), low_data_seeds=getattr(a, "low_data_seeds", 3),
        protocol=a.protocol, group=a.group, annotations=a.annotations,
        train_per_class=a.train_per_class, test_per_class=a.test_per_class)


def _dry_run(cfg) -> int:
    """Resolve data or protocol; print samples per class and role and what is missing."""
    from .report.results import markdown_table
    if cfg.protocol:
        from .pipeline.prepare import resolve_for
        rp = resolve_for(cfg)
        counts = rp.counts()
        missing = rp.missing_images()
        problems = rp.problems()
        print(f"# {cfg.protocol}: {rp.protocol.title}\n\n{rp.protocol.source}\n")
        print(f"known ({len(rp.known)}): {', '.join(rp.known)}")
        print(f"unknown, group {rp.group} ({len(rp.unknown)}): {', '.join(rp.unknown)}")
        if rp.generated:
            print(f"annotation files generated from the raw tree into {rp.generated}")
        for role, f in rp.files.items():
            print(f"{role}: {f if f else '(carved from train)'}")
        for note in rp.notes:
            print(f"note: {note}")
    else:
        from .data import load_dataset
        counts, missing, problems = {}, {}, []
        for role, spec in (("data", cfg.data), ("test_data", cfg.test_data)):
            if spec:
                ds = load_dataset(spec, class_names=cfg.class_names, root=cfg.root)
                counts[role] = ds.counts()
                missing[role] = ds.missing_files()
                problems += ds.problems
        known = set(cfg.known)
        print(f"known: {', '.join(cfg.known)}")
        absent = sorted(known - {l for c in counts.values() for l in c})
        if absent:
            print(f"known classes with no samples: {', '.join(absent)}")
    roles = list(counts)
    labels = sorted({l for c in counts.values() for l in c})
    rows = [[l] + [counts[r].get(l, 0) for r in roles] for l in labels]
    rows.append(["**total**"] + [sum(counts[r].values()) for r in roles])
    rows.append(["missing files"] + [len(missing.get(r, [])) for r in roles])
    print()
    print(markdown_table(["class"] + roles, rows))
    for role, paths in missing.items():
        for path in paths[:5]:
            print(f"missing ({role}): {path}")
        if len(paths) > 5:
            print(f"missing ({role}): ... and {len(paths) - 5} more")
    for pr in problems[:10]:
        print(f"unusable line {pr.path}: {pr.reason}")
    n_bad = sum(len(v) for v in missing.values()) + len(problems)
    if n_bad:
        print(f"{n_bad} file(s) or line(s) would be skipped", file=sys.stderr)
    return EXIT_SKIPPED if cfg.strict and n_bad else 0


def cmd_protocols(a) -> int:
    from .protocols import list_protocols
    protocols = list_protocols()
    if a.json:
        print(json.dumps([p.describe() for p in protocols], indent=2))
        return 0
    from .report.results import markdown_table
    rows = [[p.name, len(p.known), ", ".join(f"{g} ({len(c)})" for g, c in p.unknown.items()),
             ", ".join(p.known)] for p in protocols]
    print(markdown_table(["protocol", "known", "unknown groups", "known classes"], rows))
    print("\nRun one: originprobe evaluate --protocol NAME --root DIR --out RUN "
          "[--group G] [--dry-run]; details: originprobe protocols --json")
    return 0


def _skipped_summary(n: int, where: str | None) -> None:
    if n:
        print(f"skipped {n} file(s)" + (f"; see {where}" if where else ""), file=sys.stderr)


def cmd_evaluate(a) -> int:
    from .pipeline import evaluate
    from .report.results import results_markdown
    res = evaluate(_config(a), a.out)
    print(results_markdown(res))
    written = "results.json, results.md, config.json, predictions.csv, errors.csv"
    if not a.no_report:
        from .report.html import build_report
        build_report(a.out)
        written += ", report.html"
    print(f"wrote {a.out}/: {written}")
    _skipped_summary(res["errors"], f"{a.out}/errors.csv")
    return EXIT_SKIPPED if a.strict and res["errors"] else 0


def cmd_report(a) -> int:
    from .report.html import build_report
    if not (Path(a.run_dir) / "results.json").is_file():
        raise FileNotFoundError(f"{a.run_dir}/results.json: not found; is this a run directory?")
    print(f"wrote {build_report(a.run_dir)}")
    return 0


def cmd_compare(a) -> int:
    from .heads import HEADS
    from .pipeline.compare import compare, compare_markdown
    heads = _csv(a.heads) if a.heads != "all" else sorted(HEADS)
    res = compare(_config(a), heads, a.out)
    print(compare_markdown(res))
    from .report.html import build_report
    build_report(a.out)
    print(f"wrote {a.out}/: results.json, results.md, config.json, errors.csv, report.html")
    _skipped_summary(res["errors"], f"{a.out}/errors.csv")
    return EXIT_SKIPPED if a.strict and res["errors"] else 0


def cmd_enroll(a) -> int:
    from .pipeline.enroll import enroll
    n, problems = enroll(a.model, a.label, a.paths, weights=a.weights,
                         progress=not a.no_progress)
    print(f"enrolled {a.label!r} from {n} image(s) into {a.model}")
    for pr in problems:
        print(f"  skipped {pr.path}: {pr.reason}", file=sys.stderr)
    return EXIT_SKIPPED if a.strict and problems else 0


def cmd_fit(a) -> int:
    from .pipeline import fit
    from .report.results import fmt_params
    b = fit(_config(a), a.out)
    sel = b.extra["selection"]
    print(f"saved {a.out}: {b.head.name} head on {b.backbone['name']}/{b.layer} "
          f"params {fmt_params(sel['params'])}, val balanced accuracy "
          f"{sel['val_balanced_accuracy']:.3f}; score {b.score}, reject below {b.threshold:.4g} "
          f"(keeps {b.target_tpr:.0%} of known validation images)")
    n = b.extra.get("skipped_files", 0)
    _skipped_summary(n, None)
    return EXIT_SKIPPED if a.strict and n else 0


def cmd_predict(a) -> int:
    from .pipeline import load_model, predict_paths
    bundle, backbone = load_model(a.model, weights=a.weights)
    preds, problems = predict_paths(bundle, backbone, a.paths, cache=a.cache,
                                    batch_size=a.batch_size, progress=not a.no_progress and
                                    not a.json, workers=a.workers)
    if a.json:
        print(json.dumps({"model": str(a.model), "score": bundle.score,
                          "threshold": bundle.threshold,
                          "predictions": [p.to_dict() for p in preds],
                          "skipped": [{"path": str(p.path), "reason": p.reason}
                                      for p in problems]}, indent=2))
    else:
        for p in preds:
            top = ", ".join(f"{l} {pr:.2f}" for l, pr in p.top)
            verdict = p.label if p.label != "unknown" else f"unknown (closest: {p.closest})"
            print(f"{p.path}\t{verdict}\t{bundle.score}={p.score:.4g} "
                  f"(threshold {p.threshold:.4g})\ttop-3: {top}")
        for pr in problems:
            print(f"{pr.path}\tskipped: {pr.reason}", file=sys.stderr)
    if not preds and problems:
        return EXIT_ERROR
    return EXIT_SKIPPED if a.strict and problems else 0


def cmd_extract(a) -> int:
    from .backbones import load_backbone
    from .data import load_dataset
    from .features import extract_features, open_store
    from .pipeline.prepare import base_layers, parse_layers
    from .report import write_errors_csv
    if a.protocol:  # every image the protocol names, all roles
        from .pipeline import RunConfig
        from .pipeline.prepare import resolve_for
        from .data import Dataset
        rp = resolve_for(RunConfig(data=None, known=[], protocol=a.protocol, group=a.group,
                                   root=a.root, annotations=a.annotations, seed=a.seed))
        ds = Dataset([s for d in rp.datasets.values() if d for s in d.samples], a.protocol,
                     rp.problems())
    elif a.data:
        ds = load_dataset(a.data, class_names=a.class_names, root=a.root)
    else:
        raise ValueError("give DATA or --protocol NAME --root DIR")
    backbone = load_backbone(a.backbone, weights=a.weights)
    layers = base_layers(parse_layers(a.layers, backbone))
    store = open_store(a.cache, backbone)
    rep = extract_features(ds.samples, backbone, store, layers, batch_size=a.batch_size,
                           num_workers=a.workers, device=a.device, progress=not a.no_progress)
    problems = list(ds.problems) + rep.errors
    print(f"{backbone.name} [{', '.join(layers)}] → {store.dir}")
    print(rep.summary())
    if a.errors:
        write_errors_csv(a.errors, problems)
    for pr in problems[:20]:
        print(f"  skipped {pr.path}: {pr.reason}", file=sys.stderr)
    _skipped_summary(len(problems), a.errors)
    return EXIT_SKIPPED if a.strict and problems else 0


def cmd_backbones(a) -> int:
    from .backbones.catalog import format_backbones_table, list_backbones
    rows = list_backbones()
    print(json.dumps(rows, indent=2) if a.json else format_backbones_table(rows))
    return 0


def cmd_cache_verify(a) -> int:
    from .features.store import open_namespaces
    stores = open_namespaces(a.dir)
    if not stores:
        print(f"{a.dir}: no feature namespaces found")
        return EXIT_ERROR
    bad = 0
    for st in stores:
        rep = st.verify(repair=a.repair)
        status = "ok" if rep.ok else f"DAMAGED ({len(rep.damaged)} shard(s))" + (
            ", moved aside to damaged-*; the next extraction recomputes them" if a.repair else
            "; run with --repair to move them aside")
        print(f"{st.dir.name}: {rep.shards} shards, {rep.rows} rows: {status}")
        for path, reason in rep.damaged:
            print(f"  {path}: {reason}")
        bad += len(rep.damaged)
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="originprobe",
                                 description="Open-set synthetic image origin attribution.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("evaluate", help="train, select on validation, test open-set; write a run")
    _add_data_args(p)
    p.add_argument("--test-data", help="separate test set (default: split --data)")
    p.add_argument("--unknown", help="unknown classes (default: every non-known test label)")
    _add_model_args(p)
    p.add_argument("--jpeg-align", type=int, metavar="QUALITY",
                   help="also evaluate with every image JPEG-recompressed at QUALITY")
    p.add_argument("--robustness", nargs="?", const="default", metavar="SPEC",
                   help='test-time perturbation curves; SPEC like "jpeg=90,70;blur=1,2" '
                        "(default: jpeg, blur, downscale, crop at graded levels)")
    p.add_argument("--low-data", metavar="N,N,...", help="training images per class, e.g. 5,10,20")
    p.add_argument("--low-data-seeds", type=int, default=3)
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument("--out", help="run directory (required unless --dry-run)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("fit", help="train on known classes and save a model bundle")
    _add_data_args(p)
    _add_model_args(p)
    p.add_argument("--out", help="model directory (required unless --dry-run)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("compare", help="every head × supported score on the same splits")
    _add_data_args(p)
    p.add_argument("--test-data", help="separate test set (default: split --data)")
    p.add_argument("--unknown", help="unknown classes (default: every non-known test label)")
    _add_model_args(p)
    p.add_argument("--heads", default="all", help='comma-separated heads, or "all"')
    p.add_argument("--out", help="run directory (required unless --dry-run)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("enroll", help="add a new generator to a saved model from a few images")
    p.add_argument("model")
    p.add_argument("--label", required=True, help="name of the new class")
    p.add_argument("paths", nargs="+", help="image files or folders of the new generator")
    p.add_argument("--weights")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--strict", action="store_true")
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("predict", help="attribute images with a saved model")
    p.add_argument("model", help="model directory written by `fit`")
    p.add_argument("paths", nargs="+", help="image files or folders (recursive)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--weights", help="backbone weights, if not found automatically")
    p.add_argument("--cache", help="feature cache to reuse (default: none)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--strict", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("extract", help="extract and cache features of a dataset")
    p.add_argument("data", nargs="?", help="folder tree, manifest CSV or annotation file")
    p.add_argument("--class-names")
    p.add_argument("--root")
    p.add_argument("--protocol", help="extract every image a protocol names (with --root)")
    p.add_argument("--group", default="all")
    p.add_argument("--annotations")
    p.add_argument("--seed", type=int, default=0, help="seed for annotations made from a raw tree")
    from .backbones import DEFAULT_BACKBONE
    from .pipeline.prepare import DEFAULT_CACHE
    p.add_argument("--backbone", default=DEFAULT_BACKBONE)
    p.add_argument("--weights")
    p.add_argument("--layers", default="all")
    p.add_argument("--cache", default=DEFAULT_CACHE)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--device")
    p.add_argument("--errors", help="write skipped files to this CSV")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--strict", action="store_true")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("report", help="(re)build RUN_DIR/report.html from a run directory")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("protocols", help="list the benchmark protocols shipped with originprobe")
    p.add_argument("--json", action="store_true", help="full specs: classes and annotation files")
    p.set_defaults(func=cmd_protocols)

    p = sub.add_parser("backbones", help="list backbones, their layers and weights availability")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backbones)

    p = sub.add_parser("cache", help="feature cache maintenance")
    csub = p.add_subparsers(dest="cache_command", required=True)
    v = csub.add_parser("verify", help="check every shard against its recorded checksum")
    v.add_argument("dir")
    v.add_argument("--repair", action="store_true",
                   help="move damaged shards aside so that they are recomputed")
    v.set_defaults(func=cmd_cache_verify)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        if getattr(a, "dry_run", False):  # evaluate, compare, fit: resolve and count only
            return _dry_run(_config(a))
        return a.func(a)
    except _user_errors() as exc:
        print(f"originprobe {a.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # output piped into `head` etc.
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted; completed shards are kept in the cache", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
