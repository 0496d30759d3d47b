"""Constants of the analysis pipeline, derived from each other in one place.

These follow the seed: 16 kHz audio, a 512-sample window, a 256-sample hop and 48 mel
bands, so that a 120 s excerpt gives a 48 x 7501 log-mel spectrogram.
"""

SAMPLE_RATE_HZ = 16_000
N_FFT = 512  # samples per analysis window (32 ms)
HOP_LENGTH = 256  # samples between frames (16 ms)
N_MELS = 48
EXCERPT_S = 120.0  # longest stretch of a song that is analysed
EXCERPT_SAMPLES = int(EXCERPT_S * SAMPLE_RATE_HZ)
FRAMES_PER_EXCERPT = EXCERPT_SAMPLES // HOP_LENGTH + 1  # centred STFT frames: 7501
FRAME_RATE_HZ = SAMPLE_RATE_HZ / HOP_LENGTH  # 62.5 frames per second
# Rough spread of centred log-mel values (natural log): dividing by it brings a model's input to about unit scale.
LOG_MEL_SCALE = 4.0

GENDERS = ("female", "male")  # the voice genders of labels, tags and the gender head, in this order

assert FRAMES_PER_EXCERPT == 7501
