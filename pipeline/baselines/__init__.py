"""Baselines of the CODAE paper's comparison, behind CODAE's interface.

Each class takes a :class:`pipeline.config.ModelConfig`, returns
:class:`pipeline.model.output.ModelOutput` from ``forward(images in [0, 1])`` and has
``decode_aligned(z)``, ``uses_moment_loss = False`` and ``has_pose``; all train through
:func:`pipeline.train.train` (their regularisers arrive as ``ModelOutput.extra_loss``) and are
built by kind through :func:`pipeline.model.build_model`:

==============  ==========================================  ========
kind            class                                       has_pose
==============  ==========================================  ========
``ae``          :class:`pipeline.baselines.ae.AE`                 no
``beta-vae``    :class:`pipeline.baselines.beta_vae.BetaVAE`      no
``dae``         :class:`pipeline.baselines.dae.DAE`               no
``spatial-vae`` :class:`pipeline.baselines.spatial_vae.SpatialVAE` yes
``target-vae``  :class:`pipeline.baselines.target_vae.TargetVAE`  yes
``irl-inr``     :class:`pipeline.baselines.irl_inr.IRLINR`        yes
==============  ==========================================  ========

Modules are imported lazily by the registry, so importing this package costs nothing.
"""

__all__: list[str] = []
