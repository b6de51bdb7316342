"""The papers' evaluation protocols (`fpt eval`): metrics, perturbations, reports and figures.

Submodules are imported on demand (``protocols``, ``perturb``, ``report``, ``figures``) so that
importing the package stays cheap.
"""
