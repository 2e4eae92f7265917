"""Baselines and ablations: named variant presets, grids of runs, and their comparison table.

* :mod:`sketchseg.experiments.variants` - apply a preset of ``conf/base/parameters_variants.yml``;
* :mod:`sketchseg.experiments.grid` - run many variants, one ``kedro run`` each;
* :mod:`sketchseg.experiments.compare` - the Tab. 2 / Tab. 4-like table from the MLflow runs.

CLI: ``python -m sketchseg.experiments {list,grid,compare} --help`` (see docs/experiments.md).
"""

from sketchseg.experiments.variants import apply_variant, effective_parameters, select_variants

__all__ = ["apply_variant", "effective_parameters", "select_variants"]
