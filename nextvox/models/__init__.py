"""Learned models over log-mel spectrograms: the timbre encoder (:mod:`nextvox.models.timbre`), the
TCAE melody autoencoder (:mod:`nextvox.models.tcae`) and the vocal separator (:mod:`nextvox.models.separator`)."""
