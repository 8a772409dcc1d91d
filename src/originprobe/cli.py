"""The `originprobe` command line: parse, call the library, print.

Exit status: 0 on success (skipped files are listed and summarised), 1 when `--strict` is given
and some file was skipped or flagged, 2 on a usage or input error, with a message that names the
file and the reason.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from . import __version__

EXIT_SKIPPED, EXIT_ERROR = 1, 2


class _Formatter(argparse.HelpFormatter):
    """Shows each option's default, unless it has none or its help already says it."""

    def _get_help_string(self, action):
        h = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in h \
                and action.option_strings:
            h += " (default: %(default)s)"
        return h


def _csv(s: str | None) -> list[str] | None:
    return None if s is None else [x.strip() for x in s.split(",") if x.strip()]


def _int_at_least(lowest: int):
    """An argparse type: a whole number ≥ `lowest`."""
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s!r} is not a whole number") from None
        if v < lowest:
            raise argparse.ArgumentTypeError(f"must be at least {lowest}, got {v}")
        return v
    return parse


_positive_int = _int_at_least(1)
_nonneg_int = _int_at_least(0)


def _flush_every(s: str) -> tuple[int | None, float | None]:
    """"512" → every 512 images; "20s" → every 20 seconds."""
    try:
        if s.endswith("s"):
            v = float(s[:-1])
            if v > 0:
                return None, v
        else:
            v = int(s)
            if v > 0:
                return v, None
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{s!r}: give a number of images (512) or of seconds (20s)")


def _int_list(s: str) -> list[int]:
    try:
        vals = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r}: give whole numbers, e.g. 5,10,20") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"{s!r}: give positive whole numbers, e.g. 5,10,20")
    return vals


def _seed_list(s: str) -> list[int]:
    try:
        vals = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r}: give seeds as whole numbers, e.g. 0,1,2") from None
    if not vals or min(vals) < 0 or len(set(vals)) != len(vals):
        raise argparse.ArgumentTypeError(f"{s!r}: give distinct seeds ≥ 0, e.g. 0,1,2")
    return vals


def _fraction(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {v}")
    return v


def _user_errors() -> tuple[type[BaseException], ...]:
    from .backbones import UnknownBackboneError, WeightsNotFoundError
    from .data import DatasetError, ImageDecodeError, SplitLeakError
    from .features import StoreError
    from .heads.selection import SelectionLeakError
    from .model import BundleError
    return (DatasetError, SplitLeakError, WeightsNotFoundError, UnknownBackboneError, BundleError,
            StoreError, SelectionLeakError, ImageDecodeError, FileNotFoundError, FileExistsError,
            NotADirectoryError, IsADirectoryError, PermissionError, ValueError)


# ---------------------------------------------------------------- shared option groups
def _data_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data",
                   help="folder tree <root>/<label>/..., manifest CSV (path,label) or annotation file")
    p.add_argument("--class-names", help="class names, one per line (for annotation files)")
    p.add_argument("--root", help="root that annotation-file paths are relative to")
    p.add_argument("--known", help="comma-separated known classes (required with --data)")
    p.add_argument("--allow-outside-root", action="store_true",
                   help="let manifest/annotation paths and symbolic links point outside the "
                        "dataset root")
    g = p.add_argument_group("benchmark protocols (instead of --data/--known)")
    g.add_argument("--protocol", help="e.g. genimage:split1, osma:split3, realgen:split2; "
                                      "see `originprobe protocols`")
    g.add_argument("--group", default="all", help="unknown group of the protocol")
    g.add_argument("--annotations", help="folder holding the protocol's annotation files "
                                         "(default: --root)")
    g.add_argument("--train-per-class", type=_positive_int,
                   help="cap per class when annotations are made from the raw GenImage tree")
    g.add_argument("--test-per-class", type=_positive_int, help="same, for the test files")
    p.add_argument("--dry-run", action="store_true",
                   help="resolve the data or protocol, print samples per class and role and any "
                        "missing files; extract nothing")
    return p


def _test_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--test-data", help="separate test set (default: split --data)")
    p.add_argument("--unknown", help="unknown classes (default: every non-known test label)")
    return p


