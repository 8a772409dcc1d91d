"""The one preparation path, data → split → networks → features, for every entry point.

`prepare_split(split, extractor)` is what `Attributor.fit`, the command line (`fit`, `evaluate`,
`compare`, through `pipeline.prepare`) and the service use between a checked open-set split and a
model: the known-class training images (train and validation roles together: every one is used,
and cross-validation does the choosing) train the extractor's learned networks (cross-fitted),
then every role's features are extracted once into the cache, and files that cannot be read leave
every role, each reported with its reason. The same split and options give the same features, the
same networks and, after `Attributor.fit_prepared`, the same model, whoever calls.

Roles of the table: ``dev``, the known-class training images in one canonical order; ``test``,
the test images (none when fitting a model to ship).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data import OpenSetSplit, Problem
from ..data.samples import without_failed
from ..features import ExtractionReport, LayerSpec
from ..heads.selection import SelectionLeakError, check_roles
from .extractor import FeatureExtractor, FeatureTable, canonical


@dataclass
class Prepared:
    """A split with its features: what fitting and testing read."""

    split: OpenSetSplit  # without the files that could not be read
    extractor: FeatureExtractor  # fitted: its backbone, and networks when learned
    table: FeatureTable  # roles "dev" (known-class training images) and "test"
    extraction: ExtractionReport
    problems: list[Problem] = field(default_factory=list)  # skipped files, with why
    warnings: list[Problem] = field(default_factory=list)  # used, but damaged

    @property
    def backbone(self):
        return self.extractor.backbone_

    @property
    def layers(self) -> list[LayerSpec]:
        return self.extractor.layer_specs_

    @property
    def training(self) -> dict[str, dict]:
        return self.extractor.trained_.summaries


def dev_samples(split: OpenSetSplit) -> list:
    """The known-class training images of a split: its train and validation roles together."""
    return canonical(list(split.train) + list(split.val))


def prepare_split(
    split: OpenSetSplit, extractor: FeatureExtractor, seed: int, problems=()
) -> Prepared:
    """Networks trained (cross-fitted) on the split's known-class training images, then every
    role's features extracted (see the module doc); `problems`: files skipped before this."""
    dev = dev_samples(split)
    check_roles([s.label for s in dev], split.known_classes)  # only known classes train
    if {s.sha256 for s in dev} & {s.sha256 for s in split.test}:
        raise SelectionLeakError("a test image is also a training image")
    extractor.fit(dev, split.known_classes, seed)
    table, report = extractor.extract({"dev": dev, "test": list(split.test)})
    problems = list(problems) + report.errors
    if report.errors:  # unreadable files leave every role; the run goes on without them
        roles = (without_failed(ss, report.errors) for ss in (split.train, split.val, split.test))
        split = OpenSetSplit(split.known_classes, split.unknown_classes, *roles).check()
    return Prepared(split, extractor, table, report, problems, list(report.warnings))
