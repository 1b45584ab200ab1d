"""Offline click-model training and evaluation (`python -m ml train|evaluate`).

The app never imports this package; this package imports the app's feature code,
so training and serving build the same feature vectors.
"""