def _backbone_options() -> argparse.ArgumentParser:
    from .backbones import DEFAULT_BACKBONE
    from .pipeline.prepare import DEFAULT_CACHE
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help="see `originprobe backbones`")
    p.add_argument("--weights", help="weights file or directory for the backbone")
    p.add_argument("--layers", default="all", help='"all", or layers "a,b"; "a+b" concatenates')
    p.add_argument("--cache", default=DEFAULT_CACHE, help="feature cache directory")
    _runtime_options(p)
    p.add_argument("--flush-every", type=_flush_every, action="append", metavar="N|Ts",
                   help="commit extracted features every N images and/or every T seconds, so "
                        "that a killed run keeps what was done (default: 512 images and 30s)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="where extraction runs: this process, or a Ray cluster "
                        "(pip install 'originprobe[ray]')")
    p.add_argument("--address", help="with --engine ray: the cluster to join (auto, or "
                                     "HOST:PORT of its head); default: start a local one")
    return p


def _runtime_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=_positive_int, help="images per forward pass "
                                                            "(default: 32 on CPU, from GPU memory)")
    p.add_argument("--workers", type=_nonneg_int,
                   help="image decoding threads; 0 decodes in the main thread (default: up to 4)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--runtime", choices=("auto", "torch", "onnx"), default="auto",
                   help="forward pass engine; auto: ONNX Runtime on a CPU when installed and the "
                        "backbone exports cleanly, else PyTorch")
    p.add_argument("--max-pixels", type=_positive_int,
                   help="refuse images above this many pixels (default 100000000, or "
                        "ORIGINPROBE_MAX_PIXELS)")


def _provenance_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--c2pa-trust", metavar="FILE",
                   help="PEM bundle of C2PA trust anchors: says whether each signer is on it")
    p.add_argument("--no-evidence", dest="provenance", action="store_false",
                   help="do not read the files' provenance metadata (C2PA, PNG text, EXIF, XMP)")


def _model_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--combine-layers", type=_positive_int, default=3, metavar="N",
                   help="greedily concatenate up to N layers while validation accuracy rises "
                        "(1: single layer, as in the seed paper)")
    p.add_argument("--head", default="linear", help="linear, knn, gaussian, ncm, reference")
    p.add_argument("--score", help="open-set score (default: the head's own)")
    p.add_argument("--target-tpr", type=_fraction, default=0.95,
                   help="fraction of known validation samples the reject threshold keeps")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="seed of splits and heads")
    return p


def _output_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no progress bars")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 if any file was skipped or flagged as damaged")
    return p


def _config(a: argparse.Namespace, need_known: bool = True):
    from .pipeline import RunConfig
    if getattr(a, "config", None):
        return _replay(a)
    if a.protocol:
        for flag in ("data", "known", "unknown"):
            if getattr(a, flag, None):
                raise ValueError(f"--{flag.replace('_', '-')} cannot be combined with --protocol: "
                                 "the protocol fixes data and classes")
    elif not a.data or (need_known and not a.known):
        raise ValueError("give --data and --known, or --protocol NAME --root DIR"
                         if need_known else "give DATA or --protocol NAME --root DIR")
    if hasattr(a, "out") and not a.out and not a.dry_run:
        raise ValueError("--out is required")
    known = _csv(a.known) or []
    if a.known is not None and not a.protocol and not known:
        raise ValueError("--known names no class")
    return RunConfig(
        data=a.data, known=known, unknown=_csv(getattr(a, "unknown", None)),
        test_data=getattr(a, "test_data", None), class_names=a.class_names, root=a.root,
        backbone=a.backbone, weights=a.weights, layers=a.layers,
        combine_layers=getattr(a, "combine_layers", 1), head=getattr(a, "head", "linear"),
        score=getattr(a, "score", None), target_tpr=getattr(a, "target_tpr", 0.95),
        seed=getattr(a, "seed", 0), cache=a.cache, batch_size=a.batch_size, workers=a.workers,
        device=a.device, progress=not a.quiet, strict=a.strict,
        jpeg_align=getattr(a, "jpeg_align", None), robustness=getattr(a, "robustness", None),
        low_data=",".join(map(str, a.low_data)) if getattr(a, "low_data", None) else None,
        low_data_seeds=getattr(a, "low_data_seeds", 3),
        protocol=a.protocol, group=a.group, annotations=a.annotations,
        train_per_class=a.train_per_class, test_per_class=a.test_per_class,
        allow_outside_root=a.allow_outside_root, runtime=a.runtime,
        engine=a.engine, address=a.address, seeds=getattr(a, "seeds", None), **_flush_settings(getattr(a, "flush_every", None)))


