"""Learned models over log-mel spectrograms: the timbre encoder (:mod:`nextvox.models.timbre`)."""
