"""Offline click-model training (`python -m ml train`) and the code it shares with serving.

`app.features.clicks` builds the feature vector for training and for the service alike,
and `app.features.artifact` saves and loads the model; the service imports those two, so a
feature cannot mean one thing offline and another online. The rest (dataset,
split, train) runs only offline.
"""
