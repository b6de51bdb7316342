"""The papers' evaluation protocols (`fpt eval`): metrics, reports and figures.

Submodules are imported on demand (``protocols``, ``report``, ``figures``; perturbations live in
:mod:`fpforensics.perturbations`, shared with training) so that
importing the package stays cheap.
"""
