"""Simulated data with known truth: what the tests, the benchmarks, the demo survey and the evaluation
train and score on.  Nothing here reads survey files; :mod:`pipeline.data` ingests and reads them.

``analytic``  elliptical Gaussian blobs with known pose (tiny, dependency-free)
``galaxies``  bulge + disk galaxies rendered with GalSim, DECaLS-like colours and stretch
``survey``    a simulated survey in the Galaxy Zoo DECaLS layout (JPEG cutouts, catalogue, truth)
``regimes``   scenes beyond the isolated galaxy: a neighbour, a star, a faint or a lopsided galaxy
``shapes``    the procedural shape sets of the CODAE paper's comparison (XYRCS, dSprites)
"""