_RUNTIME_FIELDS = ("cache", "batch_size", "workers", "device", "runtime", "engine", "address")


def _replay(a: argparse.Namespace):
    """The configuration of an earlier run (its config.json), to run it again; only --out and
    the runtime options (cache, device, batch size, workers, runtime, --quiet) may change."""
    from .pipeline import RunConfig
    for flag in ("data", "known", "unknown", "test_data", "protocol", "root"):
        if getattr(a, flag, None):
            raise ValueError(f"--{flag.replace('_', '-')} cannot be combined with --config: the "
                             "configuration fixes data and classes")
    try:
        d = json.loads(Path(a.config).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{a.config}: cannot read a configuration ({exc})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{a.config}: not a configuration (a JSON object is expected)")
    d.pop("heads", None)
    cfg = RunConfig.from_dict(d, str(a.config))
    from dataclasses import replace
    changes = {f: getattr(a, f) for f in _RUNTIME_FIELDS if getattr(a, f, None) is not None}
    changes["progress"] = not a.quiet
    if not a.out and not a.dry_run:
        raise ValueError("--out is required")
    return replace(cfg, **{k: v for k, v in changes.items() if k != "cache" or
                           v != _default_cache()})


def _default_cache() -> str:
    from .pipeline.prepare import DEFAULT_CACHE
    return DEFAULT_CACHE


def _flush_settings(values) -> dict:
    out = {}
    for images, seconds in values or []:
        if images is not None:
            out["flush_every"] = images
        if seconds is not None:
            out["flush_seconds"] = seconds
    return out


def _skipped_summary(n: int, where: str | None) -> None:
    if n:
        print(f"skipped {n} file(s)" + (f"; see {where}" if where else ""), file=sys.stderr)


# ---------------------------------------------------------------- commands
def cmd_dry_run(a) -> int:
    from .pipeline import dry_run
    from .report.results import format_dry_run
    cfg = _config(a, need_known=a.command != "extract")
    dr = dry_run(cfg)
    print(format_dry_run(dr))
    if dr.n_bad:
        print(f"{dr.n_bad} file(s) or line(s) would be skipped", file=sys.stderr)
    return EXIT_SKIPPED if cfg.strict and dr.n_bad else 0


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


def cmd_evaluate(a) -> int:
    from .pipeline import evaluate
    from .pipeline.evaluate import check_out_dir
    from .report.results import results_markdown
    cfg = _config(a)
    check_out_dir(a.out)
    res = evaluate(cfg, a.out)
    if res.get("kind") == "summary":
        from .pipeline.multirun import summary_markdown
        print(summary_markdown(res))
    else:
        print(results_markdown(res))
    written = "results.json, results.md, config.json, predictions.csv, errors.csv"
    if not a.no_report:
        from .report.html import build_report
        build_report(a.out)
        written += ", report.html"
    print(f"wrote {a.out}/: {written}")
    _skipped_summary(res["errors"], f"{a.out}/errors.csv")
    if res.get("warnings"):
        print(f"{res['warnings']} file(s) used although partly damaged; see {a.out}/warnings.csv",
              file=sys.stderr)
    return EXIT_SKIPPED if a.strict and (res["errors"] or res.get("warnings")) else 0


def cmd_report(a) -> int:
    from .report.html import build_report
    if not (Path(a.run_dir) / "results.json").is_file():
        raise FileNotFoundError(f"{a.run_dir}/results.json: not found; is this a run directory?")
    print(f"wrote {build_report(a.run_dir)}")
    return 0


def cmd_compare(a) -> int:
    from .heads import HEADS
    from .pipeline.compare import compare, compare_markdown
    from .pipeline.evaluate import check_out_dir
    cfg = _config(a)
    check_out_dir(a.out)
    heads = _csv(a.heads) if a.heads != "all" else HEADS.names()
    res = compare(cfg, heads, a.out)
    print(compare_markdown(res))
    from .report.html import build_report
    build_report(a.out)
    print(f"wrote {a.out}/: results.json, results.md, config.json, errors.csv, report.html")
    _skipped_summary(res["errors"], f"{a.out}/errors.csv")
    return EXIT_SKIPPED if a.strict and res["errors"] else 0


def cmd_fit(a) -> int:
    from .pipeline import fit
    from .pipeline.fit import check_model_dir
    from .report.results import fmt_params
    cfg = _config(a)
    check_model_dir(a.out)
    att = fit(cfg, a.out)
    sel = att.selection_summary_
    print(f"saved {a.out}: {att.head_.name} head on {att.backbone}/{att.layer_} "
          f"params {fmt_params(sel['params'])}, val balanced accuracy "
          f"{sel['val_balanced_accuracy']:.3f}; score {att.score_name_}, reject below "
          f"{att.threshold_:.4g} (keeps {att.target_tpr:.0%} of known validation images)")
    n = len(att.problems_)
    _skipped_summary(n, None)
    return EXIT_SKIPPED if a.strict and n else 0


def _load_model(a):
    from .model import Attributor
    return Attributor.load(a.model, weights=a.weights, device=a.device,
                           batch_size=a.batch_size, workers=a.workers, runtime=a.runtime,
                           provenance=getattr(a, "provenance", True),
                           c2pa_trust=getattr(a, "c2pa_trust", None),
                           progress=not a.quiet and not getattr(a, "json", False))


def cmd_predict(a) -> int:
    from .backbones import resolve_device
    from .pipeline.prepare import collect_images
    from .report.attributions import output_format, text_line, write_records
    for target in (a.out, a.report):
        if target and Path(target).exists() and not a.overwrite:
            raise FileExistsError(f"{target}: exists; pass --overwrite to replace it")
    if a.out:
        output_format(a.out)
    if a.report and Path(a.report).suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--report {a.report}: name it FILE.html")
    resolve_device(a.device)
    att = _load_model(a)
    reader = att.evidence_reader()
    if reader is not None and reader.note:
        print(f"note: {reader.note}", file=sys.stderr)
    if a.threshold is not None:
        att.threshold_ = float(a.threshold)
    samples, problems = collect_images(a.paths)
    records = att.predict([s.path for s in samples], top_k=a.top_k) if samples else []
    from .model import Attribution
    records += [Attribution(source=p.path, label=None, error=p.reason) for p in problems]
    ok = [r for r in records if r.ok]
    flagged = [r for r in records if r.warning]
    if a.out:
        write_records(a.out, records)
    if a.report:
        from .report.analyst import write_report
        write_report(a.report, records, att.describe(), reader.note if reader else None)
    if a.json:
        print(json.dumps({"model": str(a.model), "model_id": att.bundle_meta_.get("checksum"),
                          "score": att.score_name_, "threshold": att.threshold_,
                          "evidence_note": reader.note if reader else None,
                          "predictions": [r.to_dict() for r in ok],
                          "skipped": [r.to_dict() for r in records if not r.ok]}, indent=2))
    elif not a.out:
        for r in ok:
            print(text_line(r, att.score_name_))
    for r in records:
        if not r.ok:
            print(f"{r.source}\tskipped: {r.error}", file=sys.stderr)
    for r in flagged:
        print(f"{r.source}\twarning: {r.warning}", file=sys.stderr)
    summary = (f"{len(ok)} image(s) attributed, {len(records) - len(ok)} skipped, "
               f"{len(flagged)} flagged as damaged")
    for target in (a.out, a.report):
        if target:
            summary += f"; wrote {target}"
    print(summary, file=sys.stderr)
    if not ok:
        print("originprobe predict: error: no usable image among the inputs", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_SKIPPED if a.strict and (len(ok) < len(records) or flagged) else 0


def cmd_serve(a) -> int:
    import os
    from .backbones import resolve_device
    from .serve.app import TOKEN_ENV, check_serve_options, serve
    token = os.environ.get(TOKEN_ENV) or None
    check_serve_options(a.host, a.port, a.max_upload_mb, a.max_batch, a.max_wait_ms, token)
    resolve_device(a.device)
    serve(a.model, host=a.host, port=a.port, max_upload_mb=a.max_upload_mb,
          max_batch=a.max_batch, max_wait_ms=a.max_wait_ms, token=token, weights=a.weights,
          device=a.device, batch_size=a.batch_size, workers=a.workers, runtime=a.runtime,
          provenance=a.provenance, c2pa_trust=a.c2pa_trust)
    return 0


def cmd_enroll(a) -> int:
    from .pipeline.prepare import collect_images
    att = _load_model(a)
    samples, problems = collect_images(a.paths)
    n, errors = att.enroll(a.label, [s.path for s in samples])
    att.save(a.model)
    print(f"enrolled {a.label!r} from {n} image(s) into {a.model}; classes: "
          f"{', '.join(att.classes_)}; threshold {att.threshold_:.4g}")
    for pr in problems + errors:
        print(f"  skipped {pr.path}: {pr.reason}", file=sys.stderr)
    return EXIT_SKIPPED if a.strict and (problems or errors) else 0


def cmd_extract(a) -> int:
    from .pipeline.prepare import extract_only
    from .report import write_errors_csv
    if a.dry_run:
        return cmd_dry_run(a)
    cfg = _config(a, need_known=False)
    backbone, store, report, problems = extract_only(cfg)
    print(f"{backbone.name} → {store.dir}")
    print(report.summary())
    if a.errors:
        write_errors_csv(a.errors, problems)
    for pr in problems[:20]:
        print(f"  skipped {pr.path}: {pr.reason}", file=sys.stderr)
    _skipped_summary(len(problems), a.errors)
    return EXIT_SKIPPED if a.strict and problems else 0


def cmd_backbones(a) -> int:
    from .backbones.catalog import format_backbones_table, list_backbones
    rows = list_backbones()
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    from .backbones import DEFAULT_BACKBONE
    print(format_backbones_table(rows))
    print(f"\ndefault: {DEFAULT_BACKBONE}\nany NAME@native or NAME@nativeSIZE reads un-resampled "
          "centre crops; A+B fuses backbones (layers MEMBER/LAYER)")
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


def cmd_cache_ls(a) -> int:
    from .features.cache_admin import format_cache_table, list_cache
    rows = list_cache(a.dir)
    print(json.dumps([r.__dict__ for r in rows], indent=2) if a.json else format_cache_table(rows))
    return 0


def cmd_cache_prune(a) -> int:
    from .features.cache_admin import prune_cache
    if a.older_than is None and not a.backbone:
        raise ValueError("give --older-than DAYS and/or --backbone NAME")
    removed = prune_cache(a.dir, older_than_days=a.older_than, backbone=a.backbone,
                          dry_run=a.dry_run)
    verb = "would remove" if a.dry_run else "removed"
    for info in removed:
        print(f"{verb} {info.namespace} ({info.backbone}, {info.images} images, "
              f"{info.bytes / 1e6:.1f} MB)")
    print(f"{verb} {len(removed)} namespace(s)")
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="originprobe", formatter_class=_Formatter,
                                 description="Open-set synthetic image origin attribution.")
    ap.add_argument("--version", action="version", version=f"originprobe {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    data, test, bb, model, out = (_data_options(), _test_options(), _backbone_options(),
                                  _model_options(), _output_options())

    p = sub.add_parser("evaluate", parents=[data, test, bb, model, out], formatter_class=_Formatter,
                       help="train, select on validation, test open-set; write a run")
    p.add_argument("--jpeg-align", type=_positive_int, metavar="QUALITY",
                   help="also evaluate with every image JPEG-recompressed at QUALITY")
    p.add_argument("--robustness", nargs="?", const="default", metavar="SPEC",
                   help='test-time perturbation curves; SPEC like "jpeg=90,70;blur=1,2" '
                        "(default: jpeg, blur, downscale, crop at graded levels)")
    p.add_argument("--low-data", type=_int_list, metavar="N,N,...",
                   help="training images per class, e.g. 5,10,20")
    p.add_argument("--low-data-seeds", type=_positive_int, default=3)
    p.add_argument("--seeds", type=_seed_list, metavar="S,S,...",
                   help="repeat the split and fit with each seed; report mean ± std")
    p.add_argument("--config", metavar="RUN/config.json",
                   help="replay an earlier run's configuration (with a new --out)")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument("--out", help="run directory (required unless --dry-run)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("fit", parents=[data, bb, model, out], formatter_class=_Formatter,
                       help="train on known classes and save a model bundle")
    p.add_argument("--out", help="model directory (required unless --dry-run)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("compare", parents=[data, test, bb, model, out], formatter_class=_Formatter,
                       help="every head × supported score on the same splits")
    p.add_argument("--heads", default="all", help='comma-separated heads, or "all"')
    p.add_argument("--out", help="run directory (required unless --dry-run)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("extract", parents=[data, test, bb, out], formatter_class=_Formatter,
                       help="extract and cache features of a dataset or protocol")
    p.add_argument("dataset", nargs="?", help="same as --data")
    p.add_argument("--errors", help="write skipped files to this CSV")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("predict", parents=[out], formatter_class=_Formatter,
                       help="attribute images with a saved model")
    p.add_argument("model", help="model directory written by `fit`")
    p.add_argument("paths", nargs="+", help="image files or folders (recursive)")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("--out", help="write the attributions to FILE.csv or FILE.jsonl")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--threshold", type=float, help="reject threshold (default: the model's)")
    p.add_argument("--top-k", type=_positive_int, default=3, help="classes shown per image")
    p.add_argument("--weights", help="backbone weights, if not found automatically")
    p.add_argument("--report", metavar="FILE.html",
                   help="also write an analyst's report: one offline page with thumbnails, "
                        "verdicts, scores and provenance evidence, with filters")
    _provenance_options(p)
    _runtime_options(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("serve", formatter_class=_Formatter,
                       help="answer attributions over HTTP, with a web page for analysts")
    p.add_argument("model", help="model directory written by `fit`")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind; any other than loopback needs ORIGINPROBE_API_TOKEN")
    p.add_argument("--port", type=_nonneg_int, default=8000, help="TCP port (0: any free one)")
    p.add_argument("--max-upload-mb", type=float, default=20.0,
                   help="largest request body; larger uploads get 413")
    p.add_argument("--max-batch", type=_positive_int, default=32,
                   help="images of concurrent requests gathered into one forward pass")
    p.add_argument("--max-wait-ms", type=float, default=10.0,
                   help="how long a request waits for others to share its batch")
    p.add_argument("--weights", help="backbone weights, if not found automatically")
    _provenance_options(p)
    _runtime_options(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("enroll", parents=[out], formatter_class=_Formatter,
                       help="add a new generator to a saved model from a few images")
    p.add_argument("model")
    p.add_argument("--label", required=True, help="name of the new class")
    p.add_argument("paths", nargs="+", help="image files or folders of the new generator")
    p.add_argument("--weights")
    _runtime_options(p)
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("report", formatter_class=_Formatter,
                       help="(re)build RUN_DIR/report.html from a run directory")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("protocols", formatter_class=_Formatter,
                       help="list the benchmark protocols shipped with originprobe")
    p.add_argument("--json", action="store_true", help="full specs: classes and annotation files")
    p.set_defaults(func=cmd_protocols)

    p = sub.add_parser("backbones", formatter_class=_Formatter,
                       help="list backbones, their layers and weights availability")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backbones)

    p = sub.add_parser("cache", help="feature cache maintenance")
    csub = p.add_subparsers(dest="cache_command", required=True)
    v = csub.add_parser("verify", formatter_class=_Formatter,
                        help="check every shard against its recorded checksum")
    v.add_argument("dir")
    v.add_argument("--repair", action="store_true",
                   help="move damaged shards aside so that they are recomputed")
    v.set_defaults(func=cmd_cache_verify)
    v = csub.add_parser("ls", formatter_class=_Formatter,
                        help="backbones, layers, images and size of each cached namespace")
    v.add_argument("dir")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_cache_ls)
    v = csub.add_parser("prune", formatter_class=_Formatter,
                        help="remove cached namespaces by age or backbone")
    v.add_argument("dir")
    v.add_argument("--older-than", type=float, metavar="DAYS",
                   help="namespaces not written or read for this many days")
    v.add_argument("--backbone", help="namespaces of this backbone")
    v.add_argument("--dry-run", action="store_true", help="list, remove nothing")
    v.set_defaults(func=cmd_cache_prune)
    return ap


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"originprobe: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if getattr(a, "command", None) == "extract" and getattr(a, "dataset", None):
        if a.data:
            ap.error("give the dataset once: as DATA or as --data")
        a.data = a.dataset
    from .data import max_pixels, set_max_pixels
    old_show, old_limit = warnings.showwarning, max_pixels()
    warnings.showwarning = _show_warning
    try:
        if getattr(a, "max_pixels", None):
            set_max_pixels(a.max_pixels)
        if getattr(a, "dry_run", False) and a.command in ("evaluate", "compare", "fit"):
            return cmd_dry_run(a)
        return a.func(a)
    except _user_errors() as exc:
        print(f"originprobe {a.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # output piped into `head` etc.
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted; extracted features committed so far are kept in the cache",
              file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = old_show
        set_max_pixels(old_limit)


if __name__ == "__main__":
    sys.exit(main())
