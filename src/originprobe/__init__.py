"""originprobe: open-set synthetic image origin attribution.

Pipeline, one folder per stage, data flowing one way:
data → backbones → features (cached) → heads → openset (scores, threshold) → metrics → report.
`pipeline` wires the stages together; `cli` exposes them as `originprobe ...` commands.
"""
__version__ = "0.1.0"
