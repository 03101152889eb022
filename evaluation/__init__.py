"""Evaluation metrics: SSIM, PSNR, RMSE and FID (:mod:`evaluation.metrics`).

``evaluate.py`` scores folders of images with them; evaluation during
training (``trainers/evaluator.py``) scores the generator in memory.
"""
